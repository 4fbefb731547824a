"""Every page fits a phone: at 390 px wide no page scrolls sideways (wide tables scroll inside their own box)."""

import pytest

from runs.models import Run

from .test_browser import login, world  # noqa: F401  (the shared five-run project)

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}

WIDEST = """() => {
    const out = [];
    for (const el of document.querySelectorAll('body *')) {
        const r = el.getBoundingClientRect();
        if (r.right > 391 && getComputedStyle(el).position !== 'fixed') {
            let p = el.parentElement, clipped = false;
            while (p && p !== document.body) {
                const o = getComputedStyle(p).overflowX;
                if (o === 'auto' || o === 'scroll' || o === 'hidden') { clipped = true; break; }
                p = p.parentElement;
            }
            if (!clipped) out.push(el.tagName + (el.id ? '#' + el.id : '') + '.' + el.className + ' ' + Math.round(r.right));
        }
    }
    return out.slice(0, 8);
}"""


def pages(world):  # noqa: F811
    runs = ",".join(r.human_id for r in Run.objects.filter(project=world).order_by("number")[:3])
    first = Run.objects.filter(project=world).order_by("number").first().human_id
    return {
        "run-table": "/w/acme/vision/",
        # many columns and a long filter with an error (its caret line) still fit
        "run-table-wide": "/w/acme/vision/?c=sys/id&c=sys/name&c=sys/owner&c=sys/state&c=parameters/optimizer"
        "&c=parameters/lr&c=train/loss&c=train/loss:min&c=eval/acc&q=parameters/optimizer%20%3D%20%22adam%22%20and%20"
        "parameters/learning_rate_of_the_optimizer_in_the_first_phase%20%3E",
        "new-project": "/w/acme/-/new-project",
        "run-page": f"/w/acme/vision/runs/{first}/",
        "compare": f"/w/acme/vision/compare?runs={runs}",
        "workspaces": "/",
        "projects": "/w/acme/",
        "workspace-members": "/w/acme/-/members",
        "teams": "/w/acme/-/teams",
        "roles": "/w/acme/-/roles",
        "service-accounts": "/w/acme/-/service-accounts",
        "project-members": "/w/acme/vision/members",
        "project-settings": "/w/acme/vision/settings",
        "project-webhooks": "/w/acme/vision/settings/webhooks",
        "trash": "/w/acme/vision/trash",
        "tokens": "/settings/tokens/",
    }


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_fits_390_px_without_horizontal_scrolling(browser, live_server, world, screenshot, scheme):  # noqa: F811
    context = browser.new_context(viewport=PHONE, color_scheme=scheme)
    page = context.new_page()
    login(page, live_server)
    overflowing = {}
    for name, path in pages(world).items():
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, (name, path, response.status)
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            overflowing[name] = (width, page.evaluate(WIDEST))
        screenshot(page, f"narrow-{scheme}-{name}")
    context.close()
    assert not overflowing, "\n".join(
        f"{name}: {width}px {' | '.join(wide)}" for name, (width, wide) in overflowing.items()
    )

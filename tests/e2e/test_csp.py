"""Every page under the production Content-Security-Policy in a real browser: no violation
reported, no script error, and the pages still work (charts draw, htmx swaps, the admin and
the API docs render)."""

import math
import re

import pytest
from playwright.sync_api import expect

from projects import services as project_services
from runs import services

pytestmark = pytest.mark.django_db(transaction=True)

# Listens from before any page script runs; a violation is recorded even when the console is not.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline") + " at " + e.sourceFile + ":" + e.lineNumber);
});
"""

CANVAS_HAS_INK = """(canvas) => {
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let ink = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) ink++;
    return ink;
}"""


@pytest.fixture
def world(django_user_model):
    owner = django_user_model.objects.create_user("owner", password="pw-owner", is_staff=True, is_superuser=True)
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    for index, lr in enumerate((0.1, 0.01)):
        run, _ = services.create_run(owner, project, name=f"lr{lr}")
        services.apply_batch(
            owner,
            run,
            stream="s",
            seq=0,
            raw_ops=[
                {"op": "assign", "path": "parameters", "value": {"lr": lr, "seed": 7}},
                {"op": "assign", "path": "eval/acc", "value": 0.6 + index / 10},
                {
                    "op": "append",
                    "path": "train/loss",
                    "values": [math.exp(-s / (200 + 50 * index)) for s in range(500)],
                },
                {"op": "append", "path": "stdout", "kind": "string", "values": [f"epoch {i}" for i in range(5)]},
            ],
        )
    return owner


@pytest.fixture
def watched(page):
    """The page, with every CSP violation, CSP console message and script error collected."""
    problems = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def on_console(message):
        if message.type in ("error", "warning") and "Content Security Policy" in message.text:
            problems.append(f"console: {message.text}")

    page.on("console", on_console)

    def check(where):
        problems.extend(f"{where}: {v}" for v in page.evaluate("window.__cspViolations || []"))
        assert not problems, problems

    return page, check


def test_pages_work_under_the_csp_without_a_violation(watched, live_server, world, screenshot):
    page, check = watched
    base = live_server.url

    page.goto(f"{base}/accounts/login/")
    assert "script-src 'self'" in page.evaluate(
        "() => fetch(location.href).then(r => r.headers.get('content-security-policy'))"
    )
    page.fill("input[name=username]", "owner")
    page.fill("input[name=password]", "pw-owner")
    check("login")
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))
    check("workspace list")

    # run table: htmx swaps (sort, query suggestions) and a saved view's column width
    page.goto(f"{base}/w/acme/vision/")
    expect(page.locator("#runs-grid tbody tr[data-url]")).to_have_count(2)
    page.locator("#query").click()
    page.locator("#query").type("param")
    expect(page.locator("#query-suggestions li").first).to_be_visible()
    page.goto(f"{base}/w/acme/vision/?c=sys/id&c=parameters/lr")
    page.locator("#runs-grid thead th[data-path='parameters/lr'] a").first.click()
    expect(page).to_have_url(re.compile(r"sort="))
    check("run table")

    # run page: the prefetched chart draws; a namespace and the log load through htmx
    page.goto(f"{base}/w/acme/vision/runs/VIS-2/")
    chart = page.locator('figure.chart[data-path="train/loss"]')
    expect(chart).to_have_attribute("data-drawn", "1", timeout=10_000)
    assert chart.locator("canvas").evaluate(CANVAS_HAS_INK) > 300
    assert page.evaluate("typeof window.RunstoreChartPrefetch") == "object", "the chart prefetch did not run"
    page.locator("details.ns summary", has_text="parameters").click()
    expect(page.locator("details.ns", has_text="parameters")).to_contain_text("0.01")
    check("run page")

    # compare: charts, run colours from data attributes, parameter plots
    page.goto(f"{base}/w/acme/vision/compare?runs=VIS-1,VIS-2")
    compare_chart = page.locator('figure.chart[data-path="train/loss"]')
    expect(compare_chart).to_have_attribute("data-drawn", "1", timeout=10_000)
    assert compare_chart.locator("canvas").evaluate(CANVAS_HAS_INK) > 300
    expect(page.locator(".legend input.run-color").first).to_have_value("#1f77b4")
    page.locator("#diff").scroll_into_view_if_needed()
    swatch = page.locator("#diff .swatch").first
    expect(swatch).to_be_attached(timeout=10_000)
    assert swatch.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(31, 119, 180)"
    page.locator("#plots").scroll_into_view_if_needed()
    expect(page.locator("#parallel-canvas")).to_have_attribute("data-drawn", "1")
    check("compare")
    screenshot(page, "compare-under-csp", full_page=False)

    # third-party pages: the admin, Swagger UI, the browsable API
    page.goto(f"{base}/admin/")
    expect(page.locator("#site-name")).to_be_visible()
    page.goto(f"{base}/admin/auth/user/{world.pk}/change/")
    expect(page.locator("input[name=username]")).to_have_value("owner")
    check("admin")
    page.goto(f"{base}/api/docs/")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible(timeout=15_000)
    check("api docs")
    page.goto(f"{base}/api/v1/runs/?format=api")
    expect(page.locator(".response-info")).to_contain_text("VIS-1")
    check("browsable api")


def test_running_run_header_polls_and_holds_while_its_editor_is_open(watched, live_server, world):
    """The header of a running run refreshes every 5 s without eval (forbidden by the CSP), and
    skips its refresh while the edit form is open so typing is not lost."""
    page, check = watched
    polls = []
    page.on("request", lambda request: polls.append(request.url) if "fragment=header" in request.url else None)
    page.context.add_cookies([{"name": "sessionid", "value": _session_for(world), "url": live_server.url}])
    page.goto(f"{live_server.url}/w/acme/vision/runs/VIS-1/")
    page.wait_for_timeout(5_800)
    assert polls, "the running run's header did not refresh"
    page.locator("#run-header details.edit summary").click()
    seen = len(polls)
    page.wait_for_timeout(5_800)
    assert len(polls) == seen, "the header refreshed while its editor was open"
    expect(page.locator("#run-header details.edit")).to_have_attribute("open", "")
    check("running run page")


def _session_for(user) -> str:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return session.session_key

"""The project dashboard in the browser: charts of the filtered runs, added and removed, saved with a view."""

import re

import pytest
from playwright.sync_api import expect

from runs import services as run_services
from runs.models import SavedView
from tests.conftest import batch

from .test_browser import login

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def runs(owner, project, owner_api):
    made = []
    for i in range(3):
        run, _ = run_services.create_run(owner, project, name=f"sweep-{i}")
        ops = [
            {
                "op": "assign",
                "path": "parameters",
                "value": {"lr": 0.001 * (i + 1), "optimizer": ["adam", "sgd"][i % 2]},
            },
            {"op": "append", "path": "train/loss", "values": [1.0 / (s + 1 + i) for s in range(200)]},
            {"op": "append", "path": "train/acc", "values": [s / 200 for s in range(200)]},
            {"op": "append", "path": "monitoring/cpu", "values": [10.0 + i, 20.0, 30.0 - i]},
        ]
        assert batch(owner_api, run, ops).status_code == 200
        made.append(run)
    return made


def drawn_runs(page, path):
    return page.evaluate(
        """(path) => { for (const [fig, s] of window.RunstoreCharts.charts) if (fig.dataset.path === path)
             return s.runs.filter((r) => r.steps.length).map((r) => r.id); return null; }""",
        path,
    )


def test_dashboard_draws_the_filtered_runs_and_keeps_its_charts_in_the_saved_view(page, live_server, runs, screenshot):
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/?q=parameters/lr+>+0.0015")
    page.click("#dashboard-link")
    page.wait_for_url(re.compile(r".*/dashboard\?.*q=parameters"))
    expect(page.locator("figure.chart[data-drawn]")).to_have_count(2)  # train/acc and train/loss
    assert sorted(drawn_runs(page, "train/loss")) == sorted(r.human_id for r in runs[1:])
    expect(page.locator("#dashboard-scope")).to_contain_text("Drawing all 2 runs the filter selects")

    # add a chart of a suggested series, remove another
    page.fill("#add-chart input[name=path]", "monitoring/cpu")
    page.click("#add-chart button[type=submit]")
    expect(page.locator('figure.chart[data-path="monitoring/cpu"][data-drawn]')).to_have_count(1)
    page.click('button.remove-chart[data-path="train/acc"]')
    expect(page.locator('figure.chart[data-path="train/acc"]')).to_have_count(0)
    assert "chart=monitoring%2Fcpu" in page.url and "train%2Facc" not in page.url
    page.select_option("#dash-x", "relative")
    expect(page.locator('figure.chart[data-path="train/loss"][data-drawn]')).to_have_count(1)

    # save it with the view, opening on the dashboard
    page.click("#views-menu summary")
    page.fill("#save-dashboard input[name=name]", "sweep board")
    page.check("#open-dashboard")
    page.click("#save-dashboard button[type=submit]")
    view = SavedView.objects.get(name="sweep board")
    page.wait_for_url(re.compile(rf".*/dashboard\?view={view.pk}$"))
    assert view.dashboard["charts"] == ["train/loss", "monitoring/cpu"] and view.dashboard["x"] == "relative"
    assert view.query == "parameters/lr > 0.0015"

    # the table of that view opens on its dashboard; a reload shows the saved charts
    page.goto(f"{live_server.url}/w/acme/vision/?view={view.pk}")
    page.wait_for_url(re.compile(r".*/dashboard\?view=.*"))
    expect(page.locator("figure.chart[data-drawn]")).to_have_count(2)
    assert [f.get_attribute("data-path") for f in page.locator("figure.chart").all()] == [
        "train/loss",
        "monitoring/cpu",
    ]
    expect(page.locator("#dash-x")).to_have_value("relative")
    # the charts follow the saved axis too, not only the control
    assert page.evaluate("window.RunstoreCharts.settings.x") == "relative"
    page.wait_for_function(
        "[...window.RunstoreCharts.charts.values()].every((s) => s.u && s.u._runstoreX === 'relative')"
    )
    assert sorted(drawn_runs(page, "monitoring/cpu")) == sorted(r.human_id for r in runs[1:])
    screenshot(page, "dashboard-light")


@pytest.mark.parametrize(
    ("scheme", "viewport"), [("dark", {"width": 1400, "height": 900}), ("light", PHONE), ("dark", PHONE)]
)
def test_dashboard_coloured_by_a_field_in_dark_and_narrow_layouts(
    browser, live_server, runs, screenshot, scheme, viewport
):
    context = browser.new_context(viewport=viewport, color_scheme=scheme)
    page = context.new_page()
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/dashboard?color=parameters/optimizer")
    expect(page.locator("figure.chart[data-drawn]")).to_have_count(2)
    expect(page.locator(".dashboard-legend li")).to_have_count(2)
    expect(page.locator(".dashboard-legend")).to_contain_text("parameters/optimizer = adam (2 runs)")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], f"the page is {width} px wide"
    name = f"dashboard-{scheme}" + ("-390" if viewport is PHONE else "")
    screenshot(page, name)
    context.close()


def test_dashboard_asks_for_its_charts_data_in_one_request_before_its_scripts_load(page, live_server, runs):
    login(page, live_server)
    asked = []
    page.on("request", lambda r: asked.append(r.url) if "dashboard/chart-data" in r.url else None)
    page.goto(f"{live_server.url}/w/acme/vision/dashboard")
    expect(page.locator("figure.chart[data-drawn]")).to_have_count(2)
    # both charts (the monitoring/ series are left out by default) in one request of the columns format
    assert len(asked) == 1 and "format=columns" in asked[0], asked
    assert "path=train%2Facc" in asked[0] and "path=train%2Floss" in asked[0], asked
    for path in ("train/loss", "train/acc"):  # each chart drew its own series of every run
        assert sorted(drawn_runs(page, path)) == sorted(r.human_id for r in runs)
    started = page.evaluate(
        """() => performance.getEntriesByType("resource").filter((r) => r.name.includes("dashboard/chart-data"))
             .map((r) => r.startTime)"""
    )
    # asked for from <head>: before the page was parsed, so before its deferred scripts (charts.js) ran
    parsed = page.evaluate("""() => performance.getEntriesByType("navigation")[0].domInteractive""")
    assert len(started) == 1 and max(started) < parsed, (started, parsed)

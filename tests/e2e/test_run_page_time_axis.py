"""The run page in a browser: one time axis for training and monitoring charts, Markdown notes, and
the download buttons of file fields."""

import datetime
import re
import time

import pytest
from playwright.sync_api import expect

from projects import services as project_services
from runs import services
from runs.models import Run

from .test_browser import login

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}
START = float(int(time.time()) - 3600)
END = START + 120

STATES = """() => [...window.RunstoreCharts.charts.values()].filter((s) => s.u).map((s) => ({
  path: s.fig.dataset.path, x: s.u._runstoreX, min: s.u.scales.x.min, max: s.u.scales.x.max,
  ticks: s.fig.dataset.xTicks || null }))"""


@pytest.fixture
def timed_world(django_user_model):
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    run, _ = services.create_run(owner, project, name="timed")
    services.apply_batch(
        owner,
        run,
        stream="s",
        seq=0,
        raw_ops=[
            {
                "op": "append",
                "path": "train/loss",
                "values": [1.0 / (i + 1) for i in range(10)],
                "timestamps": [START + 5 + 10 * i for i in range(10)],
            },
            {
                "op": "append",
                "path": "monitoring/cpu",
                "values": [40.0 + (i % 7) for i in range(30)],
                "timestamps": [START + 4 * i for i in range(30)],
            },
        ],
    )
    Run.objects.filter(pk=run.pk).update(
        state="finished",
        created_at=datetime.datetime.fromtimestamp(START, datetime.UTC),
        finished_at=datetime.datetime.fromtimestamp(END, datetime.UTC),
    )
    return run


def wait_for_axis(page, x):
    page.wait_for_function(
        f"""() => {{ const s = ({STATES})(); return s.length === 2 && s.every((c) => c.x === "{x}" && c.min != null); }}"""
    )
    return {c["path"]: c for c in page.evaluate(STATES)}


def test_wall_and_relative_time_put_training_and_monitoring_charts_on_one_axis(
    page, live_server, timed_world, screenshot
):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/runs/VIS-1/")
    expect(page.locator('figure.chart[data-path="train/loss"]')).to_have_attribute("data-drawn", "1", timeout=10_000)
    page.locator("#monitoring").scroll_into_view_if_needed()
    expect(page.locator('figure.chart[data-path="monitoring/cpu"]')).to_have_attribute(
        "data-drawn", "1", timeout=10_000
    )

    page.locator('#chart-controls [data-control="x"]').select_option("time")
    charts = wait_for_axis(page, "time")
    loss, cpu = charts["train/loss"], charts["monitoring/cpu"]
    # both span the run, start to end, though the loss has 10 steps and the CPU 30 samples
    assert loss["min"] == pytest.approx(START) and cpu["min"] == pytest.approx(START)
    assert loss["max"] == pytest.approx(END) and cpu["max"] == pytest.approx(END)
    # the plot areas line up on the page: one instant sits at one x pixel on both charts
    a = page.locator('figure.chart[data-path="train/loss"] .u-over').bounding_box()
    b = page.locator('figure.chart[data-path="monitoring/cpu"] .u-over').bounding_box()
    assert (a["x"], a["width"]) == pytest.approx((b["x"], b["width"]), abs=1)
    screenshot(page, "run-time-axis-wall")

    page.locator('#chart-controls [data-control="x"]').select_option("relative")
    charts = wait_for_axis(page, "relative")
    loss, cpu = charts["train/loss"], charts["monitoring/cpu"]
    assert (loss["min"], loss["max"]) == pytest.approx((0, 120)) == (cpu["min"], cpu["max"])
    assert any(re.fullmatch(r"\d+m \d\ds|\d+s", t) for t in loss["ticks"].strip("[]").replace('"', "").split(","))
    # hovering one chart moves the other's cursor to the same instant
    box = page.locator('figure.chart[data-path="train/loss"] .u-over').bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    left = page.evaluate(
        """() => [...window.RunstoreCharts.charts.values()].map((s) => s.u.posToVal(s.u.cursor.left, "x"))"""
    )
    assert left[0] == pytest.approx(left[1], abs=1.5), left
    screenshot(page, "run-time-axis-relative")

    page.locator('#chart-controls [data-control="x"]').select_option("step")
    page.wait_for_function(
        """() => [...window.RunstoreCharts.charts.values()].some((s) => s.u && s.u._runstoreX === "step")"""
    )
    assert errors == []


def test_the_run_pages_x_axis_log_scale_and_smoothing_survive_a_reload(page, live_server, timed_world, screenshot):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/runs/VIS-1/")
    expect(page.locator('figure.chart[data-path="train/loss"]')).to_have_attribute("data-drawn", "1", timeout=10_000)
    page.locator('#chart-controls [data-control="x"]').select_option("relative")
    page.locator('#chart-controls [data-control="log"]').check()
    page.locator('#chart-controls [data-control="smooth"]').fill("0.5")
    page.locator('#chart-controls [data-control="smooth"]').dispatch_event("change")
    assert re.search(r"[?&]x=relative(&|$)", page.url) and "log=1" in page.url and "smooth=0.5" in page.url

    page.reload()
    page.locator("#monitoring").scroll_into_view_if_needed()
    charts = wait_for_axis(page, "relative")
    assert (charts["train/loss"]["min"], charts["train/loss"]["max"]) == pytest.approx((0, 120))
    expect(page.locator('#chart-controls [data-control="x"]')).to_have_value("relative")
    expect(page.locator('#chart-controls [data-control="log"]')).to_be_checked()
    expect(page.locator('#chart-controls [data-control="smooth"]')).to_have_value("0.5")
    assert page.evaluate("window.RunstoreCharts.settings") == {"x": "relative", "log": True, "smooth": 0.5}
    screenshot(page, "run-axis-kept-after-reload")

    page.locator('#chart-controls [data-control="x"]').select_option("step")
    assert "x=" not in page.url  # the default leaves the address
    assert errors == []


def test_notes_edited_in_markdown_render_on_the_run_page(page, live_server, timed_world):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/runs/VIS-1/")
    page.get_by_role("link", name="Edit notes").click()
    page.locator("#notes-text").fill(
        "## Findings\n\n- **warm-up** helps\n- see [the paper](https://arxiv.org/abs/1706.03762)\n\n"
        "<script>window.pwned = 1</script>\n\n| lr | acc |\n|---|---|\n| 3e-4 | 0.91 |\n"
    )
    page.get_by_role("button", name="Save notes").click()
    notes = page.locator("#run-notes .markdown")
    expect(notes.locator("h2")).to_have_text("Findings")
    expect(notes.locator("strong")).to_have_text("warm-up")
    link = notes.get_by_role("link", name="the paper")
    expect(link).to_have_attribute("rel", "noopener nofollow noreferrer")
    expect(notes).to_contain_text("<script>window.pwned = 1</script>")  # shown as text
    assert page.evaluate("() => window.pwned") is None
    expect(notes.locator("td").last).to_have_text("0.91")
    # the notes stay after a reload
    page.reload()
    expect(page.locator("#run-notes .markdown h2")).to_have_text("Findings")
    page.locator("#notes").screenshot(path=str(_shot("run-notes-light")))
    assert errors == []


def _shot(name):
    from .conftest import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"


@pytest.mark.parametrize(("scheme", "viewport"), [("light", None), ("dark", None), ("light", PHONE), ("dark", PHONE)])
def test_run_page_with_notes_and_time_axis_in_light_dark_and_phone_layouts(
    browser, live_server, timed_world, scheme, viewport
):
    Run.objects.filter(pk=timed_world.pk).update(
        description="**Baseline** with `lr=3e-4`; see [logs](https://example.com)."
    )
    context = browser.new_context(viewport=viewport or {"width": 1400, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/runs/VIS-1/")
    page.locator('#chart-controls [data-control="x"]').select_option("relative")
    page.locator("#monitoring").scroll_into_view_if_needed()
    wait_for_axis(page, "relative")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= (viewport or {"width": 1400})["width"], width
    page.evaluate("() => window.scrollTo(0, 0)")
    name = f"run-page-time-axis-{scheme}" + ("-390" if viewport else "")
    page.screenshot(path=str(_shot(name)), full_page=True)
    context.close()

"""Chart numbers in a real browser: tick labels, hover values and table cells share one format."""

import json
import math
import re

import pytest
from playwright.sync_api import expect

from projects import services as project_services
from runs import services

from .test_browser import login

pytestmark = pytest.mark.django_db(transaction=True)

STEPS = 1000


@pytest.fixture
def lr_world(django_user_model):
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    run, _ = services.create_run(owner, project, name="decay")
    services.apply_batch(
        owner,
        run,
        stream="s",
        seq=0,
        raw_ops=[
            {"op": "assign", "path": "eval/lr", "value": 0.0075},
            # a learning rate decaying from 1e-3 to 1e-6
            {"op": "append", "path": "train/lr", "values": [1e-3 * 10 ** (-3 * s / (STEPS - 1)) for s in range(STEPS)]},
            {"op": "append", "path": "train/flat", "values": [0.0075] * STEPS},
        ],
    )
    services.update_run(owner, run, state="finished")
    return run


def y_ticks(chart):
    return json.loads(chart.get_attribute("data-y-ticks"))


def assert_distinct_neighbours(labels):
    assert len(labels) >= 3, labels
    for a, b in zip(labels, labels[1:], strict=False):
        assert a != b, labels


def test_ticks_of_a_1e3_to_1e6_series_are_distinct_on_linear_and_log_scales(page, live_server, lr_world, screenshot):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/runs/VIS-1/")
    chart = page.locator('figure.chart[data-path="train/lr"]')
    expect(chart).to_have_attribute("data-drawn", "1", timeout=10_000)
    linear = y_ticks(chart)
    assert_distinct_neighbours(linear)
    # no tick of a non-zero value is printed as 0
    assert all(label == "0" or float(label) != 0 for label in linear), linear
    screenshot(page, "charts-format-linear")

    page.locator('[data-control="log"]').check()
    expect(chart).not_to_have_attribute("data-y-ticks", json.dumps(linear))
    log = y_ticks(chart)
    assert_distinct_neighbours(log)
    assert all(float(label) > 0 for label in log), log
    assert {"1e-06", "1e-05", "1e-04", "0.001"} <= set(log), log
    screenshot(page, "charts-format-log")
    assert errors == []


def test_0_0075_shows_as_0_0075_in_hover_and_table(page, live_server, lr_world):
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/runs/VIS-1/")
    chart = page.locator('figure.chart[data-path="train/flat"]')
    expect(chart).to_have_attribute("data-drawn", "1", timeout=10_000)
    box = chart.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(chart.locator(".u-legend .u-series").last).to_contain_text("0.0075")
    assert "0.008" not in chart.locator(".u-legend").inner_text()

    page.goto(f"{live_server.url}/w/acme/vision/?c=eval/lr")
    expect(page.locator("#runs-grid tbody")).to_contain_text("0.0075")


def test_hover_over_a_bucket_shows_its_step_range_and_min_avg_max_and_raw_points_once_zoomed(
    page, live_server, lr_world, screenshot
):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/runs/VIS-1/")
    chart = page.locator('figure.chart[data-path="train/lr"]')
    expect(chart).to_have_attribute("data-drawn", "1", timeout=10_000)
    legend = chart.locator(".u-legend")
    over = chart.locator(".u-over")
    box = over.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2)
    # 1,000 steps on a plot narrower than 1,000 px: every point is a bucket of several steps
    expect(legend).to_contain_text("bucket of")
    text = legend.inner_text()
    first, last = map(int, re.search(r"([\d,]+)–([\d,]+) \(bucket of (\d+) points\)", text).group(1, 2))
    assert first < last
    assert ".5" not in re.search(r"step:?\s*([^\n]*)", text).group(1)
    assert re.search(r"min [\d.e+-]+ · avg [\d.e+-]+ · max [\d.e+-]+", text), text
    screenshot(page, "charts-hover-bucket", full_page=False)

    # zoom to about 40 steps: the chart shows raw points, the hover a single step and its value
    with page.expect_response(lambda r: "chart-data" in r.url and "from_step=" in r.url):
        page.mouse.move(box["x"] + box["width"] * 0.50, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.54, box["y"] + box["height"] / 2, steps=5)
        page.mouse.up()
    expect(chart).to_have_class(re.compile("zoomed"))
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    expect(legend).not_to_contain_text("bucket of")
    text = legend.inner_text()
    assert "min " not in text, text
    assert re.search(r"step:?\s*\d+\s*train/lr:?\s*[\d.e+-]+", text), text
    screenshot(page, "charts-hover-raw", full_page=False)
    assert errors == []


def _lab(hex_color):
    def linear(c):
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(int(hex_color[i : i + 2], 16)) for i in (1, 3, 5))
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t):
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def test_compare_of_50_runs_gives_every_run_its_own_distinguishable_colour(
    page, live_server, django_user_model, screenshot
):
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    for index in range(50):
        run, _ = services.create_run(owner, project, name=f"r{index}")
        services.apply_batch(
            owner,
            run,
            stream="s",
            seq=0,
            raw_ops=[{"op": "append", "path": "train/loss", "values": [index + s / 10 for s in range(20)]}],
        )
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, live_server)
    ids = ",".join(f"VIS-{n}" for n in range(1, 51))
    page.goto(f"{live_server.url}/w/acme/vision/compare?runs={ids}")
    chart = page.locator('figure.chart[data-path="train/loss"]')
    expect(chart).to_have_attribute("data-drawn", "1", timeout=15_000)
    colors = json.loads(page.locator("#compare-grid").get_attribute("data-colors"))
    assert len(colors) == 50
    assert len(set(colors.values())) == 50
    labs = [_lab(c) for c in colors.values()]
    closest = min(math.dist(a, b) for i, a in enumerate(labs) for b in labs[i + 1 :])
    assert closest >= 20, closest
    swatches = page.locator(".swatch[data-color]")
    assert len({swatches.nth(i).get_attribute("data-color") for i in range(50)}) == 50
    screenshot(page, "compare-50-runs")
    assert errors == []


def test_monitoring_charts_have_wall_clock_time_on_x_and_units_in_titles(page, live_server, lr_world, screenshot):
    start = 1767607200.0  # 2026-01-05 10:00 UTC
    services.apply_batch(
        lr_world.owner,
        lr_world,
        stream="m",
        seq=0,
        raw_ops=[
            {
                "op": "append",
                "path": path,
                "values": [value(i) for i in range(120)],
                "timestamps": [start + 10.0 * i for i in range(120)],
            }
            for path, value in [
                ("monitoring/cpu", lambda i: 20.0 + i % 50),
                ("monitoring/memory", lambda i: 3.5 + i / 100),
                ("monitoring/gpu/0/utilization", lambda i: 90.0),
            ]
        ],
    )
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/runs/VIS-1/")
    with page.expect_response(lambda r: "chart-data" in r.url and "monitoring%2Fcpu" in r.url) as response:
        page.locator("#monitoring").scroll_into_view_if_needed()
    assert "x=time" in response.value.url
    cpu = page.locator('figure.chart[data-path="monitoring/cpu"]')
    expect(cpu).to_have_attribute("data-drawn", "1", timeout=10_000)
    expect(cpu.locator("figcaption")).to_contain_text("monitoring/cpu (%)")
    expect(page.locator('figure.chart[data-path="monitoring/memory"] figcaption')).to_contain_text(
        "monitoring/memory (GiB)"
    )
    expect(page.locator('figure.chart[data-path="monitoring/gpu/0/utilization"] figcaption')).to_contain_text("(%)")
    x_range = cpu.evaluate(
        "(fig) => { const u = window.RunstoreCharts.charts.get(fig).u; return [u.scales.x.min, u.scales.x.max]; }"
    )
    assert start - 60 <= x_range[0] <= start + 60 and start + 1100 <= x_range[1] <= start + 1300, x_range
    # the training charts above stay on steps
    lr = page.locator('figure.chart[data-path="train/lr"]')
    assert lr.evaluate("(fig) => window.RunstoreCharts.charts.get(fig).u.scales.x.max") < 2000
    box = cpu.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(cpu.locator(".u-legend")).to_contain_text("2026")
    screenshot(page, "charts-monitoring-time")
    assert errors == []


HAS_COLOR = """(canvas, rgb) => {
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < data.length; i += 4) {
        if (Math.abs(data[i] - rgb[0]) < 12 && Math.abs(data[i + 1] - rgb[1]) < 12 && Math.abs(data[i + 2] - rgb[2]) < 12
            && data[i + 3] > 200) n++;
    }
    return n;
}"""


def test_a_user_changes_a_runs_colour_in_compare_and_the_address_keeps_it(page, live_server, lr_world, screenshot):
    for index in range(2):
        run, _ = services.create_run(lr_world.owner, lr_world.project, name=f"other{index}")
        services.apply_batch(
            lr_world.owner,
            run,
            stream="s",
            seq=0,
            raw_ops=[{"op": "append", "path": "train/lr", "values": [1e-3 * (index + 2)] * STEPS}],
        )
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, live_server)
    # The attribute table is held back until the colour is picked, as a slow server would: the
    # fragment asked for before the pick must still show the picked colour when it arrives.
    held = []
    diff_fragment = re.compile(r".*fragment=diff.*")

    def hold(route):
        held.append(route)

    page.route(diff_fragment, hold)
    page.goto(f"{live_server.url}/w/acme/vision/compare?runs=VIS-1,VIS-2,VIS-3")
    chart = page.locator('figure.chart[data-path="train/lr"]')
    expect(chart).to_have_attribute("data-drawn", "1", timeout=10_000)
    canvas = chart.locator("canvas")
    assert canvas.evaluate(HAS_COLOR, [0, 255, 0]) == 0

    page.locator('input.run-color[data-run="VIS-2"]').fill("#00ff00")
    expect(page).to_have_url(re.compile(r"colors=VIS-2(:|%3A)00ff00"))
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(100)
    assert len(held) == 1, "the attribute table was not asked for"
    held[0].continue_()
    page.unroute(diff_fragment, hold)
    page.wait_for_function(
        "(c) => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " for (let i = 0; i < d.length; i += 4) if (d[i] < 12 && d[i+1] > 243 && d[i+2] < 12) return true; return false; }",
        arg=canvas.element_handle(),
    )
    swatch = page.locator('#diff-table .swatch[data-run="VIS-2"]')
    expect(swatch).to_have_attribute("data-color", "#00ff00")

    # the colour is part of the address: a reload (and the fragments it loads) keep it
    page.reload()
    expect(page.locator('input.run-color[data-run="VIS-2"]')).to_have_value("#00ff00")
    expect(page.locator('#diff-table .swatch[data-run="VIS-2"]')).to_have_attribute("data-color", "#00ff00")
    expect(chart).to_have_attribute("data-drawn", "1", timeout=10_000)
    assert canvas.evaluate(HAS_COLOR, [0, 255, 0]) > 20
    assert json.loads(page.locator("#compare-grid").get_attribute("data-colors"))["VIS-1"] != "#00ff00"
    screenshot(page, "compare-run-colour")
    assert errors == []

"""Compare's parameter plots in a browser: parallel coordinates open on the parameters that vary
with the metric, with categorical, log and constant axes drawn honestly, readable titles, brushing
and a checkbox list; the scatter plots a string field against a metric."""

import json
import math
import re

import pytest
from playwright.sync_api import expect

from projects import services as project_services
from runs import services

from .conftest import SCREENSHOTS
from .test_browser import login

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}
# the right edge of the widest element of a section, outside boxes that scroll or clip their content
FITS = """(section) => Math.max(...[section, ...section.querySelectorAll('*')].map((el) => {
    for (let p = el.parentElement; p && p !== section.parentElement; p = p.parentElement) {
        if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) return 0;
    }
    return el.getBoundingClientRect().right;
}))"""
LONG = "parameters/augmentation_strength_of_the_random_crop_in_the_first_phase"
# lr spans four orders of magnitude and drives the accuracy; the optimizer is a string; seed is constant
SWEEP = [
    # (optimizer, lr, dropout)
    ("adam", 1e-1, 0.1),
    ("adam", 1e-2, 0.3),
    ("sgd", 1e-3, 0.2),
    ("sgd", 1e-4, 0.1),
    ("rmsprop", 1e-5, 0.3),
    ("adam", 3e-3, 0.2),
]


def accuracy(lr):
    return round(0.95 - 0.05 * abs(math.log10(lr) + 1), 4)


@pytest.fixture
def sweep(django_user_model):
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    for index, (optimizer, lr, dropout) in enumerate(SWEEP):
        run, _ = services.create_run(owner, project, name=f"{optimizer}-{lr}")
        services.apply_batch(
            owner,
            run,
            stream="s",
            seq=0,
            raw_ops=[
                {
                    "op": "assign",
                    "path": "parameters",
                    "value": {"optimizer": optimizer, "lr": lr, "dropout": dropout, "seed": 7},
                },
                {"op": "assign", "path": LONG, "value": index % 3},
                {"op": "assign", "path": "eval/acc", "value": accuracy(lr)},
            ],
        )
    return project


def open_plots(page, live_server):
    login(page, live_server)
    ids = ",".join(f"VIS-{n}" for n in range(1, len(SWEEP) + 1))
    page.goto(f"{live_server.url}/w/acme/vision/compare?runs={ids}")
    page.locator("#plots").scroll_into_view_if_needed()
    expect(page.locator("#parallel-canvas")).to_have_attribute("data-drawn", "1", timeout=10_000)
    expect(page.locator("#scatter-canvas")).to_have_attribute("data-drawn", "1", timeout=10_000)


def axes(page, canvas="#parallel-canvas"):
    return json.loads(page.locator(canvas).get_attribute("data-axes"))


def selected(page):
    return sorted(filter(None, page.locator("#parallel-canvas").get_attribute("data-selected").split(",")))


def drag(page, axis, frac_from, frac_to):
    """Drag along a parallel-coordinates axis between two heights (0 bottom, 1 top)."""
    page.locator("#parallel-canvas").evaluate("(c) => c.scrollIntoView({block: 'center', behavior: 'instant'})")
    # sections above the plots load when scrolled into view: let the page settle before aiming
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)
    box = page.locator("#parallel-canvas").bounding_box()
    y = lambda f: box["y"] + axis["bottom"] - f * (axis["bottom"] - axis["top"])  # noqa: E731
    page.mouse.move(box["x"] + axis["x"], y(frac_from))
    page.mouse.down()
    page.mouse.move(box["x"] + axis["x"], (y(frac_from) + y(frac_to)) / 2, steps=3)
    page.mouse.move(box["x"] + axis["x"], y(frac_to), steps=3)
    page.mouse.up()


def test_parallel_coordinates_open_on_the_varying_parameters_with_typed_axes(page, live_server, sweep, screenshot):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_plots(page, live_server)
    checked = page.locator("form[data-kind=parallel] input[name=params]:checked")
    chosen = checked.evaluate_all("(boxes) => boxes.map((b) => b.value)")
    # lr drives the metric: it comes first; the constant seed is offered but not drawn
    assert chosen[0] == "parameters/lr"
    assert {"parameters/lr", "parameters/optimizer", "parameters/dropout"} <= set(chosen)
    assert "parameters/seed" not in chosen
    seed = page.locator("form[data-kind=parallel] li", has=page.locator("input[value='parameters/seed']"))
    expect(seed).to_contain_text("constant")
    # a plain checkbox list, no multi-select
    assert page.locator("form[data-kind=parallel] select[multiple]").count() == 0

    drawn = {a["path"]: a for a in axes(page)}
    assert list(drawn)[-1] == "eval/acc"
    assert drawn["parameters/lr"]["kind"] == "log"
    assert drawn["parameters/lr"]["ticks"] == ["1e-05", "1e-04", "0.001", "0.01", "0.1"]
    assert drawn["parameters/optimizer"]["kind"] == "categorical"
    assert drawn["parameters/optimizer"]["categories"] == ["adam", "rmsprop", "sgd"]
    assert drawn["parameters/optimizer"]["ticks"] == ["adam", "rmsprop", "sgd"]
    assert drawn["eval/acc"]["kind"] == "linear"

    # titles: one per axis, the full path on hover, none overlapping another
    titles = page.locator(".pc-title")
    expect(titles).to_have_count(len(drawn))
    assert titles.evaluate_all("(ts) => ts.map((t) => t.title)") == list(drawn)
    boxes = titles.evaluate_all(
        "(ts) => ts.map((t) => { const r = t.getBoundingClientRect(); return [r.left, r.right, r.top]; })"
    )
    for (_, r1, t1), (l2, _, t2) in zip(boxes, boxes[1:], strict=False):
        assert r1 <= l2 + 0.5 or t1 != t2, (boxes, "titles overlap")

    # the constant seed, ticked, is drawn honestly: one value, no invented range
    page.check("form[data-kind=parallel] input[value='parameters/seed']")
    expect(page.locator("#parallel-canvas")).to_have_attribute("data-axes", re.compile("parameters/seed"))
    seed_axis = {a["path"]: a for a in axes(page)}["parameters/seed"]
    assert seed_axis["kind"] == "constant" and seed_axis["ticks"] == ["7"]
    page.uncheck("form[data-kind=parallel] input[value='parameters/seed']")
    expect(page.locator("#parallel-canvas")).not_to_have_attribute("data-axes", re.compile("parameters/seed"))

    page.evaluate("window.scrollTo(0, 0)")
    page.locator("#plots").scroll_into_view_if_needed()
    page.locator("#plots").screenshot(path=str(_shot("compare-plots-light")))
    page.emulate_media(color_scheme="dark")
    page.wait_for_timeout(300)
    page.locator("#plots").screenshot(path=str(_shot("compare-plots-dark")))
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(400)
    assert page.locator("#plots").evaluate(FITS) <= PHONE["width"]
    narrow = [a["x"] for a in axes(page)]
    assert max(narrow) < PHONE["width"]
    page.locator("#plots").screenshot(path=str(_shot("compare-plots-390")))
    assert not errors, errors


def _shot(name):
    """Where the screenshot fixture puts ``name`` (it made the folder); the plots section alone is shot."""
    return SCREENSHOTS / f"{name}.png"


def test_brushing_axes_keeps_the_runs_inside_every_range(page, live_server, sweep, screenshot):
    open_plots(page, live_server)
    everyone = [f"VIS-{n}" for n in range(1, len(SWEEP) + 1)]
    assert selected(page) == everyone
    drawn = {a["path"]: a for a in axes(page)}
    # the top of the log lr axis: lr >= 1e-3 (runs 1, 2, 3, 6)
    drag(page, drawn["parameters/lr"], 1.0, 0.45)
    assert selected(page) == ["VIS-1", "VIS-2", "VIS-3", "VIS-6"]
    expect(page.locator("#parallel-status")).to_contain_text("4 of 6 runs selected: VIS-1, VIS-2, VIS-3, VIS-6")
    # and adam on the optimizer axis (its category sits at the bottom)
    drag(page, drawn["parameters/optimizer"], 0.1, -0.05)
    assert selected(page) == ["VIS-1", "VIS-2", "VIS-6"]
    page.locator("#plots").screenshot(path=str(_shot("compare-plots-brushed")))
    # a click on the lr axis clears its range: every adam run again
    box = page.locator("#parallel-canvas").bounding_box()
    lr = drawn["parameters/lr"]
    page.mouse.click(box["x"] + lr["x"], box["y"] + (lr["top"] + lr["bottom"]) / 2)
    assert selected(page) == ["VIS-1", "VIS-2", "VIS-6"]
    assert sorted(selected(page)) == sorted(f"VIS-{i + 1}" for i, s in enumerate(SWEEP) if s[0] == "adam")
    # the status' button clears every range: all runs again
    page.locator("#parallel-status button.clear-brushes").click()
    assert selected(page) == everyone
    expect(page.locator("#parallel-status")).to_contain_text("Drag along an axis")


def test_scatter_plots_a_string_axis_against_the_metric_with_labels_inside(page, live_server, sweep, screenshot):
    open_plots(page, live_server)
    form = page.locator("form[data-kind=scatter]")
    form.locator("input[name=x]").fill("parameters/optimizer")
    form.locator("input[name=y]").fill("eval/acc")
    form.locator("button[type=submit]").click()
    expect(page.locator("#scatter-canvas")).to_have_attribute("data-axes", re.compile("parameters/optimizer"))
    x_axis, y_axis = axes(page, "#scatter-canvas")
    assert x_axis["kind"] == "categorical" and x_axis["categories"] == ["adam", "rmsprop", "sgd"]
    assert y_axis["kind"] == "linear"
    labels = json.loads(page.locator("#scatter-canvas").get_attribute("data-labels"))
    assert sorted(label["id"] for label in labels) == [f"VIS-{n}" for n in range(1, len(SWEEP) + 1)]
    width = float(page.locator("#scatter-canvas").get_attribute("data-width"))
    for label in labels:
        assert 0 <= label["x"] and label["x"] + label["width"] <= width, label
    expect(page.locator("#scatter-status")).to_have_text("")
    page.locator("#plots").screenshot(path=str(_shot("compare-scatter-categorical")))
    # the long-named field against lr: a log x axis, ticks formatted like the charts'
    form.locator("input[name=x]").fill("parameters/lr")
    form.locator("input[name=y]").fill(LONG)
    form.locator("button[type=submit]").click()
    expect(page.locator("#scatter-canvas")).to_have_attribute("data-axes", re.compile("augmentation"))
    x_axis, y_axis = axes(page, "#scatter-canvas")
    assert x_axis["kind"] == "log" and "1e-05" in x_axis["ticks"]
    page.locator("#plots").screenshot(path=str(_shot("compare-scatter-light")))


def test_choosing_another_metric_reranks_and_redraws_the_parameters(page, live_server, sweep):
    open_plots(page, live_server)
    metric = page.locator("form[data-kind=parallel] input[name=metric]")
    metric.fill("parameters/dropout")
    metric.dispatch_event("change")
    expect(page.locator("form[data-kind=parallel] legend")).to_contain_text("most associated with parameters/dropout")
    expect(page.locator("#parallel-canvas")).to_have_attribute("data-axes", re.compile("parameters/dropout"))
    expect(page.locator("#parallel-canvas")).to_have_attribute("data-drawn", "1")
    drawn = [a["path"] for a in axes(page)]
    assert drawn[-1] == "parameters/dropout" and "eval/acc" not in drawn[:-1]
    assert page.locator("form[data-kind=parallel] input[name=params][value='parameters/dropout']").count() == 0

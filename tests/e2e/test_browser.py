"""The three main pages in a real browser: run table, run page, compare view."""

import math
import re

import pytest
from playwright.sync_api import expect

from projects import services as project_services
from projects.models import ProjectRole
from runs import services
from runs.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

CANVAS_HAS_INK = """(canvas) => {
    const ctx = canvas.getContext('2d');
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let ink = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) ink++;
    return ink;
}"""


@pytest.fixture
def world(django_user_model):
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer")
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    project_services.set_project_role(project, viewer, ProjectRole.VIEWER)
    sweep = [("adam", 0.1), ("adam", 0.01), ("sgd", 0.1), ("sgd", 0.001), ("adamw", 0.003)]
    for index, (optimizer, lr) in enumerate(sweep):
        run, _ = services.create_run(owner, project, name=f"{optimizer}-lr{lr}", tags=["sweep"] if index % 2 else [])
        services.apply_batch(
            run.owner,
            run,
            stream="s",
            seq=0,
            raw_ops=[
                {"op": "assign", "path": "parameters", "value": {"optimizer": optimizer, "lr": lr, "seed": 7}},
                {"op": "assign", "path": "eval/acc", "value": 0.6 + index / 20},
                {
                    "op": "append",
                    "path": "train/loss",
                    "values": [math.exp(-s / (300 + 50 * index)) + (0.3 if s % 97 == 0 else 0) for s in range(3000)],
                },
                {"op": "append", "path": "train/acc", "values": [1 - math.exp(-s / 400) for s in range(3000)]},
            ],
        )
        if index < 4:
            services.update_run(owner, run, state="finished")
        if index >= 3:
            # the last two runs tracked the same data set (what the client's track_files records)
            services.apply_batch(
                run.owner,
                run,
                stream="track",
                seq=0,
                raw_ops=[
                    {
                        "op": "assign",
                        "path": "data/train",
                        "value": {
                            "hash": "ab12" * 16,
                            "size": 52_428_800,
                            "file_count": 1200,
                            "location": "file:///data/imagenet-subset",
                        },
                    },
                ],
            )
    return project


def login(page, live_server, username="owner"):
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"pw-{username}")
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))


def body_rows(page):
    return page.locator("#runs-grid tbody tr[data-url]")


def test_run_table_filter_sort_group_columns_and_saved_view(page, live_server, world, screenshot):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/")
    expect(body_rows(page)).to_have_count(5)

    # the editor suggests paths as you type, keyboard-navigable
    query = page.locator("#query")
    query.click()
    query.type("param")
    expect(page.locator("#query-suggestions li").first).to_be_visible()
    query.press("ArrowDown")
    query.press("Enter")
    expect(query).to_have_value(re.compile(r"^parameters/"))

    # an error is shown inline with its position
    query.fill("parameters/lr >")
    query.press("Escape")
    page.click("#filter-form button[type=submit]")
    expect(page.locator("#query-error")).to_contain_text("at character 15")

    # a valid filter, kept in the URL
    page.locator("#query").fill('parameters/optimizer = "adam"')
    page.locator("#query").press("Escape")
    page.click("#filter-form button[type=submit]")
    expect(body_rows(page)).to_have_count(2)
    assert "q=parameters%2Foptimizer" in page.url
    page.goto(page.url)  # the link reproduces the view
    expect(body_rows(page)).to_have_count(2)

    # sort by a header
    page.goto(f"{live_server.url}/w/acme/vision/")
    page.locator('#runs-grid th[data-path="sys/name"] a').first.click()
    expect(page.locator('#runs-grid th[data-path="sys/name"]')).to_have_attribute("aria-sort", "ascending")
    expect(body_rows(page).first).to_contain_text("adam-lr0.01")
    assert "sort=sys%2Fname" in page.url

    # pick a column from the chooser
    page.click("#columns-menu summary")
    page.fill('#columns-menu input[name="path_q"]', "lr")
    page.locator("#column-list a", has_text="parameters/lr").click()
    expect(page.locator('#runs-grid th[data-path="parameters/lr"]')).to_be_visible()
    expect(body_rows(page).first.locator("td").last).to_have_text("0.01")

    # group by an attribute: collapsible groups with counts
    page.fill('#filter-form input[name="group"]', "parameters/optimizer")
    page.click("#filter-form button[type=submit]")
    expect(page.locator("tr.group-head")).to_have_count(3)
    expect(page.locator("tr.group-head").first).to_contain_text("2 runs")
    page.locator(".group-toggle").first.click()
    expect(page.locator("tbody.group").first.locator("tr[data-url]").first).to_be_hidden()
    page.fill('#filter-form input[name="group"]', "")
    page.click("#filter-form button[type=submit]")
    expect(page.locator("tr.group-head")).to_have_count(0)
    expect(body_rows(page)).to_have_count(5)

    # keyboard: arrows move through rows, space selects
    body_rows(page).first.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Space")
    expect(body_rows(page).nth(1).locator('input[name="runs"]')).to_be_checked()

    # save the view, then load it again
    page.click("#views-menu summary")
    page.fill('#save-view input[name="name"]', "lr sweep")
    page.click('#save-view button[type="submit"]')
    page.wait_for_url(re.compile(r"view=\d+"))
    expect(page.locator("#views-menu summary")).to_contain_text("lr sweep")
    expect(page.locator('#runs-grid th[data-path="parameters/lr"]')).to_be_visible()
    expect(page.locator("#run-count")).to_contain_text("5 runs")  # the total arrives as its own fragment
    screenshot(page, "run-table", full_page=False)
    assert not errors, errors


def test_run_page_draws_zooms_and_compare_view(page, live_server, world, screenshot):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/runs/VIS-5/")
    chart = page.locator('figure.chart[data-path="train/loss"]')
    expect(chart).to_have_attribute("data-drawn", "1", timeout=10_000)
    canvas = chart.locator("canvas")
    assert canvas.evaluate(CANVAS_HAS_INK) > 500

    # zoom: drag across the plot; the chart fetches finer buckets for the range
    over = chart.locator(".u-over")
    box = over.bounding_box()
    with page.expect_response(lambda r: "chart-data" in r.url and "from_step=" in r.url) as response:
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2, steps=5)
        page.mouse.up()
    zoomed = response.value.json()["runs"][0]
    assert zoomed["steps"][0] > 0 and zoomed["steps"][-1] < 2999
    expect(chart).to_have_class(re.compile("zoomed"))
    chart.dblclick()
    expect(chart).not_to_have_class(re.compile("zoomed"))

    # attribute tree: open a namespace, its values load
    page.locator("details.ns summary", has_text="parameters").click()
    expect(page.locator("details.ns", has_text="parameters")).to_contain_text("adamw")
    # lineage: the run that tracked the same data set is linked
    page.locator("#lineage").scroll_into_view_if_needed()
    expect(page.locator("#lineage-table")).to_contain_text("data/train")
    expect(page.locator("#lineage-table a.run-link", has_text="VIS-4")).to_be_visible()
    screenshot(page, "run-page-lineage", full_page=False)
    page.locator("#charts").scroll_into_view_if_needed()
    screenshot(page, "run-page")

    # compare three runs from the table's selection
    page.goto(f"{live_server.url}/w/acme/vision/")
    for run_id in ("VIS-1", "VIS-2", "VIS-3"):
        page.check(f'#runs-grid input[name="runs"][value="{run_id}"]')
    page.click("#compare-btn")
    page.wait_for_url(re.compile(r"/compare\?"))
    expect(page.locator(".legend li")).to_have_count(3)
    compare_chart = page.locator('figure.chart[data-path="train/loss"]')
    expect(compare_chart).to_have_attribute("data-drawn", "1", timeout=10_000)
    assert compare_chart.locator("canvas").evaluate(CANVAS_HAS_INK) > 500

    # the diff shows only differences by default; the toggle shows every field
    diff = page.locator("#diff-table")
    expect(diff).to_contain_text("parameters/lr")
    expect(diff).not_to_contain_text("parameters/seed")
    page.locator("#only-diff").uncheck()
    expect(page.locator("#diff-table")).to_contain_text("parameters/seed")
    page.locator("#only-diff").check()
    expect(page.locator("#diff-table")).not_to_contain_text("parameters/seed")
    page.locator("#plots").scroll_into_view_if_needed()
    expect(page.locator("#parallel-canvas")).to_have_attribute("data-drawn", "1")
    expect(page.locator("#scatter-canvas")).to_have_attribute("data-drawn", "1")
    page.evaluate("window.scrollTo(0, 0)")  # the sticky section bar would sit mid-page in a full-page shot
    screenshot(page, "compare")
    assert not errors, errors


def test_run_table_scrolls_into_more_rows_and_groups_load_more(page, live_server, django_user_model, screenshot):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    for index in range(60):
        run, _ = services.create_run(owner, project, name=f"r{index:02d}")
        services.apply_batch(
            run.owner,
            run,
            stream="s",
            seq=0,
            raw_ops=[
                {
                    "op": "assign",
                    "path": "parameters",
                    "value": {"optimizer": "adam" if index < 45 else "sgd", "lr": index / 100},
                },
            ],
        )
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/?per=25&c=sys/id&c=sys/name&c=parameters/lr&sort=-parameters/lr")
    expect(body_rows(page).first).to_contain_text("r59")
    # scrolling to the end loads the next pages into the table; the pager follows
    for _ in range(10):
        if body_rows(page).count() >= 60:
            break
        before = body_rows(page).count()
        page.locator("tr.load-more").scroll_into_view_if_needed()
        expect(body_rows(page)).not_to_have_count(before)
    expect(body_rows(page)).to_have_count(60)
    expect(page.locator("tr.load-more")).to_have_count(0)
    expect(page.locator("#pager")).to_contain_text("pages 1–3")
    names = body_rows(page).locator("td:nth-child(3)").all_inner_texts()
    assert names == [f"r{i:02d}" for i in range(59, -1, -1)], "every run once, in order"
    assert "page=" not in page.url  # the URL still gives the view from its start
    page.locator("#pager").scroll_into_view_if_needed()
    screenshot(page, "run-table-scrolled", full_page=False)
    # rows that came by scrolling update live too: a run of the third page finishes
    late = Run.objects.get(project=project, name="r05")
    services.update_run(owner, late, state="finished")
    expect(page.locator(f"#row-{late.pk}")).not_to_have_class(re.compile(r"\brunning\b"), timeout=15_000)
    expect(page.locator(f"#row-{late.pk}")).to_be_visible()

    # grouped: an expanded group loads its next runs in the table's order
    page.goto(
        f"{live_server.url}/w/acme/vision/?per=25&c=sys/id&c=sys/name&c=parameters/lr&sort=-parameters/lr&group=parameters/optimizer"
    )
    adam = page.locator("tbody.group").first
    expect(adam.locator("tr.group-head")).to_contain_text("45 runs")
    expect(adam.locator("tr[data-url]")).to_have_count(20)
    adam.locator("button.load-group").scroll_into_view_if_needed()
    screenshot(page, "run-table-group-more", full_page=False)
    adam.locator("button.load-group").click()
    expect(adam.locator("tr[data-url]")).to_have_count(45)
    expect(adam.locator("button.load-group")).to_have_count(0)
    names = adam.locator("tr[data-url] td:nth-child(3)").all_inner_texts()
    assert names == [f"r{i:02d}" for i in range(44, -1, -1)]
    assert not errors, errors

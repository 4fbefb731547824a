"""The run table in a real browser: comparing a selection, an invalid filter, aggregate metric columns."""

import re

import pytest
from playwright.sync_api import expect

from .test_browser import body_rows, login, world  # noqa: F401  (the shared five-run project)

pytestmark = pytest.mark.django_db(transaction=True)


def test_compare_selected_never_puts_the_csrf_token_or_any_secret_in_a_url(page, live_server, world, screenshot):  # noqa: F811
    visited = []
    page.on("request", lambda request: visited.append(request.url))
    page.on("framenavigated", lambda frame: visited.append(frame.url))
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/")
    for run_id in ("VIS-1", "VIS-2", "VIS-3"):
        page.check(f'#runs-grid input[name="runs"][value="{run_id}"]')
    page.click("#compare-btn")
    page.wait_for_url(re.compile(r"/compare\?"))
    expect(page.locator(".legend li")).to_have_count(3)
    # a clean address: the selected runs and nothing else
    match = re.search(r"/w/acme/vision/compare\?runs=([A-Z0-9,-]+)$", page.url)
    assert match and sorted(match.group(1).split(",")) == ["VIS-1", "VIS-2", "VIS-3"], page.url
    screenshot(page, "compare-from-selection", full_page=False)
    leaked = [u for u in visited if re.search(r"csrf|token|password|secret", u, re.IGNORECASE)]
    assert not leaked, leaked


def test_an_invalid_query_shows_the_error_and_an_empty_table_not_the_unfiltered_one(
    page,
    live_server,
    world,  # noqa: F811
    screenshot,
):
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/")
    expect(body_rows(page)).to_have_count(5)
    expect(page.locator("#run-count")).to_contain_text("5 runs")
    query = page.locator("#query")
    query.fill("parameters/lr >")
    query.press("Escape")
    page.click("#filter-form button[type=submit]")
    expect(page.locator("#query-error")).to_contain_text("at character 15")
    expect(body_rows(page)).to_have_count(0)
    expect(page.locator("#runs-grid tbody")).to_contain_text("No runs are shown until the error above is fixed")
    expect(page.locator("#run-count")).to_have_text("no runs: the filter has an error")
    screenshot(page, "run-table-invalid-query", full_page=False)
    # the link with the bad filter opens the same way (full page, the count inline)
    page.goto(page.url)
    expect(page.locator("#query-error")).to_be_visible()
    expect(body_rows(page)).to_have_count(0)
    expect(page.locator("#run-count")).not_to_contain_text("5")


def test_metric_columns_choose_last_min_max_or_avg_and_headers_say_which(
    page,
    live_server,
    world,  # noqa: F811
    screenshot,
):
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/?c=sys/id&c=sys/name&c=train/loss")
    header = page.locator('#runs-grid thead th[data-path="train/loss"]')
    expect(header).to_contain_text("train/loss (last)")
    # the column chooser adds the series' minimum as a column of its own
    page.locator("#columns-menu summary").click()
    page.locator('#columns-menu input[name="path_q"]').fill("train/loss")
    page.get_by_role("link", name="Add the min of train/loss").click()
    minimum = page.locator('#runs-grid thead th[data-path="train/loss:min"]')
    expect(minimum).to_contain_text("train/loss (min)")
    assert "c=train%2Floss%3Amin" in page.url or "c=train/loss:min" in page.url
    # the header switches the last-value column to the average, in place
    header.get_by_role("link", name="Show the avg of train/loss").click()
    expect(page.locator('#runs-grid thead th[data-path="train/loss:avg"]')).to_contain_text("train/loss (avg)")
    titles = page.locator("#runs-grid thead th[data-path]").evaluate_all("ths => ths.map(th => th.dataset.path)")
    assert titles == ["sys/id", "sys/name", "train/loss:avg", "train/loss:min"]
    # every loss starts at 1.3 (step 0) and decays: its min is below its average, below its max
    row = page.locator("#runs-grid tbody tr[data-url]").first
    values = row.locator("td.num").all_inner_texts()
    assert len(values) == 2 and float(values[1]) < float(values[0]) < 1.3
    screenshot(page, "run-table-aggregate-columns", full_page=False)

"""Run table metric columns: a float series shows its last, min, max or average value, and says which."""

import re
from html import unescape

import pytest
from django.test import Client

from runs import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def losses(project, owner):
    """Two runs with a loss series: a (last 2, min 1, max 3, avg 2) and b (last 5, min 4, max 6, avg 5)."""
    made = {}
    for name, values in (("a", [3.0, 1.0, 2.0]), ("b", [6.0, 4.0, 5.0])):
        run, _ = services.create_run(owner, project, name=name)
        services.apply_batch(
            owner, run, stream="s", seq=0, raw_ops=[{"op": "append", "path": "train/loss", "values": values}]
        )
        made[name] = run
    return made


@pytest.fixture
def browser(viewer):
    client = Client()
    client.force_login(viewer)
    return client


def headers(html):
    return [
        unescape(re.sub(r"<[^>]+>", "", h)).strip()
        for h in re.findall(r'<a href="[^"]*" hx-get="[^"]*" hx-push-url="true" title="Sort by [^"]*">(.*?)</a>', html)
    ]


def cells(html, run):
    row = re.search(rf'<tr id="row-{run.pk}".*?</tr>', html, re.S).group(0)
    return [unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)][1:]


@pytest.mark.parametrize(
    ("spec", "title", "a", "b"),
    [
        ("train/loss", "train/loss (last)", "2", "5"),
        ("train/loss:last", "train/loss (last)", "2", "5"),
        ("train/loss:min", "train/loss (min)", "1", "4"),
        ("train/loss:max", "train/loss (max)", "3", "6"),
        ("train/loss:avg", "train/loss (avg)", "2", "5"),
    ],
)
def test_series_column_shows_the_chosen_aggregate_and_its_header_names_it(browser, losses, spec, title, a, b):
    html = browser.get("/w/acme/vision/", {"c": ["sys/name", spec]}).content.decode()
    assert headers(html)[-1].startswith(title)
    assert cells(html, losses["a"])[-1] == a
    assert cells(html, losses["b"])[-1] == b


def test_series_column_header_switches_between_last_min_max_and_avg(browser, losses):
    html = unescape(browser.get("/w/acme/vision/", {"c": ["sys/name", "train/loss"]}).content.decode())
    picker = re.search(r'<span class="agg-pick".*?</span>', html, re.S).group(0)
    assert '<strong aria-current="true">last</strong>' in picker
    urls = dict(re.findall(r'<a href="([^"]*)"[^>]*>(min|max|avg)</a>', picker))
    by_agg = {agg: url for url, agg in urls.items()}
    assert set(by_agg) == {"min", "max", "avg"}
    # the switch replaces the column in place (same position, other columns kept)
    assert by_agg["min"].startswith("?c=sys%2Fname&c=train%2Floss%3Amin")
    switched = browser.get("/w/acme/vision/" + by_agg["max"]).content.decode()
    assert headers(switched)[-1].startswith("train/loss (max)")
    assert cells(switched, losses["a"])[-1] == "3"


def test_sorting_by_a_series_aggregate_column_orders_by_that_aggregate(browser, losses):
    html = browser.get(
        "/w/acme/vision/", {"c": ["sys/name", "train/loss:min"], "sort": "train/loss:min"}
    ).content.decode()
    assert html.index(f'id="row-{losses["a"].pk}"') < html.index(f'id="row-{losses["b"].pk}"')
    html = browser.get(
        "/w/acme/vision/", {"c": ["sys/name", "train/loss:avg"], "sort": "-train/loss:avg"}
    ).content.decode()
    assert html.index(f'id="row-{losses["b"].pk}"') < html.index(f'id="row-{losses["a"].pk}"')


def test_column_chooser_offers_min_max_and_avg_of_a_float_series(browser, losses):
    html = unescape(browser.get("/w/acme/vision/columns", {"path_q": "loss", "c": ["sys/name"]}).content.decode())
    assert "+ train/loss (last)" in html
    for aggregate in ("min", "max", "avg"):
        assert f"c=sys%2Fname&c=train%2Floss%3A{aggregate}" in html
        assert f'aria-label="Add the {aggregate} of train/loss">+ {aggregate}<' in html
    # one already shown is ticked, not offered again
    html = unescape(
        browser.get("/w/acme/vision/columns", {"path_q": "loss", "c": ["sys/name", "train/loss:min"]}).content.decode()
    )
    assert "✓ min" in html and 'aria-label="Add the min of train/loss"' not in html

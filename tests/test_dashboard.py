"""The project dashboard: charts of the table's filtered runs, kept in saved views."""

import json
from html import unescape

import pytest

from runs import rollups
from runs import services as run_services
from runs.models import Attribute, SavedView

from .conftest import batch

DASH = "/w/acme/vision/dashboard"
DATA = "/w/acme/vision/dashboard/chart-data"


@pytest.fixture
def ui_for(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def make_runs(owner, project, owner_api, count, points=50, start=0):
    runs = []
    for i in range(start, start + count):
        created, _ = run_services.create_run(owner, project, name=f"r{i}")
        ops = [
            {
                "op": "assign",
                "path": "parameters",
                "value": {"lr": 0.001 * (i + 1), "optimizer": ["adam", "sgd"][i % 2]},
            },
            {"op": "append", "path": "train/loss", "values": [1.0 / (s + 1 + i) for s in range(points)]},
            {"op": "append", "path": "train/acc", "values": [s / points for s in range(points)]},
            {"op": "append", "path": "monitoring/cpu", "values": [10.0, 20.0]},
        ]
        assert batch(owner_api, created, ops).status_code == 200
        runs.append(created)
    return runs


def ids(runs):
    return ",".join(r.human_id for r in runs)


def test_dashboard_charts_the_runs_the_filter_selects(ui_for, owner, project, owner_api):
    runs = make_runs(owner, project, owner_api, 4)
    html = ui_for(owner).get(DASH + "?q=parameters/lr+>+0.0025&sort=parameters/lr").content.decode()
    # the filter keeps r2 and r3, in the table's order; one chart per float series, monitoring left out
    assert f'data-runs="{runs[2].human_id},{runs[3].human_id}"' in html
    assert 'data-path="train/acc"' in html and 'data-path="train/loss"' in html
    assert 'data-path="monitoring/cpu"' not in html
    assert "Drawing all 2 runs the filter selects" in html
    assert '<option value="monitoring/cpu">' in html  # any series can still be added


def test_a_dashboard_whose_charts_were_all_removed_stays_empty(ui_for, owner, project, owner_api):
    make_runs(owner, project, owner_api, 1, points=3)
    response = ui_for(owner).get(DASH + "?chart=")
    assert response.status_code == 200 and 'data-path="train/loss"' not in response.content.decode()
    assert "No charts yet" in response.content.decode()


def test_dashboard_says_when_it_draws_only_the_first_runs(ui_for, owner, project, owner_api, monkeypatch):
    from runs import dashboard

    monkeypatch.setattr(dashboard, "MAX_RUNS", 2)
    runs = make_runs(owner, project, owner_api, 3, points=3)
    html = ui_for(owner).get(DASH).content.decode()
    assert "Drawing the first 2 runs the filter selects, in the table's order (newest first)" in html
    assert f'data-runs="{runs[2].human_id},{runs[1].human_id}"' in html


def test_dashboard_colours_by_a_field_with_a_legend(ui_for, owner, project, owner_api):
    runs = make_runs(owner, project, owner_api, 3, points=3)
    html = ui_for(owner).get(DASH + "?color=parameters/optimizer&sort=sys/id").content.decode()
    colors = json.loads(unescape(html.split("data-colors='")[1].split("'")[0]))
    assert colors[runs[0].human_id] == colors[runs[2].human_id] != colors[runs[1].human_id]
    assert "parameters/optimizer = adam" in html and "(2 runs)" in html and "parameters/optimizer = sgd" in html


def test_saved_view_keeps_its_dashboard_and_opens_on_it(ui_for, owner, project, owner_api):
    make_runs(owner, project, owner_api, 2, points=3)
    client = ui_for(owner)
    board = {"charts": ["train/acc", "monitoring/cpu"], "x": "relative", "log": True, "open": "dashboard"}
    response = client.post(
        "/w/acme/vision/views", {"name": "board", "c": ["sys/id"], "q": "", "dashboard": json.dumps(board)}
    )
    view = SavedView.objects.get(name="board")
    assert response.status_code == 302 and response["Location"] == f"{DASH}?view={view.pk}"
    assert view.dashboard == {**board, "smooth": 0.0, "color_by": ""}
    html = client.get(f"{DASH}?view={view.pk}").content.decode()
    assert 'data-path="monitoring/cpu"' in html and 'data-path="train/loss"' not in html
    assert '<option value="relative" selected>' in html and 'id="dash-log" checked' in html
    # the table of a view that opens on its dashboard sends there, unless the table is asked for
    opened = client.get(f"/w/acme/vision/?view={view.pk}")
    assert opened.status_code == 302 and opened["Location"].startswith(f"{DASH}?view={view.pk}")
    assert client.get(f"/w/acme/vision/?view={view.pk}&tab=table").status_code == 200
    # saving the view again from the table keeps its dashboard
    client.post("/w/acme/vision/views", {"name": "board", "c": ["sys/id", "sys/name"]})
    view.refresh_from_db()
    assert view.dashboard["charts"] == ["train/acc", "monitoring/cpu"] and len(view.columns) == 2


def test_a_bad_dashboard_is_a_400_naming_what_is_wrong(ui_for, owner, project):
    client = ui_for(owner)
    response = client.post("/w/acme/vision/views", {"name": "x", "dashboard": json.dumps({"x": "epoch"})})
    assert (
        response.status_code == 400
        and "dashboard" in response.content.decode()
        and "x must be" in (response.content.decode())
    )
    response = client.post("/w/acme/vision/views", {"name": "x", "dashboard": "{not json"})
    assert response.status_code == 400 and "not valid JSON" in response.content.decode()
    response = client.get(DASH + "?x=epoch")
    assert response.status_code == 400 and "x must be one of" in response.content.decode()
    assert not SavedView.objects.exists()


def test_chart_data_for_many_runs_costs_the_same_queries_as_for_few(
    ui_for, owner, project, owner_api, django_assert_max_num_queries
):
    few = make_runs(owner, project, owner_api, 2)
    many = few + make_runs(owner, project, owner_api, 10, start=2)
    client = ui_for(owner)
    for x in ("step", "time", "relative"):
        client.get(f"{DATA}?path=train/loss&runs={ids(few)}&x={x}")  # warm the session and permission caches
        with django_assert_max_num_queries(100) as small:
            assert client.get(f"{DATA}?path=train/loss&runs={ids(few)}&x={x}").status_code == 200
        with django_assert_max_num_queries(len(small.captured_queries)):
            data = client.get(f"{DATA}?path=train/loss&runs={ids(many)}&x={x}").json()
        assert [r["id"] for r in data["runs"]] == [r.human_id for r in many]
        assert all(len(r["steps"]) == 50 for r in data["runs"])
        if x != "step":
            assert all(len(r["times"]) == 50 and None not in r["times"] for r in data["runs"])
        if x == "relative":  # seconds from each run's start, which comes with its end for the shared axis
            assert all(0 <= r["times"][0] <= r["times"][-1] < 600 and r["start"] <= r["end"] for r in data["runs"])


def test_chart_data_of_the_dashboard_matches_the_run_pages(ui_for, owner, project, owner_api):
    (run,) = make_runs(owner, project, owner_api, 1, points=500)
    client = ui_for(owner)
    mine = client.get(f"{DATA}?path=train/loss&runs={run.human_id}&buckets=50").json()["runs"][0]
    page = client.get(f"/w/acme/vision/chart-data?path=train/loss&runs={run.human_id}&buckets=50").json()["runs"][0]
    for key in ("steps", "avg", "min", "max", "counts", "first_steps", "last_steps"):
        assert mine[key] == pytest.approx(page[key]), key


def test_long_series_are_read_from_roll_ups_with_every_point_counted(ui_for, owner, project, owner_api):
    runs = make_runs(owner, project, owner_api, 2, points=3)
    for n, run in enumerate(runs):
        values = [float(s % 100) for s in range(30_000 + n * 1000)]
        for k in range(0, len(values), 10_000):
            ops = [
                {
                    "op": "append",
                    "path": "long",
                    "values": values[k : k + 10_000],
                    "steps": list(range(k, k + len(values[k : k + 10_000]))),
                }
            ]
            assert batch(owner_api, run, ops, seq=2 + k).status_code == 200
        rollups.roll_up(Attribute.objects.get(run=run, path="long").pk)
    data = ui_for(owner).get(f"{DATA}?path=long&runs={ids(runs)}&buckets=100&envelope=1").json()["runs"]
    for n, series in enumerate(data):
        assert sum(series["counts"]) == 30_000 + n * 1000
        assert min(series["min"]) == 0.0 and max(series["max"]) == 99.0
        assert len(series["steps"]) <= 150
    # the means alone (no envelope: the roll-ups' min and max are not aggregated) on the columns' grid
    columns = ui_for(owner).get(f"{DATA}?path=long&runs={ids(runs)}&buckets=100&envelope=0&format=columns").json()
    for series, got in zip(data, columns["runs"], strict=True):
        counts = got.get("counts", columns["counts"])
        present = [i for i, c in enumerate(counts) if c]
        assert "min" not in got and sum(counts) == sum(series["counts"])
        assert [got["avg"][i] for i in present] == pytest.approx(series["avg"], rel=1e-6)


def test_dashboard_permissions(ui_for, owner, viewer, stranger, project, owner_api):
    runs = make_runs(owner, project, owner_api, 1, points=3)
    client = ui_for(stranger)
    assert client.get(DASH).status_code == 404
    assert client.get(f"{DATA}?path=train/loss&runs={ids(runs)}").status_code == 404
    client = ui_for(viewer)
    assert client.get(DASH).status_code == 200
    assert client.get(f"{DATA}?path=train/loss&runs={ids(runs)}").json()["runs"][0]["id"] == runs[0].human_id
    board = json.dumps({"charts": ["train/acc"]})
    # a viewer keeps private views (with dashboards) but shares none
    assert client.post("/w/acme/vision/views", {"name": "v", "dashboard": board}).status_code == 302
    assert client.post("/w/acme/vision/views", {"name": "s", "shared": "1", "dashboard": board}).status_code == 403
    assert list(SavedView.objects.values_list("name", "owner__username")) == [("v", "viewer")]


def test_compare_chart_data_reads_every_run_in_the_same_number_of_queries(
    ui_for, owner, project, owner_api, django_assert_max_num_queries
):
    few = make_runs(owner, project, owner_api, 2)
    many = few + make_runs(owner, project, owner_api, 8, start=2)
    client = ui_for(owner)
    for x in ("step", "time"):
        url = "/w/acme/vision/chart-data?path=train/loss&runs={}&x=" + x
        client.get(url.format(ids(few)))
        with django_assert_max_num_queries(100) as small:
            client.get(url.format(ids(few)))
        with django_assert_max_num_queries(len(small.captured_queries)):
            data = client.get(url.format(ids(many))).json()
        assert [r["id"] for r in data["runs"]] == [r.human_id for r in many]
        assert all(
            len(r["steps"]) == 50 and r["avg"][0] == pytest.approx(1.0 / (1 + n)) for n, r in enumerate(data["runs"])
        )


def test_columns_format_sends_the_grid_once_and_each_runs_values_aligned_with_it(
    ui_for, owner, project, owner_api, django_assert_max_num_queries
):
    runs = make_runs(owner, project, owner_api, 12)
    short, _ = run_services.create_run(owner, project, name="short")  # 20 points: the later buckets are empty
    assert batch(owner_api, short, [{"op": "append", "path": "train/loss", "values": [0.5] * 20}]).status_code == 200
    bare, _ = run_services.create_run(owner, project, name="bare")  # no such series
    everyone = ",".join(r.human_id for r in [*runs, short, bare])
    client = ui_for(owner)
    per_run = client.get(f"{DATA}?path=train/loss&runs={everyone}&buckets=10&envelope=0")
    with django_assert_max_num_queries(8):
        columns = client.get(f"{DATA}?path=train/loss&runs={everyone}&buckets=10&envelope=0&format=columns")
    data, old = columns.json(), {r["id"]: r for r in per_run.json()["runs"]}
    assert len(columns.content) < 0.6 * len(per_run.content)
    assert data["format"] == "columns" and len(data["x"]) == len(data["counts"]) == 10
    assert data["first_steps"][0] == 0 and data["last_steps"][-1] == 49 and data["counts"] == [5] * 10
    for got in data["runs"]:
        was = old[got["id"]]
        if got["id"] == bare.human_id:
            assert "avg" not in got and was["steps"] == []
            continue
        counts = got.get("counts", data["counts"])
        present = [i for i, c in enumerate(counts) if c]
        # the same buckets as the per-run answer: their steps, point counts and means
        assert [data["x"][i] for i in present] == pytest.approx(was["steps"]) or got["id"] == short.human_id
        assert [counts[i] for i in present] == was["counts"]
        assert [got["avg"][i] for i in present] == pytest.approx(was["avg"], rel=1e-6)
        assert all(got["avg"][i] is None for i in range(10) if i not in present)
    assert next(r for r in data["runs"] if r["id"] == short.human_id)["counts"] == [5, 5, 5, 5] + [0] * 6


def test_several_charts_in_one_request_answer_as_each_alone_and_share_its_look_ups(
    ui_for, owner, project, owner_api, django_assert_max_num_queries
):
    runs = make_runs(owner, project, owner_api, 4)
    everyone = ",".join(r.human_id for r in runs)
    client = ui_for(owner)
    query = f"{DATA}?runs={everyone}&buckets=10&envelope=0&format=columns"
    paths = ["train/acc", "train/loss", "monitoring/cpu", "nothing/here"]
    alone = {p: client.get(f"{query}&path={p}").json() for p in paths}
    with django_assert_max_num_queries(100) as one:
        client.get(f"{query}&path=train/loss")
    with django_assert_max_num_queries(100) as four:
        response = client.get(query + "".join(f"&path={p}" for p in paths))
    assert response.status_code == 200
    body = response.json()
    assert body["format"] == "columns" and [c["path"] for c in body["charts"]] == paths
    for chart in body["charts"]:
        assert chart == alone[chart["path"]]
    assert alone["train/acc"] != alone["train/loss"] and "avg" not in alone["nothing/here"]["runs"][0]
    # the project, permission, run and series look-ups are made once for all the charts
    assert len(four.captured_queries) < 3 * len(one.captured_queries)


@pytest.mark.parametrize(
    "query, reason",
    [
        ("path=a&path=b", "format=columns"),
        ("path=a&path=b&format=columns&x=time", "format=columns"),
        ("format=columns&" + "&".join(f"path=p{i}" for i in range(21)), "at most 20"),
    ],
)
def test_several_charts_need_the_columns_format_and_a_bound(ui_for, owner, project, owner_api, query, reason):
    runs = make_runs(owner, project, owner_api, 1)
    response = ui_for(owner).get(f"{DATA}?runs={runs[0].human_id}&{query}")
    assert response.status_code == 400 and "path" in response.content.decode() and reason in response.content.decode()


@pytest.mark.parametrize("start", [0, 2**62 + 7, 2**63 - 200])
def test_columns_and_per_run_answers_agree_at_any_step(ui_for, owner, project, owner_api, start):
    """The buckets are laid out with numpy (int64 steps): steps near the ends of the 64-bit range take
    Python's integers and give the same buckets, envelopes and counts as the per-run answer."""
    runs = []
    for i in range(3):
        run, _ = run_services.create_run(owner, project, name=f"s{i}")
        steps = [start + 3 * s + i for s in range(40 + 10 * i)]
        values = [float("nan") if s == 5 else (s % 7) / (i + 1) for s in range(len(steps))]
        ops = [{"op": "append", "path": "edge", "values": values, "steps": steps}]
        assert batch(owner_api, run, ops).status_code == 200
        runs.append(run)
    client = ui_for(owner)
    query = f"{DATA}?path=edge&runs={ids(runs)}&buckets=16&envelope=1"
    per_run = {r["id"]: r for r in client.get(query).json()["runs"]}
    data = client.get(query + "&format=columns").json()
    assert data["first_steps"][0] == start and data["last_steps"][-1] == start + 3 * 59 + 2
    assert all(a <= b for a, b in zip(data["first_steps"], data["last_steps"], strict=True))
    for got in data["runs"]:
        was = per_run[got["id"]]
        counts = got.get("counts", data["counts"])
        present = [i for i, c in enumerate(counts) if c]
        assert [counts[i] for i in present] == was.get("counts", [1] * len(present))
        assert sum(counts) == was["count"]
        for key in ("avg", "min", "max"):
            assert [got[key][i] for i in present] == pytest.approx(was[key], rel=1e-6), key


def test_several_long_charts_in_one_request_read_their_roll_ups_together_and_answer_as_each_alone(
    ui_for, owner, project, owner_api, django_assert_max_num_queries
):
    """Charts read from roll-ups (and their raw edges and tails) answer in one request exactly as
    each alone, a path asked for twice included; on PostgreSQL all their roll-up cursors and blocks
    come in one statement each, as for one chart."""
    from django.db import connection

    runs = make_runs(owner, project, owner_api, 2, points=3)
    paths = ["long/a", "long/b", "long/c"]
    for n, run in enumerate(runs):
        total = 25_000 + n * 1_003  # the last blocks are not rolled up yet: raw tails beside the roll-ups
        for k in range(0, total, 10_000):
            steps = list(range(k, min(total, k + 10_000)))
            ops = [
                {"op": "append", "path": p, "values": [float((s * (j + 1) + n) % 97) for s in steps], "steps": steps}
                for j, p in enumerate(paths)
            ]
            assert batch(owner_api, run, ops, seq=2 + k).status_code == 200
        for p in paths:
            rollups.roll_up(Attribute.objects.get(run=run, path=p).pk)
    client = ui_for(owner)
    query = f"{DATA}?runs={ids(runs)}&buckets=100&envelope=0&format=columns&from_step=37"
    alone = {p: client.get(f"{query}&path={p}").json() for p in paths}
    with django_assert_max_num_queries(100) as one:
        client.get(f"{query}&path=long/a")
    asked = [*paths, "long/a"]
    with django_assert_max_num_queries(100) as together:
        body = client.get(query + "".join(f"&path={p}" for p in asked)).json()
    assert [c["path"] for c in body["charts"]] == asked
    for chart in body["charts"]:
        assert chart == alone[chart["path"]]
    assert sum(chart["counts"][0] for chart in alone.values()) > 100  # buckets of roll-up blocks, not single points
    assert alone["long/a"] != alone["long/b"]
    if connection.vendor == "postgresql":
        for table in (rollups.CURSOR_TABLE, rollups.ROLLUP_TABLE):
            reads = [q for q in together.captured_queries if f"FROM {table} " in q["sql"]]
            assert len(reads) == 1 == len([q for q in one.captured_queries if f"FROM {table} " in q["sql"]])

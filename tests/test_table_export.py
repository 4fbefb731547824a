"""Run table export: the table's current view (filter, columns with aggregates, sort) as CSV and
Parquet, streamed a page of runs at a time, for those whose role has the export action."""

import csv
import datetime
import io
import json
import re

import pyarrow.parquet as pq
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from projects import services as project_services
from runs import services, table_export
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

URL = "/w/acme/vision/export"


@pytest.fixture
def runs(project, owner, run):
    """Four runs (besides the fixture's "baseline", which has no lr): lr, a loss series, an optimizer name."""
    made = {}
    for name, lr, losses, opt in (
        ("a", 0.1, [3.0, 1.0, 2.0], "adam"),
        ("b", 0.01, [6.0, 4.0, 5.0], "sgd"),
        ("c", 0.001, [0.5, 0.25], "adam"),
        ("d", 0.0001, [9.0], "sgd"),
    ):
        run, _ = services.create_run(owner, project, name=name, tags=["t-" + name, "all"])
        services.apply_batch(
            owner,
            run,
            stream="s",
            seq=0,
            raw_ops=[
                {"op": "assign", "path": "parameters/lr", "value": lr},
                {"op": "assign", "path": "parameters/optimizer", "value": opt},
                {"op": "assign", "path": "parameters/epochs", "value": 10},
                {"op": "append", "path": "train/loss", "values": losses},
            ],
        )
        made[name] = run
    return made


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def body(response) -> bytes:
    assert response.streaming, "the export is streamed, not built in memory"
    return b"".join(response.streaming_content)


def read_csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body(response).decode())))


VIEW = {
    "q": 'parameters/optimizer = "adam" or parameters/lr < 0.005',
    "c": ["sys/id", "sys/name", "parameters/lr", "parameters/optimizer", "train/loss", "train/loss:min", "sys/tags"],
    "sort": "parameters/lr",
}


def test_csv_holds_the_views_filter_columns_aggregates_and_sort(viewer, runs):
    response = login(viewer).get(URL, {**VIEW, "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = read_csv(response)
    assert rows[0] == VIEW["c"]
    # a (adam), c (adam) and d (lr < 0.005) in ascending lr; b (sgd, 0.01) is filtered out
    assert [r[1] for r in rows[1:]] == ["d", "c", "a"]
    d, c, a = rows[1:]
    assert a[:6] == [runs["a"].human_id, "a", "0.1", "adam", "2.0", "1.0"]
    assert c[2:6] == ["0.001", "adam", "0.25", "0.25"]
    assert d[2:6] == ["0.0001", "sgd", "9.0", "9.0"]
    assert sorted(json.loads(a[6])) == ["all", "t-a"]  # tags as a JSON array


def test_csv_follows_a_descending_sort_and_the_columns_order(viewer, runs):
    response = login(viewer).get(
        URL, {"c": ["train/loss:max", "sys/name", "sys/owner"], "sort": "-train/loss:max", "q": "parameters/lr > 0"}
    )
    rows = read_csv(response)
    assert rows == [
        ["train/loss:max", "sys/name", "sys/owner"],
        ["9.0", "d", "owner"],
        ["6.0", "b", "owner"],
        ["3.0", "a", "owner"],
        ["0.5", "c", "owner"],
    ]


def test_parquet_holds_the_view_with_typed_columns(viewer, runs):
    started = timezone.now() - datetime.timedelta(minutes=5)
    params = {
        **VIEW,
        "c": [*VIEW["c"], "parameters/epochs", "sys/creation_time", "train/loss:count"],
        "format": "parquet",
    }
    response = login(viewer).get(URL, params)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(body(response)))
    assert table.column_names == params["c"]
    data = table.to_pydict()
    assert data["sys/name"] == ["d", "c", "a"]
    assert data["parameters/lr"] == [0.0001, 0.001, 0.1]
    assert data["parameters/optimizer"] == ["sgd", "adam", "adam"]
    assert data["train/loss"] == [9.0, 0.25, 2.0]
    assert data["train/loss:min"] == [9.0, 0.25, 1.0]
    assert data["train/loss:count"] == [1, 2, 3]
    assert data["parameters/epochs"] == [10, 10, 10]
    assert [sorted(t) for t in data["sys/tags"]] == [["all", "t-d"], ["all", "t-c"], ["all", "t-a"]]
    schema = table.schema
    assert str(schema.field("parameters/lr").type) == "double"
    assert str(schema.field("parameters/epochs").type) == "int64"
    assert str(schema.field("train/loss:count").type) == "int64"
    assert str(schema.field("sys/creation_time").type) == "timestamp[us, tz=UTC]"
    assert all(t >= started for t in data["sys/creation_time"])


def test_download_is_named_after_the_project_and_the_day(viewer, runs):
    today = timezone.localdate().isoformat()
    for fmt in ("csv", "parquet"):
        response = login(viewer).get(URL, {"format": fmt})
        assert response["Content-Disposition"] == f'attachment; filename="acme-vision-runs-{today}.{fmt}"'


def test_export_reads_the_runs_a_page_at_a_time(viewer, runs, monkeypatch):
    """Five runs in pages of two: three run queries, three Parquet row groups, no run twice."""
    monkeypatch.setattr(table_export, "PAGE_SIZE", 2)
    client = login(viewer)
    response = client.get(URL, {"c": ["sys/name"], "sort": "sys/name", "format": "parquet"})
    parquet = pq.ParquetFile(io.BytesIO(body(response)))
    assert parquet.num_row_groups == 3
    assert [parquet.metadata.row_group(i).num_rows for i in range(3)] == [2, 2, 1]
    assert parquet.read().to_pydict()["sys/name"] == ["a", "b", "baseline", "c", "d"]

    response = client.get(URL, {"c": ["sys/name"], "sort": "sys/name", "format": "csv"})
    pieces = iter(response.streaming_content)
    with CaptureQueriesContext(connection) as queries:
        header = next(pieces)
    assert header == b"sys/name\r\n"
    assert not any("LIMIT" in q["sql"] for q in queries.captured_queries), "the header needs no run query"
    with CaptureQueriesContext(connection) as queries:
        rest = [next(pieces), next(pieces)]
    limits = [re.search(r"LIMIT (\d+)", q["sql"]) for q in queries.captured_queries]
    assert [int(m.group(1)) for m in limits if m] == [2], "the second page is one query of two runs"
    assert rest[0].decode().split() == ["a", "b"]  # read before the response started
    assert rest[1].decode().split() == ["baseline", "c"]
    assert b"".join(pieces).decode().split() == ["d"]


def test_stranger_gets_404_and_anonymous_the_login_page(stranger, runs):
    assert login(stranger).get(URL, {"format": "csv"}).status_code == 404
    response = Client().get(URL, {"format": "csv"})
    assert response.status_code == 302 and "/login" in response["Location"]


def test_viewer_and_contributor_may_export_their_roles_hold_the_export_action(viewer, contributor, runs):
    for user in (viewer, contributor):
        response = login(user).get(URL, {"format": "csv", "c": "sys/name"})
        assert response.status_code == 200
        assert len(read_csv(response)) == 6


def test_a_role_without_export_gets_403_and_no_export_control(workspace, project, owner, runs):
    reader = make_user("reader")
    role = project_services.save_custom_role(workspace, "read only", ["view"], by=owner)
    project_services.grant_custom_role(project, reader, role, by=owner)
    client = login(reader)
    assert client.get(URL, {"format": "csv"}).status_code == 403
    assert client.get("/w/acme/vision/").status_code == 200
    assert URL not in client.get("/w/acme/vision/").content.decode()


def test_run_table_offers_csv_and_parquet_of_its_current_view(viewer, runs):
    html = login(viewer).get("/w/acme/vision/", {"q": "parameters/lr > 0.001", "c": ["sys/name", "train/loss:min"]})
    page = html.content.decode()
    links = re.findall(r'href="(/w/acme/vision/export\?[^"]*)"', page)
    assert len(links) == 2
    for link, fmt in zip(links, ("csv", "parquet"), strict=True):
        link = link.replace("&amp;", "&")
        assert f"format={fmt}" in link
        response = login(viewer).get(link)
        assert response.status_code == 200
        if fmt == "csv":
            assert read_csv(response) == [["sys/name", "train/loss:min"], ["b", "4.0"], ["a", "1.0"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "parameters/lr >"}, "q"),
        ({"q": 'parameters/lr matches "("'}, "q"),
        ({"format": "xlsx"}, "format"),
    ],
)
def test_invalid_view_is_a_400_naming_the_parameter(viewer, runs, params, field):
    response = login(viewer).get(URL, {"format": "csv", **params})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == field
    assert error["message"].startswith(field + ":")


def test_each_export_is_audited_with_the_view_it_exported(viewer, runs):
    from projects.models import AuditEvent

    login(viewer).get(URL, {**VIEW, "format": "parquet"})
    event = AuditEvent.objects.get(action="export.table")
    assert event.actor == viewer and event.project.slug == "vision"
    assert event.details == {"format": "parquet", "query": VIEW["q"], "columns": VIEW["c"], "sort": VIEW["sort"]}
    login(viewer).get(URL, {"format": "csv", "q": "parameters/lr >"})
    assert AuditEvent.objects.filter(action="export.table").count() == 1, "a refused export is not recorded"


@pytest.mark.parametrize(
    "sort",
    ["parameters/mixed", "-parameters/mixed", "parameters/epochs", "-parameters/epochs", "-sys/creation_time"],
)
def test_export_pages_by_keyset_with_ties_and_missing_values_in_the_sort(
    viewer, owner, project, runs, monkeypatch, sort
):
    """Pages of two over runs whose sort values tie or are missing: every run once, in the order of a
    one-page export, and no page is read by OFFSET (which rereads every earlier run: slow past 30k)."""
    for n, value in enumerate([2, 2.0, 1, None, 2, 0.5, None]):
        made, _ = services.create_run(owner, project, name=f"m{n}")
        ops = [{"op": "assign", "path": "parameters/epochs", "value": 10}]
        if value is not None:
            ops.append(
                {"op": "assign", "path": "parameters/mixed", "value": value}
            )  # int in some runs, float in others
        services.apply_batch(owner, made, stream="s", seq=0, raw_ops=ops)
    view = {"c": ["sys/name", "parameters/mixed"], "sort": sort, "format": "csv"}
    client = login(viewer)
    whole = read_csv(client.get(URL, view))
    assert len(whole) == 1 + 12
    monkeypatch.setattr(table_export, "PAGE_SIZE", 2)
    with CaptureQueriesContext(connection) as queries:
        paged = read_csv(client.get(URL, view))
    assert paged == whole
    run_queries = [q["sql"] for q in queries.captured_queries if "LIMIT" in q["sql"]]
    assert len(run_queries) >= 6 and not any("OFFSET" in sql for sql in run_queries)

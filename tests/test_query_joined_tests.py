"""The field tests of one ``and`` are answered by one subquery over the attribute rows on PostgreSQL
(runs/query/compiler.py): the run table is joined once, for the runs passing every test, so a
filtered page does not hash every run of the project first while the visibility map of a bulk
write is still empty. The answers are the same as one "run IN (...)" per test."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs import services

from .conftest import batch

QUERY = "/api/v1/runs/"


@pytest.fixture
def fields(owner, project, owner_api):
    """Runs with a dataset name, a version and an accuracy, every combination."""
    expected = {}
    number = 0
    for name in ("Y", "Z"):
        for version in ("X", "W"):
            for acc in (0.95, 0.5):
                number += 1
                run, _ = services.create_run(owner, project, name=f"r{number}")
                ops = [
                    {"op": "assign", "path": "data/train/name", "value": name},
                    {"op": "assign", "path": "data/train/version", "value": version},
                    {"op": "assign", "path": "eval/acc", "value": acc},
                ]
                if number % 2:
                    ops.append({"op": "add_tags", "path": "sys/tags", "values": ["best"]})
                assert batch(owner_api, run, ops).status_code == 200
                expected[run.human_id] = (name, version, acc, number % 2 == 1)
    return expected


def _ids(owner_api, query: str) -> set[str]:
    response = owner_api.get(QUERY, {"project": "acme/vision", "query": query, "limit": 100})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == len(body["results"])
    return {run["id"] for run in body["results"]}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query,keep",
    [
        (
            'data/train/name = "Y" and data/train/version = "X" and eval/acc > 0.9',
            lambda i, n, v, a, t: n == "Y" and v == "X" and a > 0.9,
        ),
        ('data/train/name = "Y" and not data/train/version = "X"', lambda i, n, v, a, t: n == "Y" and v != "X"),
        (
            '(data/train/name = "Y" or eval/acc > 0.9) and data/train/version = "W"',
            lambda i, n, v, a, t: (n == "Y" or a > 0.9) and v == "W",
        ),
        (
            'data/train/name = "Z" and sys/tags contains "best" and eval/acc < 0.9',
            lambda i, n, v, a, t: n == "Z" and t and a < 0.9,
        ),
        ('eval/acc > 0.9 and eval/acc < 1 and data/train/name = "Z"', lambda i, n, v, a, t: 0.9 < a < 1 and n == "Z"),
        ('data/train/name = "Y" and sys/name = "r1"', lambda i, n, v, a, t: n == "Y" and i.endswith("-1")),
    ],
)
def test_joined_field_tests_find_exactly_the_runs_passing_every_test(owner_api, fields, query, keep):
    wanted = {run_id for run_id, values in fields.items() if keep(run_id, *values)}
    assert wanted or "sys/name" not in query
    assert _ids(owner_api, query) == wanted


@pytest.mark.django_db
def test_a_filtered_page_joins_the_run_table_to_one_subquery_of_field_tests(owner_api, fields):
    with CaptureQueriesContext(connection) as statements:
        ids = _ids(owner_api, 'data/train/name = "Y" and data/train/version = "X" and eval/acc > 0.9')
    assert len(ids) == 1
    page = next(q["sql"] for q in statements.captured_queries if "OVER ()" in q["sql"])
    run_in = page.count('"runs_run"."id" IN (SELECT')
    if connection.vendor == "postgresql":
        assert run_in == 1 and page.count("EXISTS(") == 2
    else:
        assert run_in == 3  # SQLite probes each test's run list in turn

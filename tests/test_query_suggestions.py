"""Value suggestions of the query editor at scale: their cost does not grow with the number of runs."""

import importlib

import pytest

from runs import services

from .conftest import batch

suggest_module = importlib.import_module("runs.query.suggest")  # the package exports the function by this name


@pytest.fixture
def optimizers(owner, project, owner_api):
    """Five runs: optimizer adam x3, sgd x1, lamb x1; one run without the field."""
    for index, value in enumerate(["adam", "sgd", "adam", "lamb", "adam", None]):
        run, _ = services.create_run(owner, project, name=f"o{index}")
        ops = [{"op": "assign", "path": "note", "value": "x"}]
        if value:
            ops.append({"op": "assign", "path": "parameters/optimizer/name", "value": value})
        assert batch(owner_api, run, ops).status_code == 200


def values(owner_api, text):
    response = owner_api.get("/api/v1/runs/suggest", {"project": "acme/vision", "text": text})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["context"] == "value"
    return [(item["label"], item["detail"]) for item in body["items"]]


def test_value_suggestions_count_each_value_up_to_the_cap(owner_api, optimizers, monkeypatch):
    monkeypatch.setattr(suggest_module, "COUNT_CAP", 2)
    assert values(owner_api, 'parameters/optimizer/name = "') == [
        ("adam", "2+ runs"),
        ("lamb", "1 runs"),
        ("sgd", "1 runs"),
    ]


def test_value_suggestions_rank_most_common_first_with_exact_counts_under_the_cap(owner_api, optimizers):
    assert values(owner_api, 'parameters/optimizer/name = "') == [
        ("adam", "3 runs"),
        ("lamb", "1 runs"),
        ("sgd", "1 runs"),
    ]
    assert values(owner_api, 'parameters/optimizer/name = "s') == [("sgd", "1 runs")]
    assert values(owner_api, 'parameters/optimizer/name = "x') == []


def test_value_suggestions_of_a_field_with_more_values_than_the_walk_still_rank_by_count(
    owner_api, optimizers, monkeypatch
):
    monkeypatch.setattr(suggest_module, "DISTINCT_WALK", 2)
    monkeypatch.setattr(suggest_module, "COUNT_CAP", 2)  # grouped over every entry: exact counts, no cap
    assert values(owner_api, 'parameters/optimizer/name = "') == [
        ("adam", "3 runs"),
        ("lamb", "1 runs"),
        ("sgd", "1 runs"),
    ]
    assert values(owner_api, 'parameters/optimizer/name = "l') == [("lamb", "1 runs")]


def test_value_suggestions_read_one_statement_for_the_values(owner_api, optimizers, django_assert_max_num_queries):
    """Token, rate bucket, project and its permission, the budget (and, inside the test's transaction,
    its savepoint and release), the field's type, then the values in one statement."""
    values(owner_api, 'parameters/optimizer/name = "')  # warm the per-process caches of the request path
    with django_assert_max_num_queries(10):
        values(owner_api, 'parameters/optimizer/name = "')


def test_a_query_page_checks_the_project_rights_once(owner_api, optimizers):
    """The endpoint's project look-up and the engine's own check share one permission statement."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    params = {"project": "acme/vision", "query": 'parameters/optimizer/name = "adam"', "columns": "note"}
    assert owner_api.get("/api/v1/runs/", params).status_code == 200
    for url, extra in (("/api/v1/runs/", {}), ("/api/v1/runs/groups", {"group_by": "parameters/optimizer/name"})):
        with CaptureQueriesContext(connection) as captured:
            response = owner_api.get(url, {**params, **extra})
        assert response.status_code == 200, response.content
        rights = [q["sql"] for q in captured.captured_queries if "h.scope, h.codename" in q["sql"]]
        assert len(rights) == 1, url


def test_a_query_page_with_columns_reads_the_tags_with_the_columns(owner, project, owner_api):
    """The page's column values and its runs' tags come from one statement, and the tags are right."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for index, tags in enumerate([["best", "final"], [], None]):
        run, _ = services.create_run(owner, project, name=f"t{index}", tags=tags)
        assert batch(owner_api, run, [{"op": "assign", "path": "note", "value": f"n{index}"}]).status_code == 200
    params = {"project": "acme/vision", "query": 'note starts with "n"', "columns": "note,sys/name"}
    owner_api.get("/api/v1/runs/", params)
    with CaptureQueriesContext(connection) as captured:
        response = owner_api.get("/api/v1/runs/", params)
    assert response.status_code == 200, response.content
    by_name = {r["name"]: (r["tags"], r["fields"]["note"]) for r in response.json()["results"]}
    assert by_name == {"t0": (["best", "final"], "n0"), "t1": ([], "n1"), "t2": ([], "n2")}
    reads = [q["sql"] for q in captured.captured_queries if q["sql"].startswith('SELECT "runs_attribute"')]
    assert len(reads) == 1, reads

"""The query engine through the REST API: filter, sort, group, columns, suggestions."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs import services
from runs.query import QuerySyntaxError, parse

from .conftest import batch
from .roles import role_matrix


@pytest.fixture
def runs(project, owner, contributor, owner_api):
    """Six runs with mixed fields; returns {name: run}."""
    specs = [
        (
            "r0",
            owner,
            {
                "data/train/name": "Y",
                "data/train/version": "X",
                "eval/acc": 0.95,
                "parameters/lr": 0.01,
                "parameters/optimizer/name": "adam",
                "parameters/batch_size": 32,
                "notes": "baseline one",
            },
            [0.5, 0.15],
            ["best"],
        ),
        (
            "r1",
            owner,
            {
                "data/train/name": "Y",
                "data/train/version": "X",
                "eval/acc": 0.91,
                "parameters/lr": 0.0005,
                "parameters/optimizer/name": "sgd",
                "parameters/batch_size": 64,
                "notes": "second",
            },
            [0.4, 0.3],
            [],
        ),
        (
            "r2",
            contributor,
            {
                "data/train/name": "Y",
                "data/train/version": "Z",
                "eval/acc": 0.97,
                "parameters/lr": 0.001,
                "parameters/optimizer/name": "sgd",
                "parameters/batch_size": 128,
            },
            [0.09, 0.19],
            ["best", "x"],
        ),
        (
            "r3",
            contributor,
            {
                "data/train/name": "Y",
                "data/train/version": "X",
                "eval/acc": 0.94,
                "parameters/lr": 0.1,
                "parameters/optimizer/name": "adam",
                "parameters/batch_size": 16,
                "notes": "Baseline two",
            },
            [0.3, 0.25],
            [],
        ),
        ("r4", owner, {"eval/acc": 1, "parameters/batch_size": 64}, [], []),  # an int accuracy: compares numerically
        ("r5", owner, {"notes": 'it\'s "quoted"; DROP TABLE runs_run; --'}, [], ["best"]),
    ]
    made = {}
    for name, user, fields, losses, tags in specs:
        run, _ = services.create_run(user, project, name=name, tags=tags)
        ops = [{"op": "assign", "path": p, "value": v} for p, v in fields.items()]
        if losses:
            ops.append({"op": "append", "path": "train/loss", "values": losses})
        batch(owner_api, run, ops)
        made[name] = run
    services.update_run(owner, made["r2"], state="failed")
    return made


def names(client, **params):
    response = client.get("/api/v1/runs/", {"project": "acme/vision", "columns": "sys/name", **params})
    assert response.status_code == 200, response.content
    return [r["name"] for r in response.json()["results"]]


@pytest.mark.parametrize(
    "query, expected",
    [
        ('data/train/name = "Y" and data/train/version = "X" and eval/acc > 0.93', {"r0", "r3"}),
        ('sys/owner = "contributor" and (parameters/optimizer/name = "adam" or parameters/lr <= 1e-3)', {"r2", "r3"}),
        ('sys/tags contains "best" and not sys/failed', {"r0", "r5"}),
        ("train/loss:last < 0.2 and train/loss:min < 0.1", {"r2"}),
        ("train/loss:max >= 0.4", {"r0", "r1"}),
        ("train/loss:count = 2 and train/loss:avg < 0.2", {"r2"}),
        ("train/loss < 0.2", {"r0", "r2"}),
        ('notes matches "^[Bb]aseline" and exists train/loss', {"r0", "r3"}),
        ('notes contains "aseline"', {"r0", "r3"}),
        ('notes contains "baseline"', {"r0"}),
        ('notes starts with "Base"', {"r3"}),
        ("parameters/batch_size in (32, 64, 128)", {"r0", "r1", "r2", "r4"}),
        ("eval/acc >= 1", {"r4"}),
        ("eval/acc = 1.0", {"r4"}),
        ("eval/acc != 0.95", {"r1", "r2", "r3", "r4"}),
        ("not eval/acc > 0.92", {"r1", "r5"}),
        ('sys/creation_time > "2000-01-01" and sys/running_time >= 0', {"r0", "r1", "r2", "r3", "r4", "r5"}),
        ("sys/failed", {"r2"}),
        ("sys/failed = false and eval/acc > 0.96", {"r4"}),
        ('sys/state = "failed"', {"r2"}),
        ('sys/id = "VIS-1"', {"r0"}),
        ("exists notes and not exists train/loss", {"r5"}),
        ('notes = "it\'s \\"quoted\\"; DROP TABLE runs_run; --"', {"r5"}),
        ('`parameters/optimizer/name` = "adam"', {"r0", "r3"}),
        ("unknown/field > 1", set()),
        ("", {"r0", "r1", "r2", "r3", "r4", "r5"}),
    ],
)
def test_filters(owner_api, runs, query, expected):
    assert set(names(owner_api, query=query)) == expected


@pytest.mark.parametrize(
    "query, position, words",
    [
        ("eval/acc > ", 11, "expected a value"),
        ("eval/acc > 1 and", 16, "expected a field path"),
        ("(eval/acc > 1", 13, "expected ')'"),
        ('eval/acc > "high"', 11, "cannot compare eval/acc"),
        ("notes > 3", 8, "cannot compare notes"),
        ('notes matches "("', 14, "invalid regular expression"),
        ("train/loss:median < 1", 11, "series aggregate"),
        ("eval/acc:last > 1", 0, "not a series"),
        ('sys/creation_time > "yesterday"', 20, "not a date"),
        ('sys/id = "XYZ-1"', 9, "not a run id"),
        ("eval/acc ~ 1", 9, "unexpected character"),
        ('notes = "unterminated', 8, "unterminated string"),
    ],
)
def test_query_errors_name_the_position(owner_api, runs, query, position, words):
    response = owner_api.get("/api/v1/runs/", {"project": "acme/vision", "query": query})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_query" and error["field"] == "query"
    assert error["position"] == position, error
    assert words in error["message"]


def test_sort_by_attribute_with_missing_values_last(owner_api, runs):
    assert names(owner_api, sort="-eval/acc") == ["r4", "r2", "r0", "r3", "r1", "r5"]
    assert names(owner_api, sort="eval/acc") == ["r1", "r3", "r0", "r2", "r4", "r5"]
    assert names(owner_api, sort="train/loss:last", query="exists train/loss") == ["r0", "r2", "r3", "r1"]
    assert names(owner_api, sort="sys/name") == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert names(owner_api, sort="parameters/batch_size,-sys/name") == ["r3", "r0", "r4", "r1", "r2", "r5"]


@pytest.mark.parametrize("sort", ["metrics/score", "-metrics/score", "steps", "-steps", "curve:last", "-curve"])
def test_paging_by_one_field_matches_the_full_order(owner_api, owner, project, workspace, sort):
    """Every slice of a field-sorted listing (including the ones crossing from the runs having the
    field to those lacking it) equals the same slice of the order computed here."""
    from projects import services as project_services

    scores = [0.5, None, 0.25, 0.5, None, 0.75, 0.25, 0.5, 0.1]
    made = []
    for index, score in enumerate(scores):
        run, _ = services.create_run(owner, project, name=f"p{index}")
        ops = [{"op": "assign", "path": "other", "value": index}]
        if score is not None:
            ops += [
                {"op": "assign", "path": "metrics/score", "value": score},
                {"op": "assign", "path": "steps", "value": int(score * 8)},
                {"op": "append", "path": "curve", "values": [1.0, score]},
            ]
        batch(owner_api, run, ops)
        made.append((run, score))
    gone, _ = services.create_run(owner, project, name="deleted")
    batch(owner_api, gone, [{"op": "assign", "path": "metrics/score", "value": 9.0}])
    services.delete_run(owner, gone)
    elsewhere = project_services.create_project(owner, workspace, "other", key="OTH")
    foreign, _ = services.create_run(owner, elsewhere, name="foreign")
    batch(owner_api, foreign, [{"op": "assign", "path": "metrics/score", "value": 0.3}])

    descending = sort.startswith("-")
    key = (lambda s: s * 8 // 1) if sort.lstrip("-") == "steps" else (lambda s: s)
    having = (
        sorted(((key(s), r.pk, r.name) for r, s in made if s is not None), reverse=True)
        if descending
        else sorted(((key(s), -r.pk, r.name) for r, s in made if s is not None))
    )
    lacking = sorted(((r.pk, r.name) for r, s in made if s is None), reverse=True)
    expected = [n for *_, n in having] + [n for _, n in lacking]
    assert names(owner_api, sort=sort, limit=100) == expected
    for limit in (1, 2, 3, 4):
        for offset in range(len(expected) + 2):
            assert names(owner_api, sort=sort, limit=limit, offset=offset) == expected[offset : offset + limit], (
                limit,
                offset,
            )
    response = owner_api.get(
        "/api/v1/runs/", {"project": "acme/vision", "sort": sort, "limit": 2, "query": "other >= 3"}
    )
    body = response.json()
    assert body["count"] == 6
    assert [r["name"] for r in body["results"]] == [n for n in expected if int(n[1:]) >= 3][:2]


def test_columns_come_back_typed(owner_api, runs, django_assert_max_num_queries):
    # the query's own statements, the token's workspace binding and its request-rate bucket, and on
    # PostgreSQL the query budget's savepoint, SET LOCAL, reset and release
    with django_assert_max_num_queries(14):
        response = owner_api.get(
            "/api/v1/runs/",
            {
                "project": "acme/vision",
                "columns": "sys/id,eval/acc,train/loss:last,data/train/version,sys/tags",
                "sort": "sys/name",
                "limit": 2,
            },
        )
    body = response.json()
    assert body["count"] == 6 and body["next"] and body["previous"] is None
    assert body["columns"] == [
        {"path": "sys/id", "type": "string"},
        {"path": "eval/acc", "type": "float/int"},
        {"path": "train/loss:last", "type": "float"},
        {"path": "data/train/version", "type": "string"},
        {"path": "sys/tags", "type": "string_set"},
    ]
    first = body["results"][0]["fields"]
    assert first == {
        "sys/id": "VIS-1",
        "eval/acc": 0.95,
        "train/loss:last": 0.15,
        "data/train/version": "X",
        "sys/tags": ["best"],
    }
    second_page = owner_api.get(body["next"]).json()
    assert [r["name"] for r in second_page["results"]] == ["r2", "r3"]


def test_group_by_owner_with_aggregates(owner_api, runs):
    response = owner_api.get(
        "/api/v1/runs/groups",
        {
            "project": "acme/vision",
            "query": "exists eval/acc",
            "group_by": "sys/owner",
            "aggregates": "eval/acc",
        },
    )
    assert response.status_code == 200, response.content
    groups = {tuple(g["key"]): g for g in response.json()["groups"]}
    assert groups[("contributor",)]["count"] == 2 and groups[("owner",)]["count"] == 3
    assert groups[("contributor",)]["aggregates"]["eval/acc"]["max"] == pytest.approx(0.97)
    assert groups[("owner",)]["aggregates"]["eval/acc"]["avg"] == pytest.approx((0.95 + 0.91 + 1) / 3)
    members = names(owner_api, group_by="sys/owner", group='["contributor"]', sort="sys/name")
    assert members == ["r2", "r3"]


def test_group_by_attribute_puts_missing_in_a_null_group(owner_api, runs):
    groups = owner_api.get(
        "/api/v1/runs/groups", {"project": "acme/vision", "group_by": "parameters/optimizer/name"}
    ).json()["groups"]
    assert [(g["key"], g["count"]) for g in groups] == [(["adam"], 2), (["sgd"], 2), ([None], 2)]
    assert set(names(owner_api, group_by="parameters/optimizer/name", group="[null]")) == {"r4", "r5"}


def test_suggestions_offer_paths_operators_and_values(owner_api, runs):
    def suggest(text, cursor=None):
        params = {"project": "acme/vision", "text": text}
        if cursor is not None:
            params["cursor"] = cursor
        response = owner_api.get("/api/v1/runs/suggest", params)
        assert response.status_code == 200
        return response.json()

    paths = suggest("data/tr")
    assert paths["context"] == "path" and paths["from"] == 0
    assert [i["label"] for i in paths["items"]][:2] == ["data/train/name", "data/train/version"]
    assert paths["items"][0]["detail"] == "string"
    operators = suggest("parameters/optimizer/name ")
    assert operators["context"] == "operator" and "starts with" in [i["label"] for i in operators["items"]]
    numeric = [i["label"] for i in suggest("eval/acc ")["items"]]
    assert ">" in numeric and "contains" not in numeric
    values = suggest('parameters/optimizer/name = "s')
    assert values["context"] == "value" and [i["label"] for i in values["items"]] == ["sgd"]
    assert values["items"][0]["insert"] == '"sgd"'
    counted = suggest('parameters/optimizer/name = "')["items"]
    assert [(i["label"], i["detail"]) for i in counted] == [("adam", "2 runs"), ("sgd", "2 runs")]
    tags = suggest("sys/tags contains ")
    assert tags["items"][0]["label"] == "best" and tags["items"][0]["detail"] == "3 runs"
    after = suggest("eval/acc > 0.9 a")
    assert after["context"] in ("connective", "path")
    owners = suggest('sys/owner = "c')
    assert [i["label"] for i in owners["items"]] == ["contributor"]
    middle = suggest("eval/acc > 0.9 and par", cursor=22)
    assert all(i["label"].startswith("par") for i in middle["items"])


def test_long_strings_compare_whole_and_are_not_offered_cut_short(owner_api, project, owner):
    """Strings are indexed by their first 200 characters; equality still compares whole values."""
    base = "x" * 200
    for index, tail in enumerate(["", "a", "b"]):
        run, _ = services.create_run(owner, project, name=f"long{index}")
        batch(
            owner_api,
            run,
            [{"op": "assign", "path": "notes", "value": base + tail}, {"op": "assign", "path": "short", "value": "v"}],
        )
    assert names(owner_api, query=f'notes = "{base}a"') == ["long1"]
    assert names(owner_api, query=f'notes = "{base}"') == ["long0"]
    assert sorted(names(owner_api, query=f'notes != "{base}b"')) == ["long0", "long1"]
    response = owner_api.get("/api/v1/runs/suggest", {"project": "acme/vision", "text": 'notes = "'})
    assert response.json()["items"] == []
    response = owner_api.get("/api/v1/runs/suggest", {"project": "acme/vision", "text": 'short = "'})
    assert [(i["label"], i["detail"]) for i in response.json()["items"]] == [("v", "3 runs")]


def test_fields_listing(owner_api, runs):
    fields = owner_api.get("/api/v1/runs/fields", {"project": "acme/vision", "search": "train"}).json()["fields"]
    assert {"path": "train/loss", "type": "float_series"} in fields
    assert all("train" in f["path"] for f in fields)


QUERY = {"owner": 200, "contributor": 200, "viewer": 200, "stranger": 404, "anonymous": 401}


@pytest.mark.parametrize("url", ["/api/v1/runs/", "/api/v1/runs/groups", "/api/v1/runs/suggest", "/api/v1/runs/fields"])
def test_stranger_queries_see_nothing(world, runs, url):
    params = {"project": "acme/vision", "query": "exists eval/acc", "group_by": "sys/owner"}
    responses = role_matrix(world, lambda client: client.get(url, params), QUERY)
    assert responses["stranger"].json()["error"]["code"] == "not_found"


def test_a_project_that_does_not_exist_is_a_404_for_everyone(world):
    missing = {**QUERY, "owner": 404, "contributor": 404, "viewer": 404}
    role_matrix(world, lambda client: client.get("/api/v1/runs/", {"project": "stranger/none"}), missing)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    text=st.one_of(
        st.text(max_size=60),
        st.lists(
            st.sampled_from(
                [
                    "eval/acc",
                    "notes",
                    "sys/tags",
                    "train/loss:last",
                    "sys/owner",
                    "sys/id",
                    "sys/failed",
                    "and",
                    "or",
                    "not",
                    "exists",
                    "(",
                    ")",
                    "=",
                    "!=",
                    "<",
                    ">=",
                    "in",
                    "contains",
                    "matches",
                    "starts with",
                    '"x"',
                    "'y'",
                    "1",
                    "-2.5e3",
                    "true",
                    ",",
                    "`a b`",
                    "'; DROP TABLE runs_run; --",
                    "\\",
                    ":",
                    "sys/creation_time",
                    '"2026-01-01"',
                    '"VIS-1"',
                ]
            ),
            max_size=12,
        ).map(" ".join),
    )
)
def test_random_queries_never_500(owner_api, runs, text):
    response = owner_api.get("/api/v1/runs/", {"project": "acme/vision", "query": text, "columns": "eval/acc"})
    assert response.status_code in (200, 400), (text, response.content)
    if response.status_code == 400:
        error = response.json()["error"]
        assert isinstance(error["position"], int) and 0 <= error["position"] <= len(text)
    suggestions = owner_api.get("/api/v1/runs/suggest", {"project": "acme/vision", "text": text})
    assert suggestions.status_code == 200


def test_parser_round_trip_of_the_readme_examples():
    for text in [
        'data/train/name = "Y" and data/train/version = "X" and eval/acc > 0.93',
        'sys/owner = "alice" and (parameters/optimizer/name = "adam" or parameters/lr <= 1e-3)',
        'sys/tags contains "best" and not sys/failed',
        "train/loss:last < 0.2 and train/loss:min < 0.1",
        'sys/creation_time > "2026-01-01" and sys/running_time > 3600',
        'notes matches "^baseline" and exists model/weights',
        "parameters/batch_size in (32, 64, 128)",
    ]:
        assert parse(text) is not None
    with pytest.raises(QuerySyntaxError):
        parse("a = (1)")


@pytest.mark.parametrize("limit", [1, 100])
def test_count_after_groups_is_the_number_of_matching_runs(owner, project, runs, limit):
    from runs.query import RunQuery

    fresh = RunQuery(owner, project, query="exists eval/acc").count()
    engine = RunQuery(owner, project, query="exists eval/acc", group_by=["sys/owner"])
    groups = engine.groups(limit=limit)
    assert len(groups) == min(limit, 2)
    assert engine.count() == fresh == 5
    engine.group = ["owner"]
    assert engine.count() == 3

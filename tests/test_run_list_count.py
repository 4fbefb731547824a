"""The run list's ``count`` is the exact number of runs matching the query (and ``state``) on every page,
and a filtered page evaluates its filter once: the page and the count come from one statement."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs import services

from .conftest import batch


@pytest.fixture
def seven(owner, project, owner_api):
    """Seven runs, eval/acc 0..6 (run r6 has none), data/train/name "Y" on the even ones, r1 and r2 finished."""
    made = []
    for number in range(7):
        run, _ = services.create_run(owner, project, name=f"r{number}")
        ops = [{"op": "assign", "path": "data/train/name", "value": "Y" if number % 2 == 0 else "N"}]
        if number < 6:
            ops.append({"op": "assign", "path": "eval/acc", "value": number})
        assert batch(owner_api, run, ops).status_code == 200
        if number in (1, 2):
            services.update_run(owner, run, state="finished")
        made.append(run)
    return made


CASES = [
    ({}, 7),
    ({"query": "eval/acc >= 2"}, 4),
    ({"query": 'data/train/name = "Y"', "state": "running"}, 3),
    ({"state": "finished"}, 2),
    ({"query": "eval/acc >= 1", "sort": "-eval/acc"}, 5),  # read in order from the field's index
    ({"query": 'data/train/name = "Y"', "sort": "sys/name"}, 4),
    ({"query": 'data/train/name = "nobody"'}, 0),
]


@pytest.mark.parametrize(("params", "matches"), CASES)
def test_the_count_is_every_matching_run_on_every_page(owner_api, seven, params, matches):
    names = None
    for limit in (1, 2, 3, 10):
        seen = []
        for offset in range(matches + 2):
            body = owner_api.get(
                "/api/v1/runs/", {"project": "acme/vision", **params, "limit": limit, "offset": offset}
            )
            assert body.status_code == 200, body.content
            body = body.json()
            assert body["count"] == matches, (limit, offset)
            assert len(body["results"]) == max(0, min(limit, matches - offset))
            assert (body["next"] is not None) == (offset + limit < matches)
            if offset % limit == 0:
                seen += [r["name"] for r in body["results"]]
        assert names is None or seen == names  # the pages of every size list the same runs in the same order
        names = seen
    assert len(names) == matches


def test_a_filtered_page_evaluates_its_filter_once(owner_api, seven):
    params = {"project": "acme/vision", "query": 'data/train/name = "Y"', "columns": "sys/id,eval/acc", "limit": 2}
    with CaptureQueriesContext(connection) as captured:
        body = owner_api.get("/api/v1/runs/", params).json()
    assert body["count"] == 4 and len(body["results"]) == 2 and body["next"]
    filtering = [
        q["sql"] for q in captured.captured_queries if "runs_attribute" in q["sql"] and "data/train/name" in q["sql"]
    ]
    assert len(filtering) == 1, filtering


def test_a_run_is_written_as_the_serializer_fields_describe_it(owner, project, seven, owner_api):
    """The run's representation is built directly for speed; it equals DRF's field-by-field one."""
    from rest_framework import serializers

    from runs.api.serializers import RunSerializer
    from runs.models import Run

    services.create_run(owner, project, name="tagged", description="d", tags=["b", "a"], custom_run_id="c-1")
    services.update_run(owner, Run.objects.get(name="r3"), state="failed")
    ownerless = Run.objects.get(name="r4")
    Run.objects.filter(pk=ownerless.pk).update(owner=None)
    runs = list(Run.objects.select_related("owner", "project__workspace").order_by("pk"))
    assert len(runs) == 8
    for run in runs:
        fast, generic = RunSerializer(run).data, serializers.ModelSerializer.to_representation(RunSerializer(), run)
        if run.state == "running":  # its running time grows between the two calls
            assert type(fast.pop("running_time")) is type(generic.pop("running_time")) is float
        assert fast == generic
    listed = {r["name"]: r for r in owner_api.get("/api/v1/runs/", {"project": "acme/vision"}).json()["results"]}
    assert listed["tagged"]["tags"] == ["a", "b"] and listed["tagged"]["custom_run_id"] == "c-1"
    assert listed["r4"]["owner"] is None and listed["r3"]["finish_time"].endswith("Z")
    assert listed["r0"]["creation_time"].endswith("Z") and listed["r0"]["finish_time"] is None

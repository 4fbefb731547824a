"""Random operation lists never cause a 500, and a rejected batch changes nothing."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs.models import Attribute, FileEntry, FloatPoint, RunBatch, StringPoint

from .conftest import run_url

paths = st.one_of(
    st.sampled_from(["a", "a/b", "train/loss", "sys/tags", "sys/name", "sys/id", "p/q/r", "", "a//b", "/x", "x/"]),
    st.text(min_size=0, max_size=20),
    st.integers(),
    st.none(),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "2026-01-01T00:00:00", "x" * 10]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=10,
)
ops = st.fixed_dictionaries(
    {
        "op": st.sampled_from(
            ["assign", "append", "add_tags", "remove_tags", "delete", "upload", "upload_set", "nope", 3]
        )
    },
    optional={
        "path": paths,
        "value": values,
        "values": values,
        "type": st.sampled_from(["int", "float", "bool", "string", "datetime", "string_set", "bogus", None]),
        "kind": st.sampled_from(["float", "string", "file", "other", 1]),
        "steps": values,
        "timestamps": values,
        "sha256": st.sampled_from(["a" * 64, "zz", None]),
        "files": values,
        "replace": values,
    },
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {
            "stream": st.sampled_from(["s", "", "x" * 70, 5]),
            "seq": st.one_of(st.integers(), st.booleans(), st.text(max_size=3)),
            "ops": st.lists(ops, max_size=6),
        }
    ),
    values,
)


def snapshot(run):
    return (
        list(Attribute.objects.filter(run=run).order_by("path").values_list("path", "type", "json_value", "int_value")),
        FloatPoint.objects.count(),
        StringPoint.objects.count(),
        FileEntry.objects.count(),
        RunBatch.objects.count(),
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(body=bodies)
def test_random_batches_get_2xx_or_a_4xx_json_error(owner_api, run, body):
    before = snapshot(run)
    encoded = json.dumps(body, allow_nan=True)
    response = owner_api.post(run_url(run, "batch"), encoded, content_type="application/json")
    assert response.status_code < 500, response.content
    payload = response.json()
    if response.status_code >= 400:
        assert 400 <= response.status_code < 500
        assert payload["error"]["message"] and payload["error"]["status"] == response.status_code
        assert snapshot(run) == before
    else:
        assert payload["applied"] in (True, False)

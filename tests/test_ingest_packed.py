"""Float appends with packed columns (MessagePack bin of little-endian float64 / int64 items)
beside the per-point lists, which old clients and the API docs keep using."""

import math
import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs.models import Attribute, RunBatch

from .conftest import batch, run_url

pytestmark = pytest.mark.django_db


def f8(values):
    return struct.pack(f"<{len(values)}d", *values)


def i8(values):
    return struct.pack(f"<{len(values)}q", *values)


def packed(path, values, steps=None, timestamps=None, **extra):
    op = {"op": "append", "path": path, "values": f8(values), **extra}
    if steps is not None:
        op["steps"] = i8(steps)
    if timestamps is not None:
        op["timestamps"] = f8(timestamps)
    return op


def post(client, run, ops, seq=1, stream="s1"):
    body = msgpack.packb({"stream": stream, "seq": seq, "ops": ops}, use_bin_type=True)
    return client.post(run_url(run, "batch"), body, content_type="application/msgpack")


def points(client, run, path):
    response = client.get(
        run_url(run, "series/points"), {"path": path, "limit": 100000}, HTTP_ACCEPT="application/msgpack"
    )
    assert response.status_code == 200, response.content
    return msgpack.unpackb(response.content)


def bits(values):
    return [struct.pack("<d", v) for v in values]


def summary(client, run, path):
    fields = client.get(run_url(run, "attributes")).json()["fields"]
    return next(f for f in fields if f["path"] == path)["value"]


def test_packed_columns_store_every_float64_exactly(owner_api, run, settings):
    # Full blocks keep every bit pattern; SQLite's REAL rows of a series' open tail store -0.0 as 0.
    settings.RUNSTORE_SERIES_BLOCK_POINTS = 4
    values = [1.5, math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308, -2.0, 0.1 + 0.2]
    steps = [3, 4, 10, 11, 12, 100, 2**40, 2**62, 2**63 - 1]
    stamps = [1_700_000_000.0 + i * 0.01 for i in range(len(values))]
    response = post(owner_api, run, [packed("train/loss", values, steps, stamps)])
    assert response.status_code == 200, response.content
    assert response.json() == {"applied": True, "duplicate": False, "ops": 1, "points": len(values)}
    got = points(owner_api, run, "train/loss")
    assert got["steps"] == steps
    assert got["timestamps"] == stamps
    assert bits(got["values"]) == bits(values)


def test_packed_appends_keep_the_series_statistics_of_the_per_point_form(owner_api, run):
    values = [0.25, math.nan, 3.0, math.inf, -1.5, 2.0]
    ops = [
        packed("a/packed", values),
        {"op": "append", "path": "a/lists", "values": values},
    ]
    assert post(owner_api, run, ops).status_code == 200
    more = [packed("a/packed", [7.0]), {"op": "append", "path": "a/lists", "values": [7.0]}]
    assert post(owner_api, run, more, seq=2).status_code == 200
    by_lists, by_packed = summary(owner_api, run, "a/lists"), summary(owner_api, run, "a/packed")
    assert by_packed == by_lists
    assert by_packed["count"] == 7 and by_packed["last"] == 7.0 and by_packed["min"] == -1.5
    assert points(owner_api, run, "a/packed")["steps"] == list(range(7))


def test_packed_and_per_point_appends_mix_in_one_batch_and_continue_the_steps(owner_api, run):
    ops = [
        {"op": "append", "path": "x", "values": [1, 2.5], "steps": [0, 1], "timestamps": [10, 11]},
        packed("x", [3.0, 4.0]),  # automatic steps continue after the list's
        packed("x", [5.0], steps=[9], timestamps=[12.5]),
        {"op": "append", "path": "x", "values": ["NaN"]},
        {"op": "append", "path": "x", "values": f8([6.0]), "steps": [20], "timestamps": [13.0]},
    ]
    response = post(owner_api, run, ops)
    assert response.status_code == 200, response.content
    got = points(owner_api, run, "x")
    assert got["steps"] == [0, 1, 2, 3, 9, 10, 20]
    assert got["values"][:5] == [1.0, 2.5, 3.0, 4.0, 5.0] and math.isnan(got["values"][5]) and got["values"][6] == 6.0
    assert got["timestamps"][:2] == [10.0, 11.0] and got["timestamps"][4] == 12.5 and got["timestamps"][6] == 13.0


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_old_clients_per_point_lists_still_work(owner_api, run, fmt):
    ops = [{"op": "append", "path": "old", "values": [0.5, 1, "Infinity"], "steps": [1, 2, 3], "timestamps": [5, 6, 7]}]
    response = batch(owner_api, run, ops, fmt=fmt)
    assert response.status_code == 200, response.content
    got = points(owner_api, run, "old")
    assert got["steps"] == [1, 2, 3] and got["values"] == [0.5, 1.0, math.inf] and got["timestamps"] == [5.0, 6.0, 7.0]


def test_a_retried_packed_batch_is_applied_once(owner_api, run):
    ops = [packed("r", [1.0, 2.0, 3.0])]
    assert post(owner_api, run, ops, seq=7).json()["applied"] is True
    again = post(owner_api, run, ops, seq=7)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert points(owner_api, run, "r")["steps"] == [0, 1, 2]


def test_packed_steps_not_after_the_series_last_step_are_a_409_and_change_nothing(owner_api, run):
    assert post(owner_api, run, [packed("s", [1.0, 2.0], steps=[5, 6])]).status_code == 200
    response = post(owner_api, run, [packed("t", [1.0]), packed("s", [3.0], steps=[6])], seq=2)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "step_order" and error["field"] == "ops[1].steps[0]" and error["last_step"] == 6
    assert not Attribute.objects.filter(run=run, path="t").exists()  # the batch is atomic
    assert points(owner_api, run, "s")["steps"] == [5, 6]


@pytest.mark.parametrize("form", ["packed", "lists"])
def test_automatic_steps_past_the_64_bit_range_are_a_409_not_a_500(owner_api, run, form):
    assert post(owner_api, run, [packed("z", [1.0], steps=[2**63 - 2])]).status_code == 200
    op = packed("z", [2.0, 3.0]) if form == "packed" else {"op": "append", "path": "z", "values": [2.0, 3.0]}
    response = post(owner_api, run, [op], seq=2)
    assert response.status_code == 409, response.content
    assert response.json()["error"]["field"] == "ops[0].steps"
    assert points(owner_api, run, "z")["steps"] == [2**63 - 2]


BAD_OPS = [
    ({"values": b"\x00" * 12}, "ops[1].values", "not a multiple of 8"),
    ({"values": b""}, "ops[1].values", "must not be empty"),
    ({"values": f8([1.0, 2.0]), "steps": i8([1])}, "ops[1].steps", "lengths must be equal"),
    ({"values": f8([1.0, 2.0]), "timestamps": f8([1.0, 2.0, 3.0])}, "ops[1].timestamps", "lengths must be equal"),
    ({"values": f8([1.0, 2.0]), "steps": b"\x01" * 7}, "ops[1].steps", "not a multiple of 8"),
    ({"values": f8([1.0] * 3), "steps": i8([1, 5, 5])}, "ops[1].steps[2]", "increase strictly"),
    ({"values": f8([1.0] * 3), "steps": i8([4, 2, 9])}, "ops[1].steps[1]", "increase strictly"),
    ({"values": f8([1.0] * 2), "steps": i8([-1, 0])}, "ops[1].steps[0]", "between 0 and 2**63-1"),
    ({"values": f8([1.0] * 2), "timestamps": f8([1.0, math.nan])}, "ops[1].timestamps[1]", "unix seconds"),
    ({"values": f8([1.0] * 2), "timestamps": f8([math.inf, 1.0])}, "ops[1].timestamps[0]", "unix seconds"),
    ({"values": f8([1.0] * 2), "timestamps": f8([1.0, -5.0])}, "ops[1].timestamps[1]", "unix seconds"),
    ({"values": f8([1.0] * 2), "timestamps": f8([1.0, 1e12])}, "ops[1].timestamps[1]", "unix seconds"),
    ({"values": f8([1.0]), "steps": "0"}, "ops[1].steps", "expected a bin of packed int64"),
    ({"values": 3.0, "steps": i8([0])}, "ops[1].values", "expected a bin of packed float64"),
    ({"values": f8([1.0]), "steps": [0.5]}, "ops[1].steps[0]", "must be an integer"),
    ({"values": f8([1.0]), "timestamps": ["soon"]}, "ops[1].timestamps[0]", "unix seconds"),
    ({"values": [1.0, "x"], "steps": i8([0, 1])}, "ops[1].values[1]", "expected a number"),
    ({"kind": "string", "values": f8([1.0])}, "ops[1].values", "only for kind float"),
    ({"kind": "file", "values": [{"sha256": "a" * 64}], "steps": i8([0])}, "ops[1].steps", "only for kind float"),
]


@pytest.mark.parametrize(("fields", "where", "reason"), BAD_OPS)
def test_malformed_packed_columns_are_a_400_naming_the_op_and_field(owner_api, run, fields, where, reason):
    ops = [packed("good", [1.0]), {"op": "append", "path": "bad", **fields}]
    response = post(owner_api, run, ops)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["op_index"] == 1 and error["field"] == where and reason in error["message"], error
    assert not Attribute.objects.filter(run=run, path__in=["good", "bad"]).exists()
    assert not RunBatch.objects.filter(run=run).exists()


def test_more_packed_points_than_a_batch_holds_is_a_413_naming_the_op(owner_api, run, settings):
    settings.RUNSTORE_MAX_BATCH_POINTS = 100
    response = post(owner_api, run, [packed("a", [1.0] * 60), packed("b", [1.0] * 41)])
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "batch_too_large" and error["op_index"] == 1 and error["field"] == "ops[1].values"


columns = st.one_of(
    st.binary(max_size=40),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=5).map(f8),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=5).map(i8),
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),  # what MessagePack can carry
    st.lists(
        st.one_of(st.integers(min_value=-(2**63), max_value=2**64 - 1), st.floats(), st.text(max_size=3)), max_size=4
    ),
)
packed_ops = st.fixed_dictionaries(
    {"op": st.just("append"), "path": st.sampled_from(["a", "b/c"])},
    optional={
        "values": columns,
        "steps": columns,
        "timestamps": columns,
        "kind": st.sampled_from(["float", "string", "file", 7]),
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(ops=st.lists(packed_ops, min_size=1, max_size=4), seq=st.integers(min_value=0, max_value=2**20))
def test_random_packed_bodies_get_2xx_or_a_4xx_naming_the_field(owner_api, run, ops, seq):
    before = list(Attribute.objects.filter(run=run).order_by("path").values_list("path", "count", "last_step"))
    response = post(owner_api, run, ops, seq=seq, stream="fuzz")
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["message"] and error["status"] == response.status_code
        assert error.get("field"), error
        after = list(Attribute.objects.filter(run=run).order_by("path").values_list("path", "count", "last_step"))
        assert after == before

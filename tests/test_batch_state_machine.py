"""A Hypothesis state machine over the batch endpoint.

It creates a run, then sends batches of assignments, float and string appends, tag changes,
deletes, writes of a conflicting type, retries of a (stream, seq) already applied, and batches
with a bad operation in the middle. A model of the run says what each batch must do (apply, 409,
400, or nothing for a retry); after every step the model must equal what the read API returns:
every field's type and value, and every series' points.
"""

import copy
import math

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from projects import services as project_services
from runs import services as run_services

from .conftest import client_for

PATHS = ["a", "b", "c/d", "e/f/g"]
SERIES_PATHS = ["a", "train/loss", "train/log"]
INT64 = 2**63 - 1

texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
scalars = st.one_of(
    st.booleans(),
    st.integers(-INT64, INT64),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    texts,
    st.lists(texts, max_size=4),
)


class Rejected(Exception):
    def __init__(self, status):
        self.status = status


def scalar_type(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "string_set"


def apply_op(fields: dict, op: dict) -> None:
    """What the server does with one valid operation, on the model; raises Rejected(409)."""
    kind, path = op["op"], op["path"]
    stored = fields.get(path)
    if kind == "assign":
        leaves = (
            [(f"{path}/{k}", v) for k, v in op["value"].items()]
            if isinstance(op["value"], dict)
            else [(path, op["value"])]
        )
        for leaf, value in leaves:
            sent = scalar_type(value)
            current = fields.get(leaf)
            if current is not None and current["type"] != sent:
                if not (current["type"] == "float" and sent == "int"):
                    raise Rejected(409)
                value = float(value)
            if sent == "string_set":
                value = sorted(set(value))
            fields[leaf] = {"type": current["type"] if current else sent, "value": value}
    elif kind == "append":
        sent = {"float": "float_series", "string": "string_series"}[op["kind"]]
        if stored is not None and stored["type"] != sent:
            raise Rejected(409)
        points = stored["points"] if stored else []
        last = points[-1][0] if points else None
        steps = op.get("steps") or list(
            range(0 if last is None else last + 1, (0 if last is None else last + 1) + len(op["values"]))
        )
        if last is not None and steps[0] <= last:
            raise Rejected(409)
        fields[path] = {"type": sent, "points": points + list(zip(steps, op["values"], strict=True))}
    elif kind == "add_tags":
        if stored is not None and stored["type"] != "string_set":
            raise Rejected(409)
        fields[path] = {
            "type": "string_set",
            "value": sorted(set(stored["value"] if stored else []) | set(op["values"])),
        }
    elif kind == "remove_tags":
        if stored is None:
            return
        if stored["type"] != "string_set":
            raise Rejected(409)
        stored["value"] = sorted(set(stored["value"]) - set(op["values"]))
    elif kind == "delete":
        fields.pop(path, None)


@st.composite
def valid_ops(draw):
    kind = draw(
        st.sampled_from(["assign", "assign", "assign_dict", "append", "append", "add_tags", "remove_tags", "delete"])
    )
    if kind == "assign":
        return {"op": "assign", "path": draw(st.sampled_from(PATHS)), "value": draw(scalars)}
    if kind == "assign_dict":
        keys = draw(st.lists(st.sampled_from(["x", "y", "z"]), min_size=1, max_size=3, unique=True))
        return {"op": "assign", "path": "p", "value": {k: draw(scalars) for k in keys}}
    if kind == "append":
        series_kind = draw(st.sampled_from(["float", "string"]))
        values = draw(st.lists(st.floats(-1e12, 1e12) if series_kind == "float" else texts, min_size=1, max_size=5))
        op = {"op": "append", "path": draw(st.sampled_from(SERIES_PATHS)), "kind": series_kind, "values": values}
        if draw(st.booleans()):
            start = draw(st.integers(0, 40))
            gaps = draw(st.lists(st.integers(1, 3), min_size=len(values), max_size=len(values)))
            op["steps"] = [start + sum(gaps[: i + 1]) for i in range(len(values))]
        return op
    if kind in ("add_tags", "remove_tags"):
        return {"op": kind, "path": draw(st.sampled_from(["tags", "a"])), "values": draw(st.lists(texts, max_size=3))}
    return {"op": "delete", "path": draw(st.sampled_from(PATHS + SERIES_PATHS + ["p/x", "tags"]))}


bad_ops = st.sampled_from(
    [
        {"op": "assign", "path": "", "value": 1},
        {"op": "assign", "path": "a//b", "value": 1},
        {"op": "nope", "path": "a"},
        {"op": "append", "path": "train/loss", "values": []},
        {"op": "append", "path": "train/loss", "values": [1.0, 2.0], "steps": [3, 3]},
        {"op": "assign", "path": "sys/id", "value": "x"},
        {"op": "assign", "path": "a", "value": "x\x00y"},
        {"op": "add_tags", "path": "tags", "values": "not a list"},
    ]
)


class BatchMachine(RuleBasedStateMachine):
    """The run as a dict of path → {"type", "value"} or {"type", "points": [(step, value)]}."""

    @initialize()
    def start(self):
        BatchMachine.runs += 1
        owner = BatchMachine.owner
        self.run, _ = run_services.create_run(owner, BatchMachine.project, name=f"machine-{BatchMachine.runs}")
        self.client = BatchMachine.client
        self.url = f"/api/v1/runs/{self.run.uuid}/"
        self.fields: dict = {}
        self.sent: list[tuple[str, int, list]] = []  # applied batches, for retries
        self.seq = 0

    def post(self, ops, stream="main", seq=None):
        if seq is None:
            self.seq += 1
            seq = self.seq
        response = self.client.post(self.url + "batch", {"stream": stream, "seq": seq, "ops": ops}, format="json")
        assert response.status_code < 500, response.content
        return response, seq

    def expect(self, ops):
        """Send ``ops`` as one batch; the model says whether it applies whole or not at all."""
        after = copy.deepcopy(self.fields)
        try:
            for op in ops:
                apply_op(after, op)
            expected = 200
        except Rejected as rejected:
            expected = rejected.status
        response, seq = self.post(ops)
        assert response.status_code == expected, (ops, response.content)
        if expected == 200:
            assert response.json()["applied"] is True
            self.fields = after
            self.sent.append(("main", seq, ops))

    @rule(op=valid_ops())
    def one_op(self, op):
        self.expect([op])

    @rule(ops=st.lists(valid_ops(), min_size=2, max_size=4))
    def several_ops(self, ops):
        self.expect(ops)

    @rule(before=st.lists(valid_ops(), max_size=2), bad=bad_ops, after=st.lists(valid_ops(), max_size=2))
    def bad_op_in_the_middle(self, before, bad, after):
        response, _ = self.post([*before, bad, *after])
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["op_index"] == len(before) and error["field"].startswith(f"ops[{len(before)}]")

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def retry_an_applied_batch(self, data):
        stream, seq, ops = data.draw(st.sampled_from(self.sent))
        response, _ = self.post(ops, stream=stream, seq=seq)
        assert response.status_code == 200 and response.json()["duplicate"] is True

    @invariant()
    def read_api_equals_the_model(self):
        if not hasattr(self, "run"):
            return
        response = self.client.get(self.url + "attributes")
        assert response.status_code == 200
        served = {f["path"]: f for f in response.json()["fields"] if not f["path"].startswith("sys/")}
        assert set(served) == set(self.fields), (sorted(served), sorted(self.fields))
        for path, field in self.fields.items():
            got = served[path]
            assert got["type"] == field["type"], (path, got, field)
            if "points" not in field:
                assert got["value"] == field["value"] and type(got["value"]) is type(field["value"]), (path, got, field)
                continue
            steps = [s for s, _ in field["points"]]
            values = [v for _, v in field["points"]]
            summary = got["value"]
            assert (summary["count"], summary["first_step"], summary["last_step"], summary["last"]) == (
                len(values),
                steps[0],
                steps[-1],
                values[-1],
            ), (path, summary, field)
            if field["type"] == "float_series":
                assert summary["min"] == min(values) and summary["max"] == max(values)
                assert math.isclose(summary["avg"], math.fsum(values) / len(values), rel_tol=1e-9, abs_tol=1e-9)
            points = self.client.get(self.url + "series/points", {"path": path, "limit": 100_000}).json()
            assert (points["steps"], points["values"]) == (steps, values), path


@pytest.mark.django_db
def test_batches_keep_the_run_equal_to_its_model(owner):
    workspace = project_services.create_workspace(owner, "machine", "Machine")
    BatchMachine.owner = owner
    BatchMachine.project = project_services.create_project(owner, workspace, "runs", key="MM")
    BatchMachine.client = client_for(owner)
    BatchMachine.runs = 0
    BatchMachine.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    # The machine checks what batches do, not the request rate: its one token makes a few hundred
    # requests as fast as the server answers them, which on a fast machine outruns the default
    # bucket (100/s, burst 200) and turned an invariant's read into a 429.
    with override_settings(RUNSTORE_QUOTA_REQUESTS_PER_SECOND=1e6, RUNSTORE_QUOTA_BURST=10**6):
        BatchMachine.TestCase().runTest()

"""Float appends travel with packed columns (MessagePack bin of little-endian float64 values and
timestamps, int64 steps): exact for every float64, and understood by servers that predate them."""

from __future__ import annotations

import math
import struct
from typing import Any

import msgpack
import requests

import runstore
from runstore._internal.api import Api
from runstore._internal.queue import KIND_OP, QueueDir, SegmentWriter, read_records
from runstore._internal.sender import Sender
from runstore._internal.writer import Stats, Writer
from runstore.exceptions import ApiError

QUIET = {
    "capture_stdout": False,
    "capture_stderr": False,
    "capture_hardware_metrics": False,
    "capture_source": False,
    "capture_environment": False,
    "flush_period": 0.1,
}
BLOCK = 4096
SPECIAL = [math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, -1.7976931348623157e308, 0.1 + 0.2, 1e-300, 3]


def bits(values: list[float]) -> list[bytes]:
    return [struct.pack("<d", v) for v in values]


def raw_ops(tmp_path, items: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    qdir = QueueDir(tmp_path / "q")
    qdir.files.mkdir(parents=True)
    writer = Writer(qdir, Stats())
    writer.segment = SegmentWriter(qdir)
    writer.queue.extend(items)
    writer.cycle()
    path = qdir.segment_path(writer.segment.number)
    return [msgpack.unpackb(p) for kind, _n, p, _e in read_records(path, 0) if kind == KIND_OP]


def test_writer_puts_float_appends_on_disk_as_packed_little_endian_columns(tmp_path):
    items = [("loss", v, None, 100.0 + i) for i, v in enumerate(SPECIAL)] + [("acc", 0.5, 7, 200.0)]
    ops = {op["path"]: op for op in raw_ops(tmp_path, items)}
    loss, acc = ops["loss"], ops["acc"]
    assert loss["kind"] == "float" and isinstance(loss["values"], bytes)
    assert bits(list(struct.unpack(f"<{len(SPECIAL)}d", loss["values"]))) == bits([float(v) for v in SPECIAL])
    assert struct.unpack(f"<{len(SPECIAL)}q", loss["steps"]) == tuple(range(len(SPECIAL)))
    assert struct.unpack(f"<{len(SPECIAL)}d", loss["timestamps"]) == tuple(100.0 + i for i in range(len(SPECIAL)))
    assert struct.unpack("<q", acc["steps"]) == (7,) and struct.unpack("<d", acc["values"]) == (0.5,)


def test_strings_keep_the_per_point_form(tmp_path):
    ops = raw_ops(tmp_path, [("s", "text", None, 1.0), ("f", 1.0, None, 2.0)])
    by_path = {op["path"]: op for op in ops}
    assert by_path["s"]["values"] == ["text"] and isinstance(by_path["f"]["values"], bytes)


def test_an_int_beyond_float64_drops_that_point_only_with_a_warning(tmp_path, caplog):
    qdir = QueueDir(tmp_path / "q")
    qdir.files.mkdir(parents=True)
    stats = Stats()
    writer = Writer(qdir, stats)
    writer.segment = SegmentWriter(qdir)
    writer.queue.extend([("big", 1.0, None, 1.0), ("big", 10**400, None, 2.0), ("big", 3, None, 3.0)])
    writer.cycle()
    (op,) = [msgpack.unpackb(p) for _k, _n, p, _e in read_records(qdir.segment_path(writer.segment.number), 0)]
    assert struct.unpack("<2d", op["values"]) == (1.0, 3.0) and struct.unpack("<2q", op["steps"]) == (0, 2)
    assert stats.rejected_ops == 1 and "beyond the float64 range" in caplog.text


def test_every_float64_round_trips_bit_exactly_through_the_server(connect, server):
    run = connect()
    for value in SPECIAL:
        run["train/loss"].append(value)
    run["eval/score"].extend(SPECIAL, steps=[10 * i for i in range(len(SPECIAL))])
    # Filled up to a whole block (4,096 points): the server's SQLite rows of a series' open tail
    # store -0.0 as 0; its blocks keep every bit pattern.
    run["train/loss"].extend([1.0] * BLOCK)
    run["eval/score"].extend([1.0] * BLOCK, steps=range(100, 100 + BLOCK))
    assert run.wait(60)
    status = run.status()
    assert status["errors"] == 0 and status["rejected_operations"] == 0, status
    uuid = run._info["uuid"]
    for path, steps in (("train/loss", list(range(len(SPECIAL)))), ("eval/score", [10 * i for i in range(10)])):
        response = requests.get(
            f"{server.url}/api/v1/runs/{uuid}/series/points",
            params={"path": path, "limit": len(SPECIAL)},
            headers={"Authorization": f"Bearer {server.token}", "Accept": "application/msgpack"},
            timeout=30,
        )
        response.raise_for_status()
        got = msgpack.unpackb(response.content)
        assert got["steps"] == steps
        assert bits(got["values"]) == bits([float(v) for v in SPECIAL]), path
    run.stop()


class _Response:
    status_code = 200
    headers = {"Content-Type": "application/msgpack"}

    def __init__(self, payload: Any):
        self.content = msgpack.packb(payload)


class OldServer(Api):
    """A server from before packed columns: it answers a packed column as the older parser did."""

    def __init__(self) -> None:
        super().__init__("http://old.invalid", "token")
        self.appended: list[dict[str, Any]] = []
        self.refused = 0

    def send(self, method: str, path: str, **kwargs: Any) -> Any:
        if path == "runs/":
            return _Response({"uuid": "0" * 32, "id": "OLD-1"})
        if "raw_msgpack" not in kwargs:  # the run's state at its end
            return _Response({})
        body = msgpack.unpackb(kwargs["raw_msgpack"])
        for index, op in enumerate(body["ops"]):
            if isinstance(op.get("values"), bytes):
                self.refused += 1
                raise ApiError(
                    400,
                    "invalid",
                    f"operation {index} ({op['path']!r}): must be a non-empty list",
                    {"op_index": index, "path": op["path"], "field": f"ops[{index}].values"},
                )
        self.appended += [op for op in body["ops"] if op["op"] == "append"]
        return _Response({"applied": True, "duplicate": False})


def test_a_server_before_packed_columns_gets_every_point_as_lists(project):
    run = runstore.init_run(project=project, mode="offline", name="old-server", **QUIET)
    for i in range(2500):
        run["x"].append(i / 4)
    run["y"].extend([math.nan, -0.0], steps=[3, 9])
    qdir = run._qdir
    run.stop()
    assert qdir.try_lock()
    old = OldServer()
    sender = Sender(qdir, old)
    assert sender.drain()
    assert old.refused == 1 and sender.stats.rejected_ops == 0
    xs = [op for op in old.appended if op["path"] == "x"]
    assert [v for op in xs for v in op["values"]] == [i / 4 for i in range(2500)]
    assert [s for op in xs for s in op["steps"]] == list(range(2500))
    (y,) = [op for op in old.appended if op["path"] == "y"]
    assert y["steps"] == [3, 9] and bits(y["values"]) == bits([math.nan, -0.0])


def test_a_server_with_a_smaller_batch_limit_gets_smaller_batches_and_every_point(configured_server, project):
    srv = configured_server(RUNSTORE_MAX_BATCH_POINTS="3000")
    run = runstore.init_run(project=project, mode="offline", name="small-batches", **QUIET)
    for chunk in range(10):
        run["x"].extend([float(chunk * 1000 + i) for i in range(1000)])
        run.flush()  # one 1,000-point operation per chunk
    qdir = run._qdir
    run.stop()
    assert qdir.try_lock()
    sender = Sender(qdir, Api(srv.url, srv.token))
    assert sender.drain()
    assert sender.stats.rejected_ops == 0 and sender.max_points <= 3000
    response = requests.get(
        f"{srv.url}/api/v1/runs/{sender.run_uuid}/series/points",
        params={"path": "x", "limit": 100000},
        headers={"Authorization": f"Bearer {srv.token}"},
        timeout=30,
    )
    response.raise_for_status()
    assert response.json()["values"] == [float(i) for i in range(10_000)]

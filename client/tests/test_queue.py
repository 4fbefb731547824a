"""The disk queue and the sender, against a real server."""

import io
import zlib

import msgpack
import pytest
import requests

import runstore
from runstore._internal import queue as queue_module
from runstore._internal.api import Api
from runstore._internal.queue import KIND_OP, QueueDir, SegmentWriter, encode_record, read_records
from runstore._internal.sender import Sender, unpack_floats
from runstore._internal.writer import Stats, Writer

QUIET = {
    "capture_stdout": False,
    "capture_stderr": False,
    "capture_hardware_metrics": False,
    "capture_source": False,
    "capture_environment": False,
    "flush_period": 0.1,
}


def record(i: int) -> bytes:
    return encode_record(KIND_OP, 1, msgpack.packb({"op": "assign", "path": f"f/{i}", "value": i}))


def test_records_round_trip_and_a_torn_tail_is_ignored(tmp_path):
    qdir = QueueDir(tmp_path)
    writer = SegmentWriter(qdir)
    writer.write(record(1) + record(2))
    writer.sync()
    path = qdir.segment_path(writer.number)
    with open(path, "ab") as f:
        f.write(record(3)[:-4])  # a crash in the middle of a write
    got = [msgpack.unpackb(p)["value"] for _k, _n, p, _e in read_records(path, 0)]
    assert got == [1, 2]


def test_a_corrupted_record_stops_the_reader(tmp_path):
    qdir = QueueDir(tmp_path)
    writer = SegmentWriter(qdir)
    writer.write(record(1) + record(2))
    path = qdir.segment_path(writer.number)
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert len(list(read_records(path, 0))) == 1


def test_every_writer_opens_a_new_segment_and_rotates(tmp_path, monkeypatch):
    qdir = QueueDir(tmp_path)
    first = SegmentWriter(qdir)
    first.write(record(1))
    first.close()
    monkeypatch.setattr(queue_module, "SEGMENT_BYTES", 64)
    second = SegmentWriter(qdir)
    assert second.number == first.number + 1
    for i in range(5):
        second.write(record(i))
    second.close()
    assert len(qdir.segments()) >= 4


def encoded_ops(tmp_path, items: list[tuple], last_steps: dict | None = None) -> list[dict]:
    """What the writer puts on disk for these queue items (one drain, no threads)."""
    qdir = QueueDir(tmp_path / "q")
    qdir.files.mkdir(parents=True)
    writer = Writer(qdir, Stats(), last_steps=last_steps)
    writer.segment = SegmentWriter(qdir)
    writer.queue.extend(items)
    writer.cycle()
    return [
        msgpack.unpackb(unpack_floats(p))  # float columns travel packed; compared here as lists
        for kind, _n, p, _e in read_records(qdir.segment_path(writer.segment.number), 0)
        if kind == KIND_OP
    ]


def test_writer_coalesces_one_series_into_one_append_with_automatic_steps(tmp_path):
    ops = encoded_ops(tmp_path, [("a", 0.5, None, 10.0), ("a", 1, None, 11.0), ("a", 2.5, None, 12.0)], {"a": 6})
    assert ops == [
        {
            "op": "append",
            "path": "a",
            "kind": "float",
            "values": [0.5, 1, 2.5],
            "timestamps": [10.0, 11.0, 12.0],
            "steps": [7, 8, 9],
        }
    ]


def test_writer_keeps_the_order_per_series_and_around_other_operations(tmp_path):
    items = [
        ("a", 1.0, None, 1.0),
        ("b", "x", None, 2.0),
        ("a", 2.0, None, 3.0),
        (None, "assign", "p", "float", 0.1),
        ("a", 3.0, 5, 4.0),
        ("b", 2**70, None, 5.0),
    ]
    ops = encoded_ops(tmp_path, items)
    summary = [(op["op"], op["path"], op.get("kind"), op.get("values", op.get("value")), op.get("steps")) for op in ops]
    assert sorted(summary[:2]) == [("append", "a", "float", [1.0, 2.0], [0, 1]), ("append", "b", "string", ["x"], [0])]
    assert summary[2:] == [
        ("assign", "p", None, 0.1, None),
        ("append", "a", "float", [3.0], [5]),
        ("append", "b", "float", [float(2**70)], [1]),
    ]


def test_writer_sends_strings_mixed_into_a_float_drain_on_the_slow_path(tmp_path):
    ops = encoded_ops(tmp_path, [("a", 1.0, None, 1.0), ("a", "oops", None, 2.0), ("a", 3.0, None, 3.0)])
    assert [(op["kind"], op["values"], op["steps"]) for op in ops] == [
        ("float", [1.0], [0]),
        ("string", ["oops"], [1]),
        ("float", [3.0], [2]),
    ]


def points_of(server, run_uuid: str, path: str) -> list:
    response = requests.get(
        f"{server.url}/api/v1/runs/{run_uuid}/series/points",
        params={"path": path, "limit": 100000},
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["values"]


def offline_run(project: str, n: int) -> QueueDir:
    run = runstore.init_run(project=project, mode="offline", name="offline", **QUIET)
    run["parameters"] = {"lr": 0.1}
    for i in range(n):
        run["train/loss"].append(float(i))
    qdir = run._qdir
    run.stop()
    return qdir


def test_sender_resends_a_batch_in_flight_after_a_crash_exactly_once(server, project, monkeypatch):
    qdir = offline_run(project, 1000)
    assert qdir.try_lock()
    sender = Sender(qdir, Api(server.url, server.token))
    real_advance = sender._advance
    calls = []

    def crash_after_first_batch(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise KeyboardInterrupt("simulated crash after the server applied the batch")
        return real_advance(*args, **kwargs)

    monkeypatch.setattr(sender, "_advance", crash_after_first_batch)
    with pytest.raises(KeyboardInterrupt):
        sender.drain()
    assert qdir.read_ack()["inflight"] is not None
    again = Sender(qdir, Api(server.url, server.token))
    assert again.drain()
    assert again.stats.rejected_ops == 0
    values = points_of(server, again.run_uuid, "train/loss")
    assert values == [float(i) for i in range(1000)]


def test_sender_reads_segments_incrementally_and_deletes_acknowledged_ones(server, project, monkeypatch):
    monkeypatch.setattr(queue_module, "SEGMENT_BYTES", 4096)
    run = runstore.init_run(project=project, api_token=server.token, url=server.url, **QUIET)
    for i in range(20_000):
        run["x"].append(i)
        if i % 2000 == 0:
            run.flush()
    assert run.wait(60)
    qdir = run._qdir
    assert len(qdir.segments()) <= 2
    run.stop()
    assert not qdir.path.exists()  # a fully delivered queue is removed
    assert len(points_of(server, run._info["uuid"], "x")) == 20_000


def offline_run_in_records(project: str, records: int, per_record: int) -> QueueDir:
    """An offline queue of ``records`` float appends (a flush between them ends each record)."""
    run = runstore.init_run(project=project, mode="offline", name="offline", **QUIET)
    for r in range(records):
        for i in range(per_record):
            run["train/loss"].append(float(r * per_record + i))
        run.flush()
    qdir = run._qdir
    run.stop()
    return qdir


def test_sender_writes_its_position_once_per_batch_and_the_final_one_when_done(server, project, monkeypatch):
    qdir = offline_run_in_records(project, 5, 200)
    assert qdir.try_lock()
    sender = Sender(qdir, Api(server.url, server.token))
    sender.max_points = 200  # one record per batch: five batches
    writes = []
    real_write = qdir.write_ack
    monkeypatch.setattr(qdir, "write_ack", lambda ack, **kw: (writes.append(dict(ack)), real_write(ack, **kw)))
    assert sender.drain()
    assert [w["inflight"]["seq"] for w in writes[:-1]] == [0, 1, 2, 3, 4]  # one atomic write per batch
    assert writes[-1]["inflight"] is None and writes[-1]["seq"] == 5
    assert qdir.read_ack() == sender.ack
    assert points_of(server, sender.run_uuid, "train/loss") == [float(i) for i in range(1000)]


def test_a_crash_before_an_acknowledged_batch_position_is_written_sends_it_again_once(server, project, monkeypatch):
    qdir = offline_run_in_records(project, 3, 200)
    assert qdir.try_lock()
    sender = Sender(qdir, Api(server.url, server.token))
    sender.max_points = 200
    real_write = qdir.write_ack
    writes = []

    def crash_at_the_second_batch(ack, **kw):
        writes.append(ack)
        if len(writes) == 2:  # batch 0 is applied; its new position was never written
            raise KeyboardInterrupt("simulated crash")
        real_write(ack, **kw)

    monkeypatch.setattr(qdir, "write_ack", crash_at_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        sender.drain()
    assert qdir.read_ack()["inflight"]["seq"] == 0
    monkeypatch.setattr(qdir, "write_ack", real_write)
    again = Sender(qdir, Api(server.url, server.token))
    assert again.drain()
    assert again.stats.rejected_ops == 0
    assert points_of(server, again.run_uuid, "train/loss") == [float(i) for i in range(600)]


class CountingFile(io.FileIO):
    """A segment file that counts its system calls for reading."""

    reads = 0

    def readinto(self, buffer):  # type: ignore[override]
        CountingFile.reads += 1
        return super().readinto(buffer)

    def readall(self):
        CountingFile.reads += 1
        return super().readall()


def test_sender_sends_the_servers_batch_limit_in_one_request_read_in_one_or_two_system_calls(
    server, project, monkeypatch
):
    # Every system call lets the GIL go, and a sender thread waits ~5 ms to take it back from a busy
    # training loop: reading 2 calls per record held each batch back by tens of milliseconds, and
    # 100,000-point batches made twice the requests the server's default limit allows.
    qdir = offline_run_in_records(project, 4, 50_000)  # four records of ~1.2 MB, one batch
    assert qdir.try_lock()

    def counting_open(path, mode="r", buffering=-1, **kwargs):
        if mode != "rb":
            return open(path, mode, buffering, **kwargs)
        raw = CountingFile(path, mode)
        return io.BufferedReader(raw, buffering if buffering > 0 else io.DEFAULT_BUFFER_SIZE)

    monkeypatch.setattr(queue_module, "open", counting_open, raising=False)
    sender = Sender(qdir, Api(server.url, server.token))
    CountingFile.reads = 0
    assert sender.step()
    assert sender.acked_points == 200_000
    assert CountingFile.reads <= 2
    assert sender.drain()
    values = points_of(server, sender.run_uuid, "train/loss")  # the endpoint's page: the first 100,000
    assert values == [float(i) for i in range(len(values))] and len(values) == 100_000


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 5121, 3 * 4096, 1_000_003])
def test_record_checksum_in_pieces_is_the_crc32_of_the_whole_payload(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert queue_module.crc32(payload) == zlib.crc32(payload)
    assert encode_record(KIND_OP, 1, payload)[4:8] == zlib.crc32(payload).to_bytes(4, "little")


def test_state_files_are_written_whole_with_and_without_fsync(tmp_path):
    qdir = QueueDir(tmp_path)
    ack = {"seq": 7, "segment": 2, "offset": 123456, "inflight": {"seq": 7, "segment": 2, "start": 1, "end": 9}}
    qdir.write_ack(ack, fsync=True)
    assert qdir.read_ack() == ack
    qdir.write_ack({**ack, "inflight": None})
    assert qdir.read_ack() == {**ack, "inflight": None}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []

"""Promises under pressure: a bounded in-memory queue, files hashed off the writer thread, an
``init_run`` that never waits for the server, and an exit that waits only while the server answers."""

import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgpack
import pytest
import requests

import runstore
from runstore._internal.queue import KIND_CTL, QueueDir, read_records
from runstore._internal.sender import unpack_floats

QUIET = {
    "capture_stdout": False,
    "capture_stderr": False,
    "capture_hardware_metrics": False,
    "capture_source": False,
    "capture_environment": False,
    "flush_period": 0.1,
}
REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable


def records_on_disk(queue_dir: str) -> list[tuple[str, dict]]:
    """Every record the writer put into a queue directory so far: ("op" | "ctl", decoded payload)."""
    qdir = QueueDir(queue_dir)
    out = []
    for number in qdir.segments():
        for kind, _points, payload, _end in read_records(qdir.segment_path(number), 0):
            if kind == KIND_CTL:
                out.append(("ctl", msgpack.unpackb(payload, raw=False)))
            else:  # float columns travel packed; read here as lists
                out.append(("op", msgpack.unpackb(unpack_floats(payload), raw=False)))
    return out


def points_of(server, ref, path):
    response = requests.get(
        f"{server.url}/api/v1/runs/{ref}/series/points",
        params={"path": path, "limit": 100000},
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["values"]


def attributes(server, ref):
    response = requests.get(
        f"{server.url}/api/v1/runs/{ref}/attributes", headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    )
    response.raise_for_status()
    return {f["path"]: f["value"] for f in response.json()["fields"]}


def assert_points_reach_disk_while_hashing(run, queue_dir) -> int:
    """Append points until one reaches the disk queue; it must while a big file is still being
    hashed (its upload is not written yet), within a second. Returns how many were appended."""
    started = time.monotonic()
    appended = 0
    on_disk: list[tuple[str, dict]] = []
    while time.monotonic() - started < 30:
        run["train/loss"].append(float(appended))
        appended += 1
        on_disk = records_on_disk(queue_dir)
        if any(kind == "op" and rec.get("path") == "train/loss" for kind, rec in on_disk):
            break
        time.sleep(0.01)
    seen_after = time.monotonic() - started
    assert any(kind == "op" and rec.get("path") == "train/loss" for kind, rec in on_disk), "no point reached the disk"
    assert not any(kind == "ctl" and rec.get("t") == "upload" for kind, rec in on_disk), (
        f"the points waited for the hash ({seen_after:.2f}s)"
    )
    assert seen_after < 1.0
    return appended


def test_points_keep_reaching_the_disk_queue_while_a_big_file_is_hashed(tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # sparse: hashing it takes a second or more, writing it takes nothing
    run = runstore.init_run(project="alice/big", mode="offline", **QUIET)
    queue_dir = run.status()["queue_dir"]
    run["model/weights"].upload(big)
    appended = assert_points_reach_disk_while_hashing(run, queue_dir)
    run["eval/acc"] = 0.5  # waits behind the file, in order
    run.stop()
    records = records_on_disk(queue_dir)
    uploads = [rec for kind, rec in records if kind == "ctl" and rec.get("t") == "upload"]
    assert len(uploads) == 1 and uploads[0]["size"] == 1 << 30 and uploads[0]["file"] == str(big)
    ops = [rec for kind, rec in records if kind == "op"]
    assert [op["path"] for op in ops if op["op"] in ("upload", "assign")] == ["model/weights", "eval/acc"]
    steps = [s for op in ops if op["path"] == "train/loss" for s in op["steps"]]
    assert steps == list(range(appended))


def test_points_keep_reaching_the_disk_queue_while_a_big_file_appended_to_a_file_series_is_hashed(tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # sparse: hashing it takes a second or more, writing it takes nothing
    run = runstore.init_run(project="alice/big", mode="offline", **QUIET)
    queue_dir = run.status()["queue_dir"]
    run["model/snapshots"].append(runstore.File(big))
    appended = assert_points_reach_disk_while_hashing(run, queue_dir)
    # These wait behind the file, in order: the next point of the same series, then an assignment.
    run["model/snapshots"].append(runstore.File.from_content(b"small", name="small.bin"))
    run["eval/acc"] = 0.5
    run.stop()
    records = records_on_disk(queue_dir)
    uploads = [rec for kind, rec in records if kind == "ctl" and rec.get("t") == "upload"]
    assert [(u["size"], u["name"]) for u in uploads] == [(1 << 30, "big.bin"), (5, "small.bin")]
    assert uploads[0]["file"] == str(big)
    ops = [rec for kind, rec in records if kind == "op"]
    others = [op for op in ops if op["path"] != "train/loss"]
    assert others[-1]["path"] == "eval/acc" and all(op["path"] == "model/snapshots" for op in others[:-1])
    points = [(s, v["name"], v["sha256"]) for op in others[:-1] for s, v in zip(op["steps"], op["values"], strict=True)]
    assert points == [(0, "big.bin", uploads[0]["sha256"]), (1, "small.bin", uploads[1]["sha256"])]
    steps = [s for op in ops if op["path"] == "train/loss" for s in op["steps"]]
    assert steps == list(range(appended))
    assert run.status()["errors"] == 0


@pytest.mark.faults
def test_a_full_in_memory_queue_drops_and_counts_with_one_warning(connect, server, monkeypatch, caplog):
    monkeypatch.setenv("RUNSTORE_MAX_MEMORY_ITEMS", "1000")
    monkeypatch.setenv("RUNSTORE_MAX_MEMORY_BYTES", "200000")
    run = connect()
    for i in range(200_000):  # far faster than the writer drains (every 50 ms)
        run["x"].append(float(i))
    assert run.flush(30)
    items_dropped = run.status()["dropped_in_memory"]
    assert items_dropped > 0  # bounded by items
    text = "y" * 10_000
    for i in range(200):
        run["logs"].append(f"{i} {text}")
    assert run.flush(30)  # flush markers are never dropped
    status = run.status()
    assert status["dropped_in_memory"] > items_dropped  # bounded by bytes: 20 such strings fill 200 kB
    assert status["dropped_operations"] >= status["dropped_in_memory"]
    assert caplog.text.count("in-memory queue is full") == 1
    run["after"] = 1  # room again once the writer caught up
    assert run.wait(60)
    kept = points_of(server, run._info["uuid"], "x")  # the first 100,000
    stored = attributes(server, run._info["uuid"])
    run.stop()
    assert kept == sorted(kept)
    assert 0 < stored["x"]["count"] < 200_000
    assert 0 < stored["logs"]["count"] < 200
    assert stored["x"]["count"] + stored["logs"]["count"] + status["dropped_in_memory"] == 200_200
    assert run.status()["errors"] >= 1


@pytest.mark.faults
def test_init_run_returns_at_once_without_a_server_and_the_run_is_created_once_later(restartable_server, monkeypatch):
    server = restartable_server
    server.stop()  # a closed port: every connection is refused
    monkeypatch.setenv("RUNSTORE_FETCH_TIMEOUT", "1")
    started = time.perf_counter()
    run = runstore.init_run(project="alice/later", name="later", api_token=server.token, url=server.url, **QUIET)
    took = time.perf_counter() - started
    assert took < 2.0, f"init_run blocked {took:.1f}s"
    for i in range(1000):
        run["train/loss"].append(float(i))
    run["parameters"] = {"lr": 0.1}
    started = time.perf_counter()
    with pytest.raises(runstore.NetworkError, match=r"not created on the server yet.*Connection refused"):
        run["sys/id"].fetch()
    assert time.perf_counter() - started < 5.0
    assert run.flush(10)
    server.start()
    assert run.wait(90)
    run_id = run["sys/id"].fetch()
    run.stop()
    rows = runstore.init_project("alice/later", api_token=server.token, url=server.url).fetch_runs_table().to_rows()
    assert [(row["sys/id"], row["sys/name"], row["sys/state"]) for row in rows] == [(run_id, "later", "finished")]
    assert points_of(server, f"alice/later/{run_id}", "train/loss") == [float(i) for i in range(1000)]


EXIT_CHILD = textwrap.dedent("""
    import sys, time, runstore
    url, token = sys.argv[1:3]
    run = runstore.init_run(project="alice/gone", name="gone", api_token=token, url=url, stall_timeout=2,
                            capture_stdout=False, capture_stderr=False, capture_hardware_metrics=False,
                            capture_source=False, capture_environment=False, flush_period=0.1)
    for i in range(5000):
        run["train/loss"].append(float(i))
    run["eval/acc"] = 0.5
    print("done", flush=True)
""")


@pytest.mark.faults
def test_exit_with_the_server_unreachable_ends_after_the_stall_timeout_and_prints_the_sync_command(
    restartable_server, tmp_path, isolated_home
):
    server = restartable_server
    server.stop()
    script = tmp_path / "train.py"
    script.write_text(EXIT_CHILD)
    child = subprocess.Popen(
        [PYTHON, str(script), server.url, server.token],
        env={**os.environ, "RUNSTORE_HOME": str(isolated_home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "done"
        ended = time.monotonic()
        _out, err = child.communicate(timeout=60)
        exit_seconds = time.monotonic() - ended
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    assert exit_seconds < 2 + 6, f"the exit took {exit_seconds:.1f}s"  # stall timeout 2 s, not 300 s
    assert re.search(r"runstore: \d+ operations did not reach the server \(no acknowledgement for 2s", err), err
    command = re.search(r"send them later with: (runstore sync --path .+)$", err, re.MULTILINE)
    assert command, err
    assert command.group(1) == f"runstore sync --path {shlex.quote(str(isolated_home))}"

    server.start()
    argv = [PYTHON, "-m", "runstore.cli", *shlex.split(command.group(1))[1:]]
    env = {**os.environ, "RUNSTORE_API_TOKEN": server.token}
    env.pop("RUNSTORE_HOME")  # the printed command is complete on its own
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "synced" in result.stdout
    rows = runstore.init_project("alice/gone", api_token=server.token, url=server.url).fetch_runs_table().to_rows()
    assert len(rows) == 1 and rows[0]["sys/name"] == "gone" and rows[0]["sys/state"] == "finished"
    assert points_of(server, f"alice/gone/{rows[0]['sys/id']}", "train/loss") == [float(i) for i in range(5000)]
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "nothing to sync" in again.stdout

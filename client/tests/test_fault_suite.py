"""Faults survived with nothing lost: a deployment of its own (PostgreSQL + TimescaleDB, Redis, gunicorn,
a Celery worker; client/tests/stack.py) whose parts are restarted and killed while the real client logs.

Each test counts what arrived: every point exactly once, every task's work done, nothing half-written."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from stack import Stack, pg_bin, wait_for

import runstore

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(os.geteuid() != 0 or pg_bin() is None, reason="needs root and a PostgreSQL installation"),
]

QUIET = {
    "capture_stdout": False,
    "capture_stderr": False,
    "capture_hardware_metrics": False,
    "capture_source": False,
    "capture_environment": False,
}


BLOB_DISK = 64 * 2**20


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The deployment, its blob store on a 64 MiB disk of its own (a tmpfs) that a test can fill."""
    root = tmp_path_factory.mktemp("stack")
    blobs = root / "blobs"
    blobs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={BLOB_DISK}", "tmpfs", str(blobs)], check=True)
    deployment = Stack(root, blob_dir=blobs)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()
        subprocess.run(["umount", "-l", str(blobs)], check=False)


def steps_of(stack: Stack, run_uuid: str, path: str) -> Counter[int]:
    """How many times each step of a float series is stored, read through the API page by page."""
    seen: Counter[int] = Counter()
    after = None
    while True:
        params: dict[str, object] = {"path": path, "limit": 10_000}
        if after is not None:
            params["after_step"] = after
        response = stack.api("GET", f"runs/{run_uuid}/series/points", params=params)
        assert response.status_code == 200, response.text
        steps = response.json()["steps"]
        if not steps:
            return seen
        seen.update(int(step) for step in steps)
        after = steps[-1]


def series_stats(stack: Stack, run_uuid: str) -> dict[str, dict[str, float]]:
    """Each float series' running statistics (count, min, max, avg, last): a batch applied twice counts twice."""
    response = stack.api("GET", f"runs/{run_uuid}/attributes")
    assert response.status_code == 200, response.text
    return {f["path"]: f["value"] for f in response.json()["fields"] if f["type"] == "float_series"}


def assert_exactly_once(stack: Stack, run_uuid: str, series: int, points: int) -> None:
    stats = series_stats(stack, run_uuid)
    for s in range(series):
        path = f"train/s{s}"
        seen = steps_of(stack, run_uuid, path)
        assert len(seen) == points and set(seen.values()) == {1}, f"{path}: steps lost or stored twice"
        assert stats[path]["count"] == points, f"{path}: {stats[path]['count']} points counted, {points} sent"
        assert stats[path]["avg"] == pytest.approx((points - 1) * 0.25 + s), f"{path}: a point counted twice"


class Writer(threading.Thread):
    """A training loop in a thread: logs ``series`` float series over ``points`` steps through the real
    client, in two halves. After the first half is acknowledged it sets ``half``, waits for ``go`` (the
    test breaks something meanwhile) and logs the rest, which meets the fault; then waits until every
    point is acknowledged."""

    def __init__(self, stack: Stack, project: str, series: int, points: int):
        super().__init__(daemon=True)
        self.stack, self.project, self.series, self.points = stack, project, series, points
        self.half, self.go = threading.Event(), threading.Event()
        self.uuid = ""
        self.error: BaseException | None = None

    def _log(self, run: runstore.Run, steps: range) -> None:
        for step in steps:
            for s in range(self.series):
                run[f"train/s{s}"].append(float(step) * 0.5 + s, step=step)

    def run(self) -> None:
        try:
            run = runstore.init_run(
                project=self.project, api_token=self.stack.token, url=self.stack.url, flush_period=0.05, **QUIET
            )
            self._log(run, range(self.points // 2))
            assert run.wait(120), run.status()
            self.half.set()
            assert self.go.wait(120)
            self._log(run, range(self.points // 2, self.points))
            assert run.wait(240), run.status()
            self.uuid = str(run._info["uuid"])
            run.stop(timeout=60)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc
            self.half.set()

    def finish(self) -> str:
        self.join(300)
        assert not self.is_alive(), "the writer never finished"
        if self.error is not None:
            raise self.error
        return self.uuid


def test_postgres_restarted_during_ingest_loses_and_duplicates_nothing(stack):
    before = stack.statuses("/batch")
    writer = Writer(stack, "alice/pg-restart", 4, 50_000)
    writer.start()
    assert writer.half.wait(120)
    stack.pg.stop("fast")  # the web workers' open connections die with it
    writer.go.set()  # the second half is sent while the database is down: 503s, retried with backoff
    wait_for(lambda: stack.statuses("/batch")[503] > before[503], timeout=60, what="a batch answered 503")
    time.sleep(2)
    stack.pg.start()
    uuid = writer.finish()
    assert_exactly_once(stack, uuid, 4, 50_000)
    statuses = stack.statuses("/batch")
    assert not [s for s in statuses if s >= 500 and s != 503], f"the outage answered other than 503: {statuses}"
    assert stack.api("GET", "runs/", params={"project": "alice/pg-restart"}).status_code == 200


def test_a_web_worker_killed_mid_batch_applies_the_retried_batch_once(stack, caplog):
    # the second half is several of the client's batches (up to 200,000 points each), so the kills meet one in flight
    writer = Writer(stack, "alice/web-kill", 4, 400_000)
    writer.start()
    assert writer.half.wait(120)
    before = stack.statuses("/batch")[200]
    writer.go.set()
    killed, rounds = 0, 0
    # SIGKILL every gunicorn worker just after a batch was answered, while the next one is on its way (the
    # master forks new ones), until a request was cut or the second half is through (a bounded number of rounds)
    while rounds < 8 and writer.is_alive() and (rounds < 3 or "retrying" not in caplog.text):
        wait_for(
            lambda seen=before: stack.statuses("/batch")[200] > seen or not writer.is_alive(),
            timeout=60,
            interval=0.02,
            what="a batch answered",
        )
        if not writer.is_alive():
            break
        time.sleep(0.05)
        for pid in stack.web_workers():
            os.kill(pid, signal.SIGKILL)
            killed += 1
        rounds += 1
        before = stack.statuses("/batch")[200]
    uuid = writer.finish()
    assert killed >= 3
    assert "retrying" in caplog.text, "no request was cut by the kills"
    assert_exactly_once(stack, uuid, 4, 400_000)


def png(path: Path, size: int) -> Path:
    from PIL import Image

    gradient = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    gradient.save(path, compress_level=1)
    return path


def preview(stack: Stack, uuid: str, path: str) -> requests.Response:
    return stack.api("GET", f"runs/{uuid}/files/preview", params={"path": path, "kind": "thumbnail"})


def upload_image(stack: Stack, project: str, image: Path) -> str:
    run = runstore.init_run(project=project, api_token=stack.token, url=stack.url, flush_period=0.05, **QUIET)
    run["samples/image"].upload(str(image))
    assert run.wait(120), run.status()
    uuid = str(run._info["uuid"])
    run.stop(timeout=60)
    return uuid


def test_a_celery_worker_killed_mid_preview_is_finished_by_another(stack, tmp_path):
    from PIL import Image

    worker = stack.start_worker()
    log = stack.root / f"worker-{len(stack.workers) - 1}.log"
    uuid = upload_image(stack, "alice/preview-kill", png(tmp_path / "big.png", 6000))
    wait_for(lambda: b"preview_blob" in log.read_bytes(), timeout=60, what="the preview task", interval=0.01)
    stack.kill_worker(worker)
    assert preview(stack, uuid, "samples/image").status_code == 404, "the preview was done before the kill"
    stack.start_worker()  # the unacknowledged message comes back after the visibility timeout (3 s here)
    done = wait_for(lambda: preview(stack, uuid, "samples/image").status_code == 200, timeout=120, what="the preview")
    assert done
    thumbnail = tmp_path / "thumb.png"
    thumbnail.write_bytes(preview(stack, uuid, "samples/image").content)
    with Image.open(thumbnail) as image:
        image.verify()  # a whole PNG, not the half the killed worker may have written


def queued_messages(stack: Stack) -> int:
    import redis

    client = redis.Redis.from_url(stack.redis.url)
    return sum(int(client.llen(queue)) for queue in ("ingest", "media", "maintenance"))


def stale_series(stack: Stack) -> int:
    """Float series with closed roll-up buckets not rolled up yet (``runs.rollups.stale_series``)."""
    out = stack.manage("shell", "-c", "from runs import rollups; print(len(rollups.stale_series()))")
    return int(out.strip().splitlines()[-1])


def test_redis_killed_while_tasks_are_queued_every_task_still_runs(stack, tmp_path):
    for worker in stack.workers:
        stack.kill_worker(worker)
    image_run = upload_image(stack, "alice/redis-kill", png(tmp_path / "small.png", 800))
    writer = Writer(stack, "alice/redis-kill", 3, 20_000)  # closed roll-up buckets: roll-up tasks
    writer.start()
    assert writer.half.wait(120)
    writer.go.set()
    series_run = writer.finish()
    assert queued_messages(stack) > 0, "nothing was queued"
    stack.redis.stop()  # SIGKILL with the tasks still queued
    stack.redis.start()
    assert queued_messages(stack) > 0, "the queued tasks did not survive the restart"
    stack.start_worker()
    wait_for(lambda: preview(stack, image_run, "samples/image").status_code == 200, timeout=120, what="the preview")
    wait_for(lambda: queued_messages(stack) == 0, timeout=120, what="the queues to drain")
    # A drained queue is not a finished task: the worker holds a roll-up task through its countdown
    # (RUNSTORE_ROLLUP_DELAY) and runs it after. No beat runs here, so a task lost with Redis would
    # leave its series without roll-ups for good and this wait would fail.
    wait_for(lambda: stale_series(stack) == 0, timeout=120, interval=1.0, what="every series rolled up")
    assert_exactly_once(stack, series_run, 3, 20_000)


def test_a_full_blob_store_answers_507_keeps_nothing_and_the_client_sends_the_file_later(stack, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNSTORE_MAX_RETRY_AFTER", "1")
    blobs = Path(stack.env["RUNSTORE_BLOB_DIR"])
    free = shutil.disk_usage(blobs).free
    filler = blobs / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * (free - 2 * 2**20))  # 2 MiB left
    data = tmp_path / "weights.bin"
    data.write_bytes(os.urandom(6 * 2**20))
    files_before = sorted(p.relative_to(blobs) for p in blobs.rglob("*") if p.is_file())
    run = runstore.init_run(project="alice/disk-full", api_token=stack.token, url=stack.url, flush_period=0.05, **QUIET)
    run["model/weights"].upload(str(data))
    wait_for(lambda: stack.statuses("/uploads")[507] > 0, timeout=60, what="a 507 answer")
    response = stack.api("POST", f"runs/{run._info['uuid']}/uploads", files={"file": ("w.bin", data.read_bytes())})
    assert response.status_code == 507
    error = response.json()["error"]
    assert error["code"] == "insufficient_storage" and error["field"] == "file" and "full" in error["message"]
    files_after = sorted(p.relative_to(blobs) for p in blobs.rglob("*") if p.is_file())
    assert files_after == files_before, "a partial file was left in the blob store"
    assert run.status()["pending_operations"] > 0, "the client dropped the queued file"
    filler.unlink()
    assert run.wait(120), run.status()
    uuid = str(run._info["uuid"])
    run.stop(timeout=60)
    got = tmp_path / "got.bin"
    got.write_bytes(stack.api("GET", f"runs/{uuid}/files/download", params={"path": "model/weights"}).content)
    assert got.read_bytes() == data.read_bytes()


@pytest.mark.parametrize("skew", [3600.0, -3600.0])
def test_a_client_clock_an_hour_off_keeps_its_timestamps_and_the_server_judges_liveness_by_its_own(
    stack, monkeypatch, skew
):
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + skew)
    run = runstore.init_run(project="alice/skew", api_token=stack.token, url=stack.url, flush_period=0.05, **QUIET)
    sent = []
    for step in range(100):
        sent.append(time.time())
        run["train/loss"].append(1.0 / (step + 1), step=step, timestamp=sent[-1])
    assert run.wait(60)
    uuid = str(run._info["uuid"])
    server_now = real()
    points = stack.api("GET", f"runs/{uuid}/series/points", params={"path": "train/loss"}).json()
    assert points["steps"] == list(range(100)), "points not in step order"
    assert points["timestamps"] == pytest.approx(sent, abs=1e-3), "the sent timestamps were changed"
    fields = {f["path"]: f["value"] for f in stack.api("GET", f"runs/{uuid}/attributes").json()["fields"]}
    from datetime import datetime

    ping = datetime.fromisoformat(fields["sys/ping_time"]).timestamp()
    assert abs(ping - server_now) < 120, f"ping_time {ping} is not the server's time {server_now}"
    stack.manage("shell", "-c", "from runs import services; services.mark_crashed_runs()")
    state = {f["path"]: f["value"] for f in stack.api("GET", f"runs/{uuid}/attributes").json()["fields"]}["sys/state"]
    assert state == "running", "a skewed clock made a live run look crashed"
    run.stop(timeout=60)

"""Faults survived with nothing lost: a deployment of its own (PostgreSQL + TimescaleDB, Redis, gunicorn,
a Celery worker; client/tests/stack.py) whose parts are restarted and killed while the real client logs.

Each test counts what arrived: every point exactly once, every task's work done, nothing half-written."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

import pytest
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


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("stack")
    deployment = Stack(root)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


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

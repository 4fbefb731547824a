"""The server's quotas as the client meets them: a 429 slows it down as told, a 403 ``quota_exceeded``
keeps the data queued on disk (one warning per quota) until the quota is raised; training never notices.

The answers are the server's contract (``{"error": {"status", "code", "message", ...details}}``, with
``Retry-After`` and ``RateLimit-*`` on a 429), injected by the fault proxy in front of the real server.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from faultproxy import FaultProxy

import runstore
from runstore._internal.queue import QueueDir

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
RATE_LIMITED = {"code": "rate_limited", "message": "too many requests for workspace alice"}
RATE_HEADERS = {"RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": "1"}
STORAGE_FULL = {
    "code": "quota_exceeded",
    "message": "workspace alice is over its storage_bytes quota: 1500 used of 1000",
    "workspace": "alice",
    "quota": "storage_bytes",
    "used": 1500,
    "limit": 1000,
}


def quota(name, used, limit):
    return {**STORAGE_FULL, "quota": name, "used": used, "limit": limit, "message": f"{name}: {used} of {limit}"}


def api_get(server, endpoint, **params):
    response = requests.get(
        f"{server.url}/api/v1/{endpoint}",
        params=params,
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def series(server, run_ref, path):
    return api_get(server, f"runs/{run_ref}/series/points", path=path, limit=100000)["values"]


def cli(home, *args, token=None):
    env = {**os.environ, "RUNSTORE_HOME": str(home)}
    if token:
        env["RUNSTORE_API_TOKEN"] = token
    return subprocess.run([PYTHON, "-m", "runstore.cli", *args], env=env, capture_output=True, text=True, timeout=120)


def until(predicate, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def quota_warnings(caplog):
    return [r for r in caplog.records if r.levelname == "WARNING" and "blocked by quota" in r.getMessage()]


@pytest.fixture()
def fast_quota_retries(monkeypatch):
    # The product retries a quota after 30 s, then up to every 5 min; the tests cannot wait that long.
    monkeypatch.setenv("RUNSTORE_QUOTA_RETRY", "0.3")
    monkeypatch.setenv("RUNSTORE_QUOTA_MAX_RETRY", "0.6")


@pytest.mark.faults
@pytest.mark.parametrize("status", [429, 503])
def test_a_stretch_of_429_or_503_loses_no_point_and_waits_as_retry_after_tells(server, project, status):
    error = RATE_LIMITED if status == 429 else {"code": "unavailable", "message": "maintenance"}
    with FaultProxy(
        server.url, status=status, fail_batches=4, retry_after=1, error=error, headers=RATE_HEADERS
    ) as proxy:
        run = runstore.init_run(project=project, api_token=server.token, url=proxy.url, **QUIET)
        start = time.perf_counter()
        for i in range(3000):
            run["loss"].append(float(i))
            if i % 500 == 0:
                time.sleep(0.2)  # points keep coming while the server refuses
        run["eval/acc"] = 0.5
        assert time.perf_counter() - start < 3.0
        assert run.wait(60)
        uuid = run._info["uuid"]
        run.stop()
    batches = [(t, s) for t, p, s in proxy.log if p.endswith("/batch")]
    assert [s for _t, s in batches[:4]] == [status] * 4
    gaps = [b[0] - a[0] for a, b in zip(batches, batches[1:5], strict=False)]
    assert all(0.95 <= gap <= 2.0 for gap in gaps), gaps  # Retry-After: 1 s plus at most 10 % jitter
    assert series(server, uuid, "loss") == [float(i) for i in range(3000)]


@pytest.mark.faults
def test_a_huge_retry_after_is_capped(server, project, monkeypatch):
    monkeypatch.setenv("RUNSTORE_MAX_RETRY_AFTER", "1")
    with FaultProxy(server.url, status=429, fail_batches=2, retry_after=3600, error=RATE_LIMITED) as proxy:
        run = runstore.init_run(project=project, api_token=server.token, url=proxy.url, **QUIET)
        run["x"].extend([1.0, 2.0, 3.0])
        start = time.monotonic()
        assert run.wait(20)
        assert time.monotonic() - start < 10
        uuid = run._info["uuid"]
        run.stop()
    assert series(server, uuid, "x") == [1.0, 2.0, 3.0]


@pytest.mark.faults
def test_rate_limiting_shows_in_run_status_and_runstore_status(server, project, isolated_home):
    with FaultProxy(
        server.url, status=429, fail_batches=1, retry_after=6, error=RATE_LIMITED, headers=RATE_HEADERS
    ) as proxy:
        run = runstore.init_run(project=project, api_token=server.token, url=proxy.url, **QUIET)
        run["x"].append(1.0)
        throttled = until(lambda: run.status()["rate_limited"])
        assert 4 < throttled["retry_in"] <= 6.7
        assert throttled["limit"] == "100" and throttled["remaining"] == "0"
        assert run.status()["blocked"].startswith("rate limited by the server (limit 100 requests): retrying in")
        shown = cli(isolated_home, "status")
        assert "rate limited by the server (limit 100 requests): retrying in" in shown.stdout, shown
        assert run.wait(30)
        assert run.status()["rate_limited"] is None and run.status()["blocked"] is None
        run.stop()
    assert "rate limited" not in cli(isolated_home, "status").stdout


@pytest.mark.faults
def test_over_storage_quota_data_stays_on_disk_one_warning_and_drains_once_raised(
    server, project, isolated_home, fast_quota_retries, caplog
):
    with FaultProxy(server.url, status=403, fail_batches=10**9, error=STORAGE_FULL) as proxy:
        run = runstore.init_run(project=project, api_token=server.token, url=proxy.url, **QUIET)
        start = time.perf_counter()
        for i in range(3000):
            run["loss"].append(float(i))
        run["parameters/lr"] = 0.01
        assert time.perf_counter() - start < 1.0  # the training job runs on
        assert run.flush(10)
        until(lambda: sum(1 for _t, p, s in proxy.log if p.endswith("/batch") and s == 403) >= 4)
        assert not run.wait(0.5)

        status = run.status()
        assert status["blocked"] == "blocked by quota storage_bytes in workspace alice: used 1.5 KiB of 1000 B"
        assert status["quota"]["quota"] == "storage_bytes" and status["quota"]["workspace"] == "alice"
        assert (status["quota"]["used"], status["quota"]["limit"]) == (1500, 1000)
        assert status["sending_failed"] is None and status["dropped_operations"] == 0
        assert status["rejected_operations"] == 0
        records, points = QueueDir(status["queue_dir"]).pending()
        assert points == 3000 and records >= 2  # every point and the assignment wait on disk

        warnings = quota_warnings(caplog)
        assert len(warnings) == 1  # one warning for several refusals
        message = warnings[0].getMessage()
        assert "storage_bytes" in message and "alice" in message and "1.5 KiB of 1000 B" in message
        assert STORAGE_FULL["message"] in message

        shown = cli(isolated_home, "status")
        assert "blocked by quota storage_bytes in workspace alice: used 1.5 KiB of 1000 B" in shown.stdout, shown
        assert "next retry in" in shown.stdout

        proxy.fail_batches = 0  # an admin raises the quota: nothing is restarted
        assert run.wait(30)
        assert run.status()["quota"] is None and run.status()["blocked"] is None
        assert "blocked by quota" not in cli(isolated_home, "status").stdout
        assert "accepts this run's data again" in caplog.text
        uuid = run._info["uuid"]
        run.stop()
    assert series(server, uuid, "loss") == [float(i) for i in range(3000)]
    assert api_get(server, f"runs/{uuid}/attributes", path="parameters/lr")
    assert len(quota_warnings(caplog)) == 1


@pytest.mark.faults
def test_each_quota_is_warned_once(server, project, fast_quota_retries, caplog):
    with FaultProxy(server.url, status=403, fail_batches=10**9, error=STORAGE_FULL) as proxy:
        run = runstore.init_run(project=project, api_token=server.token, url=proxy.url, **QUIET)
        run["x"].append(1.0)
        until(lambda: sum(1 for _t, _p, s in proxy.log if s == 403) >= 3)
        proxy.error = quota("upload_bytes", 5000, 4000)
        until(lambda: run.status()["quota"] and run.status()["quota"]["quota"] == "upload_bytes")
        until(lambda: sum(1 for _t, _p, s in proxy.log if s == 403) >= 6)
        proxy.fail_batches = 0
        assert run.wait(30)
        run.stop()
    warned = [r.getMessage() for r in quota_warnings(caplog)]
    assert len(warned) == 2, warned
    assert "storage_bytes" in warned[0] and "upload_bytes" in warned[1]


@pytest.mark.faults
def test_stop_while_over_quota_ends_and_leaves_the_queue_for_runstore_sync(
    server, project, isolated_home, fast_quota_retries, caplog
):
    with FaultProxy(server.url, status=403, fail_batches=10**9, error=STORAGE_FULL) as proxy:
        run = runstore.init_run(project=project, api_token=server.token, url=proxy.url, stall_timeout=1.5, **QUIET)
        for i in range(2000):
            run["loss"].append(float(i))
        until(lambda: run.status()["quota"])
        queue = Path(run.status()["queue_dir"])
        start = time.monotonic()
        run.stop()  # never raises, never hangs
        assert time.monotonic() - start < 15
        assert queue.is_dir() and QueueDir(queue).pending()[1] == 2000
        left = [r.getMessage() for r in caplog.records if "did not reach the server" in r.getMessage()]
        assert len(left) == 1
        assert "blocked by quota storage_bytes in workspace alice: used 1.5 KiB of 1000 B" in left[0]
        assert f"runstore sync --path {isolated_home}" in left[0]

        shown = cli(isolated_home, "status")
        assert "blocked by quota storage_bytes in workspace alice" in shown.stdout, shown
        assert "`runstore sync` sends it once the quota is raised" in shown.stdout

        refused = cli(isolated_home, "sync", token=server.token)  # still over quota: reported, not hanging
        assert refused.returncode == 1
        assert "not synced: blocked by quota storage_bytes in workspace alice" in refused.stderr
        assert queue.is_dir() and QueueDir(queue).pending()[1] == 2000

        proxy.fail_batches = 0
        synced = cli(isolated_home, "sync", token=server.token)
        assert synced.returncode == 0, synced.stderr
        assert "synced" in synced.stdout
    assert not queue.exists()
    assert series(server, run._info["uuid"], "loss") == [float(i) for i in range(2000)]


@pytest.mark.faults
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_creating_a_run_over_the_run_quota_logs_to_disk_and_creates_it_once_raised(
    server, project, mode, fast_quota_retries, monkeypatch, caplog
):
    monkeypatch.setenv("RUNSTORE_SYNC_TIMEOUT", "30")
    refused = quota("runs_per_project", 10, 10)
    with FaultProxy(server.url, status=403, fail_batches=10**9, error=refused, fail_suffix="/api/v1/runs/") as proxy:
        run = runstore.init_run(project=project, name="over", mode=mode, api_token=server.token, url=proxy.url, **QUIET)
        start = time.perf_counter()
        for i in range(100):
            run["x"].append(float(i))  # sync mode too: nothing can be acknowledged, nothing waits
        run["a"] = 1
        assert time.perf_counter() - start < 2.0
        status = until(lambda: run.status()["quota"] and run.status())
        assert status["blocked"] == "blocked by quota runs_per_project in workspace alice: used 10 of 10"
        until(lambda: sum(1 for _t, _p, s in proxy.log if s == 403) >= 3)
        warned = quota_warnings(caplog)
        assert len(warned) == 1 and "runs_per_project" in warned[0].getMessage()
        proxy.fail_batches = 0
        assert run.wait(30)
        assert run["sys/name"].fetch() == "over"
        uuid = run._info["uuid"]
        run.stop()
    assert series(server, uuid, "x") == [float(i) for i in range(100)]
    assert len(quota_warnings(caplog)) == 1


@pytest.mark.faults
def test_an_upload_over_the_upload_quota_stays_queued_until_raised(
    server, project, tmp_path, fast_quota_retries, caplog
):
    payload = os.urandom(200_000)
    (tmp_path / "model.bin").write_bytes(payload)
    refused = quota("upload_bytes", 200_000, 100_000)
    with FaultProxy(server.url, status=403, fail_batches=10**9, error=refused, fail_suffix="/uploads") as proxy:
        run = runstore.init_run(project=project, api_token=server.token, url=proxy.url, **QUIET)
        run["model/weights"].upload(str(tmp_path / "model.bin"))
        run["after"] = 1
        status = until(lambda: run.status()["quota"] and run.status())
        assert status["blocked"] == "blocked by quota upload_bytes in workspace alice: used 195.3 KiB of 97.7 KiB"
        until(lambda: sum(1 for _t, _p, s in proxy.log if s == 403) >= 3)
        assert not run.wait(0.2)
        proxy.fail_batches = 0
        assert run.wait(30)
        target = run["model/weights"].download(str(tmp_path / "back.bin"))
        run.stop()
    assert target.read_bytes() == payload
    assert len(quota_warnings(caplog)) == 1


@pytest.mark.faults
def test_a_real_server_project_quota_defers_the_run_and_it_is_created_once_raised(
    configured_server, fast_quota_retries, caplog
):
    server = configured_server(RUNSTORE_QUOTA_PROJECTS="0")  # the server's own quota, no proxy
    run = runstore.init_run(project="alice/over", name="deferred", api_token=server.token, url=server.url, **QUIET)
    for i in range(100):
        run["x"].append(float(i))
    status = until(lambda: run.status()["quota"] and run.status())
    assert status["blocked"] == "blocked by quota projects in workspace alice: used 0 of 0"
    assert not run.wait(1)
    server.stop()
    server.env["RUNSTORE_QUOTA_PROJECTS"] = "5"  # raised; the run's process goes on unchanged
    server.start()
    assert run.wait(60)
    assert run["sys/name"].fetch() == "deferred"
    uuid = run._info["uuid"]
    run.stop()
    assert series(server, uuid, "x") == [float(i) for i in range(100)]
    warned = [r.getMessage() for r in quota_warnings(caplog)]
    assert len(warned) == 1 and "refuses to create the run" in warned[0] and "projects" in warned[0]

"""The training job never notices the tracker's trouble: server down, 429/500, bad operations, full disk, kill -9."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests
from faultproxy import FaultProxy

import runstore

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
    return api_get(server, f"runs/{run_ref}/series/points", path=path, limit=100000)


def fields(server, run_ref):
    return {f["path"]: f["value"] for f in api_get(server, f"runs/{run_ref}/attributes")["fields"]}


@pytest.mark.faults
def test_server_stopped_and_restarted_mid_run_loses_nothing(restartable_server, caplog):
    server = restartable_server
    run = runstore.init_run(project="alice/restart", api_token=server.token, url=server.url, **QUIET)
    for i in range(1000):
        run["train/loss"].append(float(i))
    assert run.wait(30)
    server.stop()
    start = time.perf_counter()
    for i in range(1000, 3000):
        run["train/loss"].append(float(i))
    run["eval/acc"] = 0.9
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5  # training goes on at full speed while the server is down
    assert run.flush(10)
    assert not run.wait(1.0)
    time.sleep(1.5)
    server.start()
    assert run.wait(90)
    uuid = run._info["uuid"]
    run.stop()
    assert series(server, uuid, "train/loss")["values"] == [float(i) for i in range(3000)]
    assert fields(server, uuid)["eval/acc"] == 0.9
    assert fields(server, uuid)["sys/state"] == "finished"
    assert "retrying" in caplog.text


@pytest.mark.faults
def test_server_unreachable_at_start_creates_the_run_later(server, monkeypatch):
    monkeypatch.setenv("RUNSTORE_INIT_TIMEOUT", "0.5")
    with FaultProxy(server.url) as proxy:
        proxy.down = True
        run = runstore.init_run(project="alice/late", name="late", api_token=server.token, url=proxy.url, **QUIET)
        for i in range(100):
            run["x"].append(i)
        assert run.flush(10)
        assert not run.wait(1)
        proxy.down = False
        assert run.wait(90)
        assert run["sys/name"].fetch() == "late"
        assert run["x"].fetch() == 99
        run.stop()


@pytest.mark.faults
@pytest.mark.parametrize("status", [429, 500])
def test_429_and_500_are_retried_and_retry_after_is_honoured(server, project, status):
    with FaultProxy(server.url, status=status, fail_batches=3, retry_after=1) as proxy:
        run = runstore.init_run(project=project, api_token=server.token, url=proxy.url, **QUIET)
        for i in range(500):
            run["loss"].append(i / 10)
        assert run.wait(60)
        uuid = run._info["uuid"]
        run.stop()
    batches = [(t, s) for t, p, s in proxy.log if p.endswith("/batch")]
    assert [s for _t, s in batches[:3]] == [status] * 3
    assert any(s == 200 for _t, s in batches)
    if status == 429:
        gaps = [b[0] - a[0] for a, b in zip(batches, batches[1:4], strict=False)]
        assert all(gap >= 0.9 for gap in gaps), gaps
    assert len(series(server, uuid, "loss")["values"]) == 500


@pytest.mark.faults
def test_failed_uploads_are_retried_with_the_whole_file(server, project, tmp_path):
    payload = os.urandom(3 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(payload)
    with FaultProxy(server.url, status=500, fail_batches=2, fail_suffix="/uploads") as proxy:
        run = runstore.init_run(project=project, api_token=server.token, url=proxy.url, **QUIET)
        run["model/weights"].upload(str(tmp_path / "big.bin"))
        assert run.wait(60)
        target = run["model/weights"].download(str(tmp_path / "back.bin"))
        run.stop()
    assert [s for _t, p, s in proxy.log if p.split("?")[0].endswith("/uploads")] == [500, 500, 201]
    assert target.read_bytes() == payload


@pytest.mark.faults
def test_an_invalid_operation_in_a_batch_drops_only_that_operation(connect, server, caplog):
    run = connect()
    run["a"] = 1
    run["x"] = "a string field"
    run["x"].append(0.5)  # the server refuses: x is a string, not a float series
    run["b"] = 2
    for i in range(10):
        run["s"].append(i)
    assert run.wait(30)
    uuid = run._info["uuid"]
    status = run.status()
    run.stop()
    stored = fields(server, uuid)
    assert stored["a"] == 1 and stored["b"] == 2 and stored["x"] == "a string field"
    assert stored["s"]["count"] == 10
    assert status["rejected_operations"] == 1
    assert caplog.text.count("rejected append 'x'") == 1


@pytest.mark.faults
def test_queue_size_limit_drops_new_operations_with_one_warning(server, monkeypatch, caplog):
    monkeypatch.setenv("RUNSTORE_MAX_QUEUE_BYTES", str(200_000))
    with FaultProxy(server.url) as proxy:
        run = runstore.init_run(project="alice/full", api_token=server.token, url=proxy.url, **QUIET)
        proxy.down = True
        for i in range(50_000):
            run["x"].append(float(i))
            if i % 5000 == 0:
                run.flush()
        run.flush()
        assert run.status()["dropped_operations"] > 0
        assert caplog.text.count("is full") == 1
        proxy.down = False
        assert run.wait(90)
        time.sleep(1.5)  # the writer re-measures the queue every second
        run["after"].extend([1.0, 2.0])  # room again: the sender deleted the acknowledged segments
        assert run.wait(30)
        assert "has room again" in caplog.text
        uuid = run._info["uuid"]
        run.stop()
    assert fields(server, uuid)["after"]["count"] == 2
    delivered = series(server, uuid, "x")["values"]
    assert 0 < len(delivered) < 50_000
    assert delivered == sorted(delivered)


@pytest.fixture()
def tiny_disk(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.faults
def test_a_full_disk_never_raises_into_training_code(tiny_disk, server, project, monkeypatch, caplog):
    monkeypatch.setenv("RUNSTORE_HOME", str(tiny_disk))
    with FaultProxy(server.url) as proxy:
        run = runstore.init_run(project=project, api_token=server.token, url=proxy.url, **QUIET)
        proxy.down = True
        text = "x" * 1000
        for i in range(3000):
            run["logs"].append(f"{i} {text}")
            if i % 300 == 0:
                run.flush()
        run.flush()
        assert run.status()["errors"] > 0
        assert "No space left" in caplog.text
        proxy.down = False
        assert run.wait(60)
        uuid = run._info["uuid"]
        run.stop(timeout=30)
    count = fields(server, uuid)["logs"]["count"]
    assert 0 < count < 3000


CHILD = textwrap.dedent("""
    import sys, time, runstore
    url, token, project = sys.argv[1:4]
    run = runstore.init_run(project=project, api_token=token, url=url, name="killed", flush_period=0.1,
                            capture_stdout=False, capture_stderr=False, capture_hardware_metrics=False,
                            capture_source=False, capture_environment=False)
    run["parameters"] = {"lr": 0.1}
    for i in range(20000):
        run["train/loss"].append(float(i))
    run.flush()
    print(run["sys/id"].fetch(), flush=True)
    time.sleep(600)
""")


def killed_child(tmp_path, server, proxy_url, home):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "RUNSTORE_HOME": str(home)}
    child = subprocess.Popen(
        [PYTHON, str(script), proxy_url, server.token, "alice/killed"], stdout=subprocess.PIPE, env=env, text=True
    )
    run_id = child.stdout.readline().strip()
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    child.stdout.close()
    return run_id


@pytest.mark.faults
def test_sigkill_after_flush_then_runstore_sync_delivers_everything_once(tmp_path, server, isolated_home):
    with FaultProxy(server.url, fail_batches=10**9) as proxy:  # nothing gets through before the kill
        run_id = killed_child(tmp_path, server, proxy.url, isolated_home)
    assert run_id
    env = {**os.environ, "RUNSTORE_HOME": str(isolated_home), "RUNSTORE_API_TOKEN": server.token}
    status = subprocess.run(
        [PYTHON, "-m", "runstore.cli", "status"], env=env, capture_output=True, text=True, timeout=60
    )
    assert "pending" in status.stdout and "20002" not in status.stdout
    result = subprocess.run(
        [PYTHON, "-m", "runstore.cli", "--url", server.url, "sync"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "synced" in result.stdout
    ref = f"alice/killed/{run_id}"
    assert series(server, ref, "train/loss")["values"] == [float(i) for i in range(20000)]
    assert fields(server, ref)["parameters/lr"] == 0.1
    again = subprocess.run(
        [PYTHON, "-m", "runstore.cli", "--url", server.url, "sync"], env=env, capture_output=True, text=True, timeout=60
    )
    assert "nothing to sync" in again.stdout


@pytest.mark.faults
def test_sigkill_then_resume_with_id_delivers_the_rest_and_continues_steps(tmp_path, server, isolated_home):
    with FaultProxy(server.url, fail_batches=10**9) as proxy:
        run_id = killed_child(tmp_path, server, proxy.url, isolated_home)
    with runstore.init_run(
        project="alice/killed", with_id=run_id, api_token=server.token, url=server.url, **QUIET
    ) as run:
        run["train/loss"].append(-1.0)
        assert run.wait(60)
        assert run["train/loss"].fetch_values()["step"].iloc[-1] == 20000
    values = series(server, f"alice/killed/{run_id}", "train/loss")["values"]
    assert values == [float(i) for i in range(20000)] + [-1.0]


CTRL_C_CHILD = textwrap.dedent("""
    import signal, sys, runstore
    # Ctrl-C raises KeyboardInterrupt as in a terminal, also when the suite itself was started as a
    # background job (a non-interactive shell starts those with SIGINT ignored, and children inherit it)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    url, token = sys.argv[1:3]
    run = runstore.init_run(project="alice/ctrlc", api_token=token, url=url, capture_stdout=False, capture_stderr=False,
                            capture_hardware_metrics=False, capture_source=False, capture_environment=False)
    print(run["sys/id"].fetch(), flush=True)
    sys.stdin.readline()  # the test has taken the server away: every point below is still unsent at stop()
    for i in range(5000):
        run["loss"].append(float(i))
    print("stopping", file=sys.stderr, flush=True)  # the test interrupts only once stop() is waiting
    run.stop()
    print("stopped", flush=True)
""")


@pytest.mark.faults
def test_ctrl_c_twice_abandons_the_wait_and_keeps_the_queue(tmp_path, server, isolated_home):
    script = tmp_path / "ctrlc.py"
    script.write_text(CTRL_C_CHILD)
    env = {**os.environ, "RUNSTORE_HOME": str(isolated_home), "RUNSTORE_MAX_BACKOFF": "2"}
    with FaultProxy(server.url) as proxy:
        child = subprocess.Popen(
            [PYTHON, str(script), proxy.url, server.token],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            run_id = child.stdout.readline().strip()
            proxy.down = True
            child.stdin.write("go\n")
            child.stdin.flush()
            while "stopping" not in (line := child.stderr.readline()):
                assert line, "the child exited before it stopped the run"
            time.sleep(1.5)  # the child is in stop(), waiting for the server
            child.send_signal(signal.SIGINT)
            line, seen = "", []
            while "again" not in line:
                line = child.stderr.readline()
                seen.append(line)
                assert line, (
                    "the child exited before asking for a second Ctrl-C: "
                    f"exit {child.wait(timeout=30)}, stdout {child.stdout.read()!r}, stderr {''.join(seen)!r}"
                )
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)
            for pipe in (child.stdin, child.stdout, child.stderr):  # a failure here leaves no file behind
                with contextlib.suppress(OSError):
                    pipe.close()
    assert "stopped" in out, err
    assert "runstore sync" in err
    env["RUNSTORE_API_TOKEN"] = server.token
    result = subprocess.run(
        [PYTHON, "-m", "runstore.cli", "--url", server.url, "sync"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    values = series(server, f"alice/ctrlc/{run_id}", "loss")["values"]
    assert values == [float(i) for i in range(5000)]
    assert fields(server, f"alice/ctrlc/{run_id}")["sys/state"] == "finished"

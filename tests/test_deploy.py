"""The production process model (deploy/): one celery beat schedules however many run."""

import os
import secrets
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _redis_url():
    url = os.environ.get("RUNSTORE_TEST_REDIS_URL")
    if not url:
        pytest.skip("RUNSTORE_TEST_REDIS_URL not set (make test starts Redis)")
    return url


def _start_beat(env, tmp_path, name):
    log = tmp_path / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/celery"),
                "-A",
                "tests.beat_app",
                "beat",
                "-l",
                "INFO",
                "--max-interval",
                "1",
                "-s",
                str(tmp_path / f"{name}-schedule"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log


def _wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _sent(log: Path) -> int:
    return log.read_text().count("Sending due task tick")


TTL = 6  # seconds; the holder renews every 2 s, so a busy machine does not lose the lock by accident


def test_two_beats_only_one_schedules_and_the_other_takes_over_when_it_dies(tmp_path):
    import redis

    url = _redis_url()
    queue, key = f"test-beat-{uuid.uuid4().hex[:8]}", f"test:beat-lock:{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'beat.sqlite3'}",
        RUNSTORE_VAR_DIR=str(tmp_path / "var"),
        CELERY_BROKER_URL=url,
        RUNSTORE_BEAT_LOCK_KEY=key,
        RUNSTORE_BEAT_LOCK_TTL=str(TTL),
        RUNSTORE_TEST_BEAT_QUEUE=queue,
        PYTHONPATH=str(ROOT),
    )
    store = redis.Redis.from_url(url)
    beats = [_start_beat(env, tmp_path, name) for name in ("first", "second")]
    try:

        def scheduling():
            for proc, log in beats:
                assert proc.poll() is None, log.read_text()[-3000:]
            return any(_sent(log) >= 2 for _, log in beats)

        _wait_for(scheduling, 30, "a beat to schedule")
        time.sleep(1.5)  # both have been up for a few lock renewals
        holders = [(proc, log) for proc, log in beats if _sent(log)]
        assert len(holders) == 1, [log.read_text()[-2000:] for _, log in beats]
        (holder, holder_log), (_, standby_log) = holders[0], next(b for b in beats if b not in holders)
        assert "standing by" in standby_log.read_text()
        assert 0 < store.llen(queue) <= _sent(holder_log), "every message on the queue came from the one holder"

        os.killpg(holder.pid, signal.SIGKILL)  # no release: the lock must expire
        holder.wait(10)
        killed_at = time.monotonic()
        _wait_for(lambda: _sent(standby_log) >= 1, 20, "the standby beat to take over")
        assert time.monotonic() - killed_at < TTL + 4, "taken over within about one lock TTL"
        assert "beat lock acquired" in standby_log.read_text()
    finally:
        for proc, _ in beats:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(15)
        store.delete(queue, key)


def _production_env(tmp_path) -> dict:
    """deploy/systemd/runstore.env.example, with its secret files and folders made under tmp_path."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    for line in (ROOT / "deploy/systemd/runstore.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    for name in [n for n in env if n.endswith("_FILE")]:
        secret = tmp_path / name.lower()
        secret.write_text(secrets.token_urlsafe(48))
        env[name] = str(secret)
    (tmp_path / "prometheus").mkdir()
    env.update(RUNSTORE_VAR_DIR=str(tmp_path / "var"), PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"))
    return env


def test_check_deploy_passes_with_the_documented_production_environment(tmp_path):
    env = _production_env(tmp_path)
    assert env["DATABASE_REPLICA_URL"] and env["RUNSTORE_LOG_FORMAT"] == "json"
    result = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output and "WARNING" not in output


def test_gunicorn_takes_its_processes_from_the_environment(tmp_path):
    env = {**_production_env(tmp_path), "GUNICORN_WORKERS": "3", "GUNICORN_BIND": "127.0.0.1:8123"}
    result = subprocess.run(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "--print-config",
            "-c",
            "deploy/gunicorn.conf.py",
            "tracker.wsgi:application",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    config = {k.strip(): v for k, v in (line.split(" = ", 1) for line in result.stdout.splitlines() if " = " in line)}
    assert config["workers"].strip() == "3" and config["bind"].strip() == "['127.0.0.1:8123']"
    assert config["threads"].strip() == "4"


def test_procfile_and_units_run_a_worker_for_every_queue():
    from tracker.celery import QUEUES

    procfile = (ROOT / "deploy/Procfile").read_text()
    for queue in QUEUES:
        assert f"-Q {queue} " in procfile, queue
    assert "celery -A tracker beat" in procfile
    assert "%i" in (ROOT / "deploy/systemd/runstore-worker@.service").read_text()

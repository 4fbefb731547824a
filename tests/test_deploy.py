"""The production process model (deploy/): one celery beat schedules however many run."""

import os
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
        RUNSTORE_BEAT_LOCK_TTL="3",
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
        _wait_for(lambda: _sent(standby_log) >= 2, 15, "the standby beat to take over")
        assert time.monotonic() - killed_at < 3 + 3, "taken over within about one lock TTL"
        assert "beat lock acquired" in standby_log.read_text()
    finally:
        for proc, _ in beats:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(15)
        store.delete(queue, key)

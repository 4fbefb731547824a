"""The read replica for real: a PostgreSQL streaming replica (pg_basebackup -R) of a primary, both
small clusters of their own, made and removed by the fixture; Runstore under gunicorn with
DATABASE_URL and DATABASE_REPLICA_URL. Replay on the replica is paused to make it lag: a token
that did not write reads the old data (from the replica), the token that wrote reads its run.

Opt-in (about a minute, needs root and the PostgreSQL server binaries):
RUNSTORE_TEST_STREAMING_REPLICA=1 pytest tests/test_streaming_replica.py
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
PRIMARY_PORT, REPLICA_PORT, WEB_PORT = 55497, 55498, 18597

pytestmark = pytest.mark.skipif(
    os.environ.get("RUNSTORE_TEST_STREAMING_REPLICA") != "1", reason="opt-in: RUNSTORE_TEST_STREAMING_REPLICA=1"
)


def _bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found or os.geteuid() != 0 or not shutil.which("runuser"):
        pytest.skip("needs root, runuser and the PostgreSQL server binaries")
    return found[-1]


def _as_postgres(*args, **kwargs):
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, text=True, **kwargs
    )


def _sql(port, sql, db="postgres"):
    return _as_postgres(
        _bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", db, "-XAtc", sql
    ).stdout.strip()


def _start(data, port, log):
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={data.parent} "
        "-c shared_preload_libraries=timescaledb -c fsync=off -c hot_standby=on"
    )
    _as_postgres(_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start")


@pytest.fixture(scope="module")
def clusters():
    base = Path(tempfile.mkdtemp(prefix="runstore-replica-"))
    shutil.chown(base, "postgres")
    primary, replica = base / "primary", base / "replica"
    try:
        _as_postgres(_bin("initdb"), "-D", str(primary), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        _start(primary, PRIMARY_PORT, base / "primary.log")
        _sql(PRIMARY_PORT, "CREATE DATABASE runstore")
        _as_postgres(
            _bin("pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(PRIMARY_PORT),
            "-U",
            "postgres",
            "-D",
            str(replica),
            "-R",
        )
        _start(replica, REPLICA_PORT, base / "replica.log")
        yield base
    finally:
        for data in (replica, primary):
            if (data / "postmaster.pid").exists():
                subprocess.run(
                    ["runuser", "-u", "postgres", "--", _bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
                )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def server(clusters):
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{PRIMARY_PORT}/runstore",
        DATABASE_REPLICA_URL=f"postgres://postgres@127.0.0.1:{REPLICA_PORT}/runstore",
        RUNSTORE_TIMESCALEDB="required",
        RUNSTORE_VAR_DIR=str(clusters / "var"),
        RUNSTORE_REPLICA_PIN_SECONDS="30",
    )
    py = str(ROOT / ".venv/bin/python")
    subprocess.run([py, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300)
    made = subprocess.run(
        [
            py,
            "manage.py",
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; from projects import services as s; from accounts.models import ApiToken\n"
            "u = get_user_model().objects.create_user('owner', password='x'); ws = s.create_workspace(u, 'acme')\n"
            "s.create_project(u, ws, 'vision', key='VIS')\n"
            "print(ApiToken.issue(u, name='writer')[1]); print(ApiToken.issue(u, name='reader')[1])",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    writer, reader = made.stdout.split()[-2:]
    log = open(clusters / "gunicorn.log", "w")
    web = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "-c", "deploy/gunicorn.conf.py", "tracker.wsgi:application"],
        cwd=ROOT,
        env={**env, "GUNICORN_BIND": f"127.0.0.1:{WEB_PORT}", "GUNICORN_WORKERS": "2"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", WEB_PORT), timeout=1).close()
            break
        except OSError:
            assert web.poll() is None and time.monotonic() < deadline, (clusters / "gunicorn.log").read_text()
            time.sleep(0.2)
    yield f"http://127.0.0.1:{WEB_PORT}", writer, reader
    web.terminate()
    web.wait(30)
    log.close()


def names(url, token):
    response = requests.get(
        f"{url}/api/v1/runs/",
        params={"project": "acme/vision", "columns": "sys/name"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return sorted(r["name"] for r in response.json()["results"])


def create(url, token, name):
    response = requests.post(
        f"{url}/api/v1/runs/",
        json={"project": "acme/vision", "name": name},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text


def wait_for(check, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_streaming_replica_serves_reads_and_a_writer_reads_its_own_writes(server):
    url, writer, reader = server
    create(url, writer, "first")
    wait_for(lambda: names(url, reader) == ["first"], "the replica to replay the first run")

    _sql(REPLICA_PORT, "SELECT pg_wal_replay_pause()")
    try:
        create(url, writer, "second")
        assert _sql(PRIMARY_PORT, "SELECT count(*) FROM runs_run", db="runstore") == "2"
        assert names(url, reader) == ["first"], "a token that did not write reads the (paused) replica"
        assert names(url, writer) == ["first", "second"], "the token that wrote reads the primary"
    finally:
        _sql(REPLICA_PORT, "SELECT pg_wal_replay_resume()")
    wait_for(lambda: names(url, reader) == ["first", "second"], "the replica to catch up")

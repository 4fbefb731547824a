"""A whole Runstore deployment of its own for fault tests: a PostgreSQL + TimescaleDB cluster, Redis, a
gunicorn web server and a Celery worker, each a process this harness starts, kills and restarts.

Nothing here is shared with the other suites (their PostgreSQL, Redis and servers keep running while
these are restarted): the cluster lives in a temporary directory on its own port, Redis likewise.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], object], *, timeout: float, what: str, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A process in its own session (killed as a group), its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Postgres:
    """A throwaway cluster owned by the ``postgres`` user, trust authentication on 127.0.0.1."""

    def __init__(self) -> None:
        self.bin = pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="runstore-faults-pg-", dir="/tmp"))
        self.data = self.dir / "data"
        self.port = free_port()

    def _as_postgres(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, check=check, timeout=120
        )

    def init(self) -> None:
        assert self.bin is not None
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "runstore", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                "shared_preload_libraries = 'timescaledb'\nfsync = off\nsynchronous_commit = off\n"
                "full_page_writes = off\ntimescaledb.telemetry_level = off\n"
            )
        self.start()
        subprocess.run(
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "runstore", "runstore"],
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        return f"postgres://runstore@127.0.0.1:{self.port}/runstore"

    def start(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = spawn(
            # As production runs it (deploy/): every write in the append-only file, so queued tasks
            # survive a restart.
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.root),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            self.root / "redis.log",
        )
        import redis

        client = redis.Redis.from_url(self.url)
        wait_for(lambda: _ping(client), timeout=20, what="redis")

    def stop(self) -> None:
        """SIGKILL: what a crash or an OOM kill does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def _ping(client: object) -> bool:
    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not up yet
        return False


class Stack:
    """The deployment. ``env`` is what every server process gets; ``start()`` brings all of it up."""

    def __init__(self, root: Path, *, blob_dir: Path | None = None, extra_env: dict[str, str] | None = None):
        self.root = root
        self.pg = Postgres()
        self.redis = Redis(root)
        self.port = free_port()
        self.web: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.token = ""
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tracker.settings",
            "RUNSTORE_VAR_DIR": str(root / "var"),
            "RUNSTORE_TIMESCALEDB": "required",
            "RUNSTORE_STORAGE": "local",
            "RUNSTORE_BLOB_DIR": str(blob_dir or root / "blobs"),
            "CELERY_VISIBILITY_TIMEOUT": "3",
            "DATABASE_CONN_MAX_AGE": "60",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        for name in ("RUNSTORE_HOME", "RUNSTORE_API_TOKEN", "RUNSTORE_URL", "RUNSTORE_PROJECT"):
            self.env.pop(name, None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.pg.init()
        self.redis.start()
        self.env["DATABASE_URL"] = self.pg.url
        self.env["CELERY_BROKER_URL"] = self.redis.url
        self.env["CELERY_RESULT_BACKEND"] = self.redis.url
        (self.root / "var").mkdir(exist_ok=True)
        self.manage("migrate", "--noinput")
        out = self.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User; from django.core.management import call_command; "
            "User.objects.create_user('alice', password='pw'); call_command('createtoken', 'alice')",
        )
        self.token = out.strip().splitlines()[-1].strip()
        self.start_web()

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [str(VENV_BIN / "python"), "manage.py", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start_web(self, workers: int = 2) -> None:
        self.web = spawn(
            [
                str(VENV_BIN / "python"),
                "-m",
                "gunicorn",
                "tracker.wsgi:application",
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                str(workers),
                "--threads",
                "4",
                "--graceful-timeout",
                "2",
                "--timeout",
                "60",
                "--access-logfile",
                "-",
                "--access-logformat",
                "access %(m)s %(U)s %(s)s",
            ],
            self.root / "web.log",
            self.env,
        )
        wait_for(self._healthy, timeout=60, what="the web server")

    def _healthy(self) -> bool:
        assert self.web is not None
        if self.web.poll() is not None:
            raise RuntimeError((self.root / "web.log").read_text()[-3000:])
        try:
            return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def statuses(self, suffix: str) -> Counter[int]:
        """How many responses of each status the web server sent to requests whose path ends with ``suffix``."""
        seen: Counter[int] = Counter()
        for line in (self.root / "web.log").read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0] == "access" and parts[2].endswith(suffix):
                seen[int(parts[3])] += 1
        return seen

    def web_workers(self) -> list[int]:
        """The pids of gunicorn's worker processes (children of the master)."""
        import psutil

        assert self.web is not None
        return [child.pid for child in psutil.Process(self.web.pid).children()]

    def start_worker(self, queues: str = "ingest,media,maintenance") -> subprocess.Popen[bytes]:
        log = self.root / f"worker-{len(self.workers)}.log"
        proc = spawn(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "tracker",
                "worker",
                "-Q",
                queues,
                "-c",
                "1",
                "-P",
                "prefork",
                "-n",
                f"faults-{uuid.uuid4().hex[:8]}@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "INFO",
            ],
            log,
            self.env,
        )
        wait_for(lambda: b" ready." in log.read_bytes() or proc.poll() is not None, timeout=60, what="the worker")
        assert proc.poll() is None, log.read_text()[-3000:]
        self.workers.append(proc)
        return proc

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop(self) -> None:
        for proc in [*self.workers, *([self.web] if self.web else [])]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.redis.stop()
        self.pg.destroy()

    def api(self, method: str, path: str, **kwargs: object) -> requests.Response:
        return requests.request(  # type: ignore[arg-type]
            method, f"{self.url}/api/v1/{path}", headers={"Authorization": f"Bearer {self.token}"}, timeout=30, **kwargs
        )

"""Fixtures: a real Runstore server (Django + gunicorn) started from the repo, and client isolation."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

import runstore
import runstore._internal as internal
from runstore import lifecycle

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A Runstore server in a subprocess with its own SQLite database; can be stopped and started again."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "RUNSTORE_VAR_DIR": str(root),
            "DATABASE_URL": f"sqlite:///{root}/db.sqlite3",
            "DJANGO_SETTINGS_MODULE": "tracker.settings",
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("RUNSTORE_HOME", "RUNSTORE_API_TOKEN", "RUNSTORE_URL", "RUNSTORE_PROJECT"):
            self.env.pop(name, None)
        self.token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def setup(self, user: str = "alice") -> None:
        self.manage("migrate", "--noinput")
        # One Django start instead of two: create the user, then run `createtoken` in the same process.
        out = self.manage(
            "shell",
            "-c",
            (
                "from django.contrib.auth.models import User; from django.core.management import call_command; "
                f"User.objects.create_user({user!r}, password='pw'); call_command('createtoken', {user!r})"
            ),
        )
        self.token = out.strip().splitlines()[-1].strip()

    def start(self) -> None:
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the subprocess owns it
        self.process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "tracker.wsgi:application",
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                "2",
                "--threads",
                "4",
                "--graceful-timeout",
                "2",
                "--timeout",
                "120",
                "--preload",
            ],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {(self.root / 'server.log').read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None


@pytest.fixture(scope="session")
def server_template() -> Iterator[Server]:
    """A migrated database with the user alice and her token, copied by every server."""
    with tempfile.TemporaryDirectory(prefix="runstore-template-") as tmp:
        template = Server(Path(tmp))
        template.setup()
        yield template


def _server_from(template: Server, root: Path) -> Server:
    shutil.copy(template.root / "db.sqlite3", root / "db.sqlite3")
    srv = Server(root)
    srv.token = template.token
    return srv


@pytest.fixture(scope="session")
def server(server_template: Server) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="runstore-server-") as tmp:
        srv = _server_from(server_template, Path(tmp))
        srv.start()
        yield srv
        srv.stop()


@pytest.fixture()
def restartable_server(server_template: Server) -> Iterator[Server]:
    """A server of its own (same port and database across stop/start)."""
    with tempfile.TemporaryDirectory(prefix="runstore-server-") as tmp:
        srv = _server_from(server_template, Path(tmp))
        srv.start()
        yield srv
        srv.stop()


@pytest.fixture()
def configured_server(server_template: Server) -> Iterator[Callable[..., Server]]:
    """``make(**env)``: a server of its own started with extra settings (e.g. a quota); it can be
    stopped, given other settings (``srv.env``) and started again on the same database."""
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="runstore-server-") as tmp:

        def make(**env: str) -> Server:
            root = Path(tmp) / str(len(servers))
            root.mkdir()
            srv = _server_from(server_template, root)
            srv.env.update(env)
            servers.append(srv)
            srv.start()
            return srv

        yield make
        for srv in servers:
            srv.stop()


_counter = iter(range(1, 10**9))


@pytest.fixture()
def project(server: Server) -> str:
    return f"alice/p{next(_counter)}"


@pytest.fixture()
def connect(server: Server, project: str):
    """``init_run`` against the session server, without the slow captures unless asked."""

    def make(**kwargs):
        options = {
            "project": project,
            "api_token": server.token,
            "url": server.url,
            "capture_stdout": False,
            "capture_stderr": False,
            "capture_hardware_metrics": False,
            "capture_source": False,
            "capture_environment": False,
            "flush_period": 0.1,
        }
        options.update(kwargs)
        return runstore.init_run(**options)

    return make


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "rshome"
    monkeypatch.setenv("RUNSTORE_HOME", str(home))
    monkeypatch.setenv("RUNSTORE_MAX_BACKOFF", "2")
    for name in (
        "RUNSTORE_API_TOKEN",
        "RUNSTORE_URL",
        "RUNSTORE_PROJECT",
        "RUNSTORE_MODE",
        "RUNSTORE_CUSTOM_RUN_ID",
        "RUNSTORE_MAX_QUEUE_BYTES",
        "RUNSTORE_MAX_MEMORY_ITEMS",
        "RUNSTORE_MAX_MEMORY_BYTES",
        "RUNSTORE_STALL_TIMEOUT",
        "RUNSTORE_FETCH_TIMEOUT",
        "RUNSTORE_STOP_TIMEOUT",
        "RUNSTORE_MAX_RETRY_AFTER",
        "RUNSTORE_QUOTA_RETRY",
        "RUNSTORE_QUOTA_MAX_RETRY",
    ):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(autouse=True)
def fail_on_internal_errors(request: pytest.FixtureRequest) -> Iterator[list[BaseException]]:
    """Client tests fail on swallowed internal errors (bugs caught to protect the training job)."""
    errors: list[BaseException] = []
    internal.on_internal_error = errors.append
    internal.forget_warnings()
    yield errors
    for live in list(lifecycle.live):
        live.stop(timeout=30)
    internal.on_internal_error = None
    if errors and request.node.get_closest_marker("faults") is None:
        raise AssertionError(f"the client swallowed internal errors: {errors!r}") from errors[0]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: the test injects faults; swallowed errors are expected")
    logging.getLogger("runstore").setLevel(logging.INFO)

"""Integration tests run in the version matrix's virtualenvs (scripts/matrix.py), one framework release each.

scripts/matrix.py starts one live server for every cell and names it in RUNSTORE_TEST_SERVER_URL /
RUNSTORE_TEST_SERVER_TOKEN; without them (a developer running one module) the client suite's own session
server is started. Each test gets a project of its own, since several cells share one server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import runstore


class RunningServer:
    def __init__(self, url: str, token: str):
        self.url = url
        self.token = token


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    url, token = os.environ.get("RUNSTORE_TEST_SERVER_URL"), os.environ.get("RUNSTORE_TEST_SERVER_TOKEN")
    if url and token:
        yield RunningServer(url, token)
        return
    template = request.getfixturevalue("server_template")  # the client suite's live server
    root = Path(tempfile.mkdtemp(prefix="runstore-server-"))
    shutil.copy(template.root / "db.sqlite3", root / "db.sqlite3")
    srv = type(template)(root)
    srv.token = template.token
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def project(server: Any) -> str:
    return f"alice/it-{uuid.uuid4().hex[:12]}"


@pytest.fixture()
def init_kwargs(server: Any, project: str) -> dict[str, Any]:
    """What an integration passes to ``runstore.init_run``: this test's project, without the slow captures."""
    return {
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


@pytest.fixture()
def read_run(server: Any, project: str) -> Callable[[str], runstore.Run]:
    """The run with this id, read back from the server (read-only)."""

    def read(run_id: str) -> runstore.Run:
        return runstore.init_run(
            project=project, with_id=run_id, mode="read-only", api_token=server.token, url=server.url
        )

    return read


@pytest.fixture()
def read_project(server: Any, project: str) -> runstore.Project:
    return runstore.init_project(project=project, api_token=server.token, url=server.url)

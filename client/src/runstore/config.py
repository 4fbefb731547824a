"""Configuration: environment variables and their defaults, where disk queues live, the API client."""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._internal.api import Api
from ._internal.queue import QueueDir
from .exceptions import ConfigurationError, RunstoreError

MODES = ("async", "sync", "offline", "read-only", "debug")
DEFAULT_URL = "http://localhost:8000"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ConfigurationError(f"{name} must be positive, not {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """The bounds and timeouts of a live run, read once when it starts."""

    max_queue_bytes: int = 1 << 30  # the disk queue
    max_memory_items: int = 1_000_000  # the in-memory queue between the calls and the writer
    max_memory_bytes: int = 256 << 20
    stop_timeout: float = 300.0  # the longest stop()/exit waits for the server
    stall_timeout: float = 30.0  # stop()/exit gives up after this long without an acknowledgement
    sync_timeout: float = 60.0
    fetch_timeout: float = 60.0  # how long a read waits for what was logged (and for the run to exist)
    monitoring_interval: float = 5.0

    @classmethod
    def from_env(cls, *, stall_timeout: float | None = None) -> Settings:
        return cls(
            max_queue_bytes=int(
                _positive("RUNSTORE_MAX_QUEUE_BYTES", env_int("RUNSTORE_MAX_QUEUE_BYTES", cls.max_queue_bytes))
            ),
            max_memory_items=int(
                _positive("RUNSTORE_MAX_MEMORY_ITEMS", env_int("RUNSTORE_MAX_MEMORY_ITEMS", cls.max_memory_items))
            ),
            max_memory_bytes=int(
                _positive("RUNSTORE_MAX_MEMORY_BYTES", env_int("RUNSTORE_MAX_MEMORY_BYTES", cls.max_memory_bytes))
            ),
            stop_timeout=env_float("RUNSTORE_STOP_TIMEOUT", cls.stop_timeout),
            stall_timeout=_positive(
                "stall_timeout",
                float(stall_timeout)
                if stall_timeout is not None
                else env_float("RUNSTORE_STALL_TIMEOUT", cls.stall_timeout),
            ),
            sync_timeout=env_float("RUNSTORE_SYNC_TIMEOUT", cls.sync_timeout),
            fetch_timeout=env_float("RUNSTORE_FETCH_TIMEOUT", cls.fetch_timeout),
            monitoring_interval=env_float("RUNSTORE_MONITORING_INTERVAL", cls.monitoring_interval),
        )


def home() -> Path:
    """The directory holding the disk queues: ``RUNSTORE_HOME`` or ``./.runstore``."""
    return Path(os.environ.get("RUNSTORE_HOME") or ".runstore").resolve()


def queues_root(root: Path | None = None) -> Path:
    return (root or home()) / "queues"


def sync_command(queue_path: Path) -> str:
    """The exact command that sends what a queue directory holds (``<home>/queues/<queue>``)."""
    return f"runstore sync --path {shlex.quote(str(queue_path.parent.parent))}"


def token(api_token: str | None) -> str:
    value = api_token or os.environ.get("RUNSTORE_API_TOKEN")
    if not value:
        file = os.environ.get("RUNSTORE_API_TOKEN_FILE")
        if file:
            value = Path(file).read_text().strip()
    if not value:
        raise ConfigurationError("no API token: pass api_token= or set RUNSTORE_API_TOKEN")
    return value


def make_api(url: str | None, api_token: str | None) -> Api:
    return Api(url or os.environ.get("RUNSTORE_URL") or DEFAULT_URL, token(api_token))


def run_ref(with_id: str, project: str | None) -> str:
    if "/" in with_id or UUID_RE.match(with_id):
        return with_id
    if not project:
        raise ConfigurationError(
            f"with_id={with_id!r} needs project= (or RUNSTORE_PROJECT), or give 'workspace/project/{with_id}'"
        )
    return f"{project}/{with_id}"


def new_queue_dir(meta: dict[str, Any], root: Path | None = None) -> QueueDir:
    base = queues_root(root)
    base.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    qdir = QueueDir(base / f"{stamp}-{meta['stream'][:12]}")
    qdir.path.mkdir(parents=True)
    qdir.files.mkdir()
    qdir.write_meta(meta)
    if not qdir.try_lock():
        raise RunstoreError(f"cannot lock {qdir.path}")
    return qdir

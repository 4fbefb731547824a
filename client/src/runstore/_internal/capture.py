"""What a run records about itself: source code, environment, hardware metrics, stdout/stderr."""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import unquote, urlparse

from ..file import File
from . import bug, warn

if TYPE_CHECKING:
    from ..run import Run


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.decode("utf-8", "replace").strip()


def source_code(run: Run) -> None:
    """``source_code/``: git commit, branch, remote, dirty flag, diff (file), entry point and command line."""
    entry = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] not in ("", "-c", "-m") else None
    cwd = entry.parent if entry is not None and entry.exists() else Path.cwd()
    fields: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "working_dir": str(Path.cwd()),
    }
    if entry is not None:
        fields["entrypoint"] = str(entry)
    root = _git(["rev-parse", "--show-toplevel"], cwd)
    if root:
        commit = _git(["rev-parse", "HEAD"], cwd)
        git: dict[str, Any] = {"root": root}
        if commit:
            git["commit"] = commit
            git["message"] = (_git(["log", "-1", "--format=%s"], cwd) or "")[:1000]
            git["author"] = _git(["log", "-1", "--format=%an <%ae>"], cwd) or ""
        branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd)
        if branch:
            git["branch"] = branch
        remote = _git(["config", "--get", "remote.origin.url"], cwd)
        if remote:
            git["remote_url"] = remote
        status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
        git["dirty"] = bool(status)
        fields["git"] = git
    run["source_code"].assign(fields)
    if root and fields["git"].get("dirty"):
        diff = _git(["diff", "HEAD"], cwd)
        if diff:
            run["source_code/diff"].upload(File.from_content(diff + "\n", name="diff.patch", mime_type="text/x-diff"))
    if entry is not None and entry.is_file() and entry.stat().st_size < 10 * 1024 * 1024:
        run["source_code/files"].upload_files([entry])


def requirement(dist: Any) -> str:
    """A requirements-file line that installs ``dist`` again: ``name==version``, or as ``pip freeze`` writes
    it for a package installed from a folder, an archive or a VCS (PEP 610's ``direct_url.json``)."""
    name = dist.metadata["Name"]
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "null")
    except ValueError:
        direct = None
    if not isinstance(direct, dict) or not isinstance(direct.get("url"), str):
        return f"{name}=={dist.version}"
    url = direct["url"]
    if (direct.get("dir_info") or {}).get("editable"):
        return f"-e {unquote(urlparse(url).path) if url.startswith('file:') else url}"
    vcs = direct.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs") and vcs.get("commit_id"):
        return f"{name} @ {vcs['vcs']}+{url}@{vcs['commit_id']}"
    return f"{name} @ {url}"


def environment(run: Run) -> None:
    """``environment/``: Python, platform, hostname, CPU count and installed packages (a file)."""
    from importlib import metadata

    hostname = socket.gethostname()
    run["environment"].assign(
        {
            "python_version": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "executable": sys.executable,
            "platform": platform.platform(),
            "hostname": hostname,
            "cpu_count": os.cpu_count() or 0,
            "pid": os.getpid(),
        }
    )
    run["sys/hostname"] = hostname
    packages = sorted(
        {requirement(d) for d in metadata.distributions() if d.metadata and d.metadata["Name"]},
        key=str.lower,
    )
    run["environment/packages"].upload(File.from_content("\n".join(packages) + "\n", name="requirements.txt"))


class Monitor:
    """``monitoring/``: CPU %, memory, process RSS and (with NVML) GPU use, every ``interval`` seconds."""

    def __init__(self, run: Run, interval: float, namespace: str = "monitoring"):
        self.run = run
        self.interval = interval
        self.namespace = namespace
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="runstore-monitor", daemon=True)
        self._nvml: Any = None

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def _gpus(self) -> list[Any]:
        if self._nvml is False:
            return []
        if self._nvml is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception:  # noqa: BLE001 - no NVIDIA driver is the common case
                self._nvml = False
                return []
        nvml = self._nvml
        return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]

    def sample(self) -> None:
        import psutil

        ns = self.run[self.namespace]
        process = psutil.Process()
        memory = psutil.virtual_memory()
        ns["cpu"].append(psutil.cpu_percent(interval=None))
        ns["memory"].append(round((memory.total - memory.available) / 2**30, 4))
        ns["memory_percent"].append(memory.percent)
        ns["process_rss"].append(round(process.memory_info().rss / 2**30, 4))
        for index, handle in enumerate(self._gpus()):
            try:
                util = self._nvml.nvmlDeviceGetUtilizationRates(handle)
                mem = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                ns[f"gpu/{index}/utilization"].append(float(util.gpu))
                ns[f"gpu/{index}/memory"].append(round(mem.used / 2**30, 4))
            except Exception:  # noqa: BLE001
                continue

    def _loop(self) -> None:
        try:
            import psutil

            psutil.cpu_percent(interval=None)
            self.run[self.namespace]["memory_total"] = round(psutil.virtual_memory().total / 2**30, 4)
        except Exception as exc:  # noqa: BLE001
            bug(exc, "starting hardware monitoring")
            return
        while not self.stop_event.wait(self.interval):
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001
                bug(exc, "sampling hardware metrics")
                return


class StreamTee:
    """Wraps ``sys.stdout``/``sys.stderr``: writes go through unchanged, whole lines go to a string series."""

    def __init__(self, stream: TextIO, run: Run, path: str):
        self._stream = stream
        self._handler = run[path]
        self._buffer = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        try:
            if isinstance(text, str) and text:
                with self._lock:
                    self._buffer += text
                    if "\n" in self._buffer:
                        *lines, self._buffer = self._buffer.split("\n")
                        now = time.time()
                        for line in lines:
                            if line.strip():
                                self._handler.append(line.rstrip("\r"), timestamp=now)
                    if len(self._buffer) > 16384:
                        self._handler.append(self._buffer)
                        self._buffer = ""
        except Exception as exc:  # noqa: BLE001 - printing must never fail because of the tracker
            warn(f"runstore: cannot capture output: {exc!r}", once_key="tee")
        return written

    def flush_line(self) -> None:
        with self._lock:
            if self._buffer.strip():
                try:
                    self._handler.append(self._buffer)
                except Exception:  # noqa: BLE001
                    pass
            self._buffer = ""

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

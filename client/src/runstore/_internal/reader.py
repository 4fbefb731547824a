"""Reading a run's fields, series and files from the server (and from a debug run's memory)."""

from __future__ import annotations

import datetime as dt
import os
import unicodedata
from collections.abc import Callable
from pathlib import Path, PureWindowsPath
from typing import Any

from ..exceptions import NotFoundError
from . import warn
from .api import Api
from .progress import Progress


def _to_datetime(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


def _float(value: Any) -> Any:
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    return value


def field_value(field: dict[str, Any]) -> Any:
    """A field as Python: series → last value, datetime → datetime, string set → set."""
    kind, value = field.get("type"), field.get("value")
    if kind == "datetime":
        return _to_datetime(value)
    if kind == "string_set":
        return set(value or [])
    if kind == "float":
        return _float(value)
    if kind in ("float_series", "string_series") and isinstance(value, dict):
        return _float(value.get("last"))
    return value


def nest(fields: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cut = len(prefix) + 1 if prefix else 0
    for field in fields:
        parts = field["path"][cut:].split("/")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                child = node[part] = {"": child}
            node = child
        node[parts[-1]] = field_value(field)
    return out


def _bad_char(text: str) -> bool:
    return any(c in "\\\x00" or unicodedata.category(c) in ("Cc", "Cs") for c in text)


def safe_base_name(name: Any, fallback: str) -> str:
    """``name`` as a plain file name (its last path part); ``fallback`` when nothing usable is left."""
    base = str(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    if base in ("", ".", "..") or _bad_char(base):
        return fallback
    return base


def contained(base: Path, relpath: Any) -> Path | None:
    """``base / relpath`` when ``relpath`` is a plain relative POSIX path that stays inside the
    (resolved) folder ``base`` once symlinks are followed, else None."""
    if not isinstance(relpath, str) or not relpath or _bad_char(relpath):
        return None
    parts = relpath.split("/")
    if any(part in ("", ".", "..") for part in parts) or PureWindowsPath(relpath).drive:
        return None
    target = base.joinpath(*parts)
    try:
        target.resolve().relative_to(base)
    except (ValueError, OSError, RuntimeError):
        return None
    return target


def require_pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("this needs pandas: pip install 'runstore[extras]'") from exc
    return pandas


class Reader:
    def __init__(self, api: Api, run_ref: str):
        self.api = api
        self.ref = run_ref

    def fields(self) -> list[dict[str, Any]]:
        return list(self.api.call("GET", f"runs/{self.ref}/attributes")["fields"])

    def fetch(self, path: str = "") -> Any:
        fields = self.fields()
        for field in fields:
            if field["path"] == path:
                return field_value(field)
        under = [f for f in fields if not path or f["path"].startswith(path + "/")]
        if under:
            return nest(under, path)
        raise NotFoundError(404, "not_found", f"run {self.ref} has no field {path!r}")

    def exists(self, path: str) -> bool:
        return any(f["path"] == path or f["path"].startswith(path + "/") for f in self.fields())

    def points(self, path: str, limit: int | None = None) -> dict[str, list[Any]]:
        steps: list[int] = []
        values: list[Any] = []
        timestamps: list[float] = []
        after = None
        while True:
            page_limit = 10_000 if limit is None else min(10_000, limit - len(steps))
            if page_limit <= 0:
                break
            params: dict[str, Any] = {"path": path, "limit": page_limit}
            if after is not None:
                params["after_step"] = after
            page = self.api.call("GET", f"runs/{self.ref}/series/points", params=params)
            steps += page["steps"]
            values += [_float(v) for v in page["values"]]
            timestamps += page["timestamps"]
            after = page.get("next_after_step")
            if after is None:
                break
        return {"step": steps, "value": values, "timestamp": timestamps}

    def fetch_values(self, path: str, *, include_timestamp: bool = True, limit: int | None = None) -> Any:
        pandas = require_pandas()
        data = self.points(path, limit)
        frame = pandas.DataFrame({"step": data["step"], "value": data["value"]})
        if include_timestamp:
            frame["timestamp"] = pandas.to_datetime(
                pandas.Series(data["timestamp"], dtype="float64"), unit="s", utc=True
            )
        return frame

    def files(self, path: str) -> list[dict[str, Any]]:
        return list(self.api.call("GET", f"runs/{self.ref}/files", params={"path": path})["files"])

    def download(
        self,
        path: str,
        destination: str | os.PathLike[str] | None,
        *,
        step: int | None = None,
        on_refused: Callable[[str], None] | None = None,
    ) -> Path:
        """Download a file, a file set or a file-series step. Nothing is written outside the destination,
        whatever names the server sends: a file set's entry that would land outside it (a relpath with
        ``..``, an absolute path, a symlink out of the folder) is skipped and a file's name is cut to a
        plain base name; each such refusal is logged and passed to ``on_refused`` (a run counts it as an
        error) rather than raised."""

        def refuse(message: str) -> None:
            warn(f"runstore: {message}")
            if on_refused is not None:
                on_refused(message)

        listing = self.api.call("GET", f"runs/{self.ref}/files", params={"path": path})
        kind, files = listing["type"], listing["files"]
        if kind == "file_set":
            root = Path(destination or safe_base_name(path.rsplit("/", 1)[-1], "files"))
            base = root.resolve()
            for entry in files:
                relpath = entry.get("relpath")
                target = contained(base, relpath)
                if target is None:
                    refuse(f"{path}: the file {relpath!r} would be written outside {str(root)!r}; it is skipped")
                    continue
                self._download_one(path, target, {"relpath": relpath})
            return root
        params: dict[str, Any] = {}
        entry = files[0] if files else {}
        if kind == "file_series":
            if step is None:
                step = files[-1]["step"] if files else 0
            params["step"] = step
            entry = next((f for f in files if f["step"] == step), entry)
        fallback = safe_base_name(path.rsplit("/", 1)[-1], "file")
        sent = entry.get("name") or fallback
        name = safe_base_name(sent, fallback)
        if name != sent:
            refuse(f"{path}: the server's file name {sent!r} is not a plain file name; saving it as {name!r}")
        target = Path(destination) if destination is not None else Path(name)
        if destination is not None and (target.is_dir() or str(destination).endswith(("/", os.sep))):
            target = target / name
        return self._download_one(path, target, params)

    def _download_one(self, path: str, target: Path, params: dict[str, Any]) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        response = self.api.call_raw(
            "GET", f"runs/{self.ref}/files/download", params={"path": path, **params}, stream=True
        )
        tmp = target.with_name(f".{target.name}.part")
        size = int(response.headers.get("Content-Length") or 0)
        progress = Progress(f"downloading {target.name}", total=size) if size > 16 * 1024 * 1024 else None
        done = 0
        with open(tmp, "wb") as f:
            for chunk in response.iter_content(1 << 20):
                f.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress.update(done)
        if progress is not None:
            progress.close()
        os.replace(tmp, target)
        return target


class DebugStore:
    """A debug run's fields, in memory: nothing leaves the process."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.series: dict[str, tuple[list[int], list[Any], list[float]]] = {}

    def apply(self, item: tuple[Any, ...]) -> None:
        path = item[0]
        if path is not None:
            steps, values, timestamps = self.series.setdefault(path, ([], [], []))
            step = item[2] if item[2] is not None else (steps[-1] + 1 if steps else 0)
            if steps and step <= steps[-1]:
                return
            steps.append(step)
            values.append(item[1])
            timestamps.append(item[3])
            return
        kind = item[1]
        if kind == "assign":
            value = item[4]
            self.fields[item[2]] = (
                set(value) if item[3] == "string_set" else _to_datetime(value) if item[3] == "datetime" else value
            )
        elif kind == "file":
            self.fields[item[2]] = item[3]
        elif kind == "add_tags":
            self.fields[item[2]] = set(self.fields.get(item[2]) or ()) | set(item[3])
        elif kind == "remove_tags":
            self.fields[item[2]] = set(self.fields.get(item[2]) or ()) - set(item[3])
        elif kind == "delete":
            self.fields.pop(item[2], None)
            self.series.pop(item[2], None)
        elif kind == "upload_set":
            self.fields[item[2]] = {relpath: file for relpath, file in item[3]}

    def fetch(self, path: str = "") -> Any:
        if path in self.fields:
            return self.fields[path]
        if path in self.series:
            return self.series[path][1][-1]
        out: dict[str, Any] = {}
        items = list(self.fields.items()) + [(p, s[1][-1]) for p, s in self.series.items() if s[1]]
        for key, value in items:
            if path and not key.startswith(path + "/"):
                continue
            node = out
            parts = key[len(path) + 1 if path else 0 :].split("/")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        if not out:
            raise NotFoundError(404, "not_found", f"this debug run has no field {path!r}")
        return out

    def exists(self, path: str) -> bool:
        try:
            self.fetch(path)
            return True
        except NotFoundError:
            return False

    def fetch_values(self, path: str, *, include_timestamp: bool = True, limit: int | None = None) -> Any:
        pandas = require_pandas()
        steps, values, timestamps = self.series.get(path, ([], [], []))
        frame = pandas.DataFrame({"step": steps[:limit], "value": values[:limit]})
        if include_timestamp:
            frame["timestamp"] = pandas.to_datetime(
                pandas.Series(timestamps[:limit], dtype="float64"), unit="s", utc=True
            )
        return frame

    def files(self, path: str) -> list[dict[str, Any]]:
        raise NotFoundError(404, "not_found", "a debug run stores no files")

    def download(self, path: str, destination: Any, *, step: int | None = None, on_refused: Any = None) -> Path:
        raise NotFoundError(404, "not_found", "a debug run stores no files")

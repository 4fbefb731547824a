"""``Handler``: what ``run["some/path"]`` returns; writes and reads one field or namespace."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._internal.values import (
    append_value,
    assign_value,
    check_path,
    check_step,
    check_timestamp,
    clean_string,
    flatten,
    join,
    to_list,
)
from ._internal.writer import point_bytes
from .file import File

if TYPE_CHECKING:
    from .run import Run

_FAST = frozenset((float, int, str))
_NUMBERS = frozenset((float, int))
_now = time.time


class Handler:
    """A field (or namespace) of a run: ``run["train/loss"]``."""

    __slots__ = ("_run", "_path", "_writable")

    def __init__(self, run: Run, path: str):
        self._run = run
        self._path = path
        self._writable = not path.startswith("sys/") or path in {
            "sys/name",
            "sys/description",
            "sys/tags",
            "sys/failure",
            "sys/hostname",
            "sys/group_tags",
        }

    def __repr__(self) -> str:
        return f"<Handler {self._path!r} of {self._run!r}>"

    @property
    def path(self) -> str:
        return self._path

    def __getitem__(self, key: str) -> Handler:
        return self._run[join(self._path, key)]

    def __setitem__(self, key: str, value: Any) -> None:
        self._run[join(self._path, key)].assign(value)

    def _check_writable(self) -> None:
        if not self._writable:
            check_path(self._path, write=True)

    # -- writes -----------------------------------------------------------------
    def assign(self, value: Any, *, wait: bool = False) -> None:
        """Set the field; a dict sets a namespace of fields (every leaf is checked before any is queued)."""
        leaves: list[tuple[str, Any]] = []
        if isinstance(value, dict):
            flatten(self._path, value, leaves)
        else:
            leaves.append((self._path, value))
        items: list[tuple[Any, ...]] = []
        for path, leaf in leaves:
            check_path(path, write=True)
            kind, converted = assign_value(path, leaf)
            if kind == "file":
                items.append((None, "file", path, converted))
            else:
                items.append((None, "assign", path, kind, converted))
        put = self._run._put_op
        for item in items:
            put(item)
        if wait:
            self._run.wait()

    def append(self, value: Any, step: Any = None, timestamp: Any = None, *, wait: bool = False) -> None:
        """Add a point to a series; the step defaults to the last step + 1 (0 first)."""
        sized = type(value) not in _NUMBERS  # strings and images count against the in-memory byte bound
        if sized:
            if type(value) is dict:
                for key, sub in value.items():
                    self[str(key)].append(sub, step=step, timestamp=timestamp)
                if wait:
                    self._run.wait()
                return
            if type(value) is not str:
                value = append_value(self._path, value)
        if not self._writable:
            self._check_writable()
        if step is not None:
            step = check_step(self._path, step)
        item = (self._path, value, step, _now() if timestamp is None else check_timestamp(self._path, timestamp))
        if sized:
            self._run._put_sized(item, point_bytes(value))
        else:
            self._run._put(item)
        if wait:
            self._run.wait()

    def extend(self, values: Any, steps: Any = None, timestamps: Any = None, *, wait: bool = False) -> None:
        """Append many points: a list, numpy array or pandas Series; optional ``steps``/``timestamps`` of the same length."""
        self._check_writable()
        items = [v if type(v) in _FAST else append_value(self._path, v) for v in to_list(self._path, values)]
        n = len(items)
        step_list: list[Any] = [None] * n
        if steps is not None:
            step_list = [check_step(self._path, s) for s in to_list(self._path, steps, "steps")]
            if len(step_list) != n:
                raise ValueError(f"{self._path}: {len(step_list)} steps for {n} values")
            if any(b <= a for a, b in zip(step_list, step_list[1:], strict=False)):
                raise ValueError(f"{self._path}: steps must increase strictly")
        now = _now()
        ts_list: list[float] = [now] * n
        if timestamps is not None:
            ts_list = [check_timestamp(self._path, t) for t in to_list(self._path, timestamps, "timestamps")]
            if len(ts_list) != n:
                raise ValueError(f"{self._path}: {len(ts_list)} timestamps for {n} values")
        put = self._run._put
        put_sized = self._run._put_sized
        path = self._path
        for value, step, ts in zip(items, step_list, ts_list, strict=True):
            t = type(value)
            if t is float or t is int:
                put((path, value, step, ts))
            else:
                put_sized((path, value, step, ts), point_bytes(value))
        if wait:
            self._run.wait()

    log = append

    def add(self, values: str | list[str] | tuple[str, ...] | set[str], *, wait: bool = False) -> None:
        """Add strings to a string set (e.g. ``run["sys/tags"].add(["best"])``)."""
        self._tags("add_tags", values, wait)

    def remove(self, values: str | list[str] | tuple[str, ...] | set[str], *, wait: bool = False) -> None:
        self._tags("remove_tags", values, wait)

    def _tags(self, op: str, values: Any, wait: bool) -> None:
        self._check_writable()
        items = [values] if isinstance(values, str) else to_list(self._path, values)
        bad = [v for v in items if not isinstance(v, str)]
        if bad:
            raise TypeError(f"{self._path}: a string set holds str, not {type(bad[0]).__name__}")
        self._run._put_op((None, op, self._path, [clean_string(v)[:1024] for v in items]))
        if wait:
            self._run.wait()

    def delete(self, *, wait: bool = False) -> None:
        check_path(self._path, write=True)
        self._run._put_op((None, "delete", self._path))
        if wait:
            self._run.wait()

    def upload(self, value: str | os.PathLike[str] | File | Any, *, wait: bool = False) -> None:
        """Upload one file: a path, a ``File``, or an image-like object (stored as PNG)."""
        self._check_writable()
        self._run._put_op((None, "file", self._path, _as_file(self._path, value)))
        if wait:
            self._run.wait()

    def upload_files(
        self, value: str | os.PathLike[str] | list[Any], *, replace: bool = False, wait: bool = False
    ) -> None:
        """A file set: every file under a directory (relative paths kept), a glob or a list of paths."""
        self._check_writable()
        files: list[tuple[str, File]] = []
        sources = [value] if isinstance(value, (str, os.PathLike)) else list(value)
        for source in sources:
            path = Path(source)
            if path.is_dir():
                files += [(p.relative_to(path).as_posix(), File(p)) for p in sorted(path.rglob("*")) if p.is_file()]
            elif path.is_file():
                files.append((path.name, File(path)))
            else:
                matches = sorted(p for p in Path().glob(str(source)) if p.is_file())
                if not matches:
                    raise FileNotFoundError(f"{self._path}: no file matches {str(source)!r}")
                files += [(p.as_posix(), File(p)) for p in matches]
        self._run._put_op((None, "upload_set", self._path, files, replace))
        if wait:
            self._run.wait()

    def track_files(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        role: str = "input",
        wait: bool = False,
    ) -> None:
        """Record an artifact version without uploading it: a directory, a file or ``s3://bucket/prefix``.

        Local files are hashed (SHA-256) in the background, in parallel, and unchanged files are not
        read again (a hash cache under ``RUNSTORE_HOME``); an S3 prefix is listed (keys, sizes, ETags)
        with boto3, nothing downloaded. ``role``: ``"input"`` (the run consumed it, the default) or
        ``"output"`` (it produced it); ``name`` groups the versions of one data set or model.

        Sets ``<field>/hash`` (the version), ``<field>/size``, ``<field>/file_count``,
        ``<field>/location`` and ``<field>/files`` (``relpath:hash:size`` strings), and sends the file
        list, which the server keeps as a version of the workspace with the runs that used it.
        """
        self._check_writable()
        if role not in ("input", "output"):
            raise ValueError(f"{self._path}: role must be 'input' or 'output', got {role!r}")
        if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 200):
            raise ValueError(f"{self._path}: name must be a string of 1-200 characters")
        root: Path | str
        if isinstance(path, str) and path.startswith("s3://"):
            if not path[5:].split("/", 1)[0]:
                raise ValueError(f"{self._path}: {path!r}: an S3 location is s3://bucket/prefix")
            root = path
        else:
            root = Path(path).resolve()
            if not root.exists():
                raise FileNotFoundError(f"{self._path}: {str(path)!r} does not exist")
        self._run._put_op((None, "track", self._path, root, name, role))
        if wait:
            self._run.wait()

    # -- reads ------------------------------------------------------------------
    def fetch(self) -> Any:
        """The field's value (a series gives its last value; a namespace gives a nested dict).

        ``sys/id`` of a live run is known as soon as the server created the run; while the server has
        not answered it waits at most ``RUNSTORE_FETCH_TIMEOUT`` seconds, then raises ``NetworkError``."""
        if self._path == "sys/id":
            return self._run._run_id()
        return self._run._reader().fetch(self._path)

    def fetch_last(self) -> Any:
        return self._run._reader().fetch(self._path)

    def fetch_values(self, *, include_timestamp: bool = True, limit: int | None = None) -> Any:
        """All points of a float or string series as a pandas DataFrame: step, value, timestamp."""
        return self._run._reader().fetch_values(self._path, include_timestamp=include_timestamp, limit=limit)

    def fetch_files_list(self) -> list[dict[str, Any]]:
        files: list[dict[str, Any]] = self._run._reader().files(self._path)
        return files

    def download(self, destination: str | os.PathLike[str] | None = None, *, step: int | None = None) -> Path:
        """Download a file (into ``destination``), a file set (into the directory ``destination``)
        or one step of a file series. Returns the local path.

        Nothing is written outside ``destination``: a file whose stored name would climb out of it is
        skipped (or saved under a plain name) and counted in ``run.status()["errors"]``."""
        target: Path = self._run._reader().download(
            self._path, destination, step=step, on_refused=self._run._stats.error
        )
        return target

    def exists(self) -> bool:
        return self._run.exists(self._path)


SNAPSHOT_BYTES = 4 * 1024 * 1024


def _snapshot(file: File) -> File:
    """Small files are read at the call, so a later change of the file does not matter;
    bigger ones are copied into the queue by the writer thread (within ``flush_period``)."""
    if file.path is not None and file.path.stat().st_size <= SNAPSHOT_BYTES:
        return File(content=file.path.read_bytes(), name=file.name, mime_type=file.mime_type)
    return file


def _as_file(path: str, value: Any) -> File:
    if isinstance(value, File):
        if value.path is not None and not value.path.is_file():
            raise FileNotFoundError(f"{path}: {value.path} is not a file")
        return _snapshot(value)
    if isinstance(value, (str, os.PathLike)):
        file = Path(value)
        if not file.is_file():
            raise FileNotFoundError(f"{path}: {str(value)!r} is not a file")
        return _snapshot(File(file))
    if isinstance(value, (bytes, bytearray)):
        return File(content=bytes(value), name=path.rsplit("/", 1)[-1])
    kind, converted = assign_value(path, value)
    if kind == "file":
        assert isinstance(converted, File)
        return converted
    converted = append_value(path, value)
    if isinstance(converted, File):
        return converted
    raise TypeError(
        f"cannot upload {type(value).__name__} to {path!r}; give a path, bytes, a runstore.File or an image"
    )

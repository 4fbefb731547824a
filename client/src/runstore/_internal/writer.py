"""The background writer: in-memory queue → MessagePack records → the on-disk queue.

The calling thread only appends tuples to a ``collections.deque`` (atomic
under the GIL, no lock). This thread drains it every few milliseconds,
assigns series steps, coalesces the appends of one drain into one
``append`` operation per series (columns ``values``, ``steps``,
``timestamps``), encodes them and appends them to the current segment; it
``fsync``s at least every ``flush_period`` and on ``flush()``.

Queue items:

* ``(path, value, step | None, timestamp)``: a series point;
* ``(None, kind, ...)``: every other operation, a flush marker, or a
  control record (upload a file, change the run state).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from itertools import groupby, repeat, starmap
from operator import itemgetter
from pathlib import Path
from typing import Any

import msgpack

from ..file import File
from . import bug, warn
from .queue import KIND_CTL, KIND_OP, SEGMENT_BYTES, QueueDir, SegmentWriter, encode_record
from .values import clean_string

POINTS_PER_OP = 50_000
DRAIN_ITEMS = 100_000
POLL_SECONDS = 0.05
COPY_LIMIT = 64 * 1024 * 1024
NUMBER_TYPES = frozenset((float, int))


def _all_numbers(values: list[Any]) -> bool:
    """Whether every value is an int or a float; the queue holds only float, int, str and File.

    ``sum`` runs one C loop over floats and ints (several times faster than collecting the
    types) and raises TypeError at the first str or File; an int too large for a float raises
    OverflowError, and the set of types decides.
    """
    try:
        sum(values, 0.0)
    except TypeError:
        return False
    except OverflowError:
        return set(map(type, values)) <= NUMBER_TYPES
    return True


class Stats:
    """Counters shared by a run's workers; read by ``Run.status()``."""

    def __init__(self) -> None:
        self.errors = 0
        self.dropped_ops = 0
        self.rejected_ops = 0
        self.written_ops = 0
        self.acked_ops = 0
        self.last_error: str | None = None

    def error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message


class FlushMarker:
    __slots__ = ("event", "position", "sync")

    def __init__(self, sync: bool = True):
        self.event = threading.Event()
        self.position: tuple[int, int] | None = None
        self.sync = sync


def sha256_file(path: Path, copy_to: Path | None = None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as src:
        dst = open(copy_to, "wb") if copy_to is not None else None  # noqa: SIM115
        try:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                if dst is not None:
                    dst.write(chunk)
        finally:
            if dst is not None:
                dst.close()
    return digest.hexdigest(), size


class Writer:
    def __init__(
        self,
        qdir: QueueDir,
        stats: Stats,
        *,
        flush_period: float = 1.0,
        max_bytes: int = 1 << 30,
        last_steps: dict[str, int] | None = None,
        on_written: Callable[[], None] | None = None,
        server_steps: bool = False,
    ):
        self.qdir = qdir
        self.stats = stats
        self.flush_period = max(0.01, float(flush_period))
        self.max_bytes = max_bytes
        self.last_steps: dict[str, int] = dict(last_steps or {})
        self.on_written = on_written
        # Offline resume: the series' last steps are unknown, so automatic steps of series
        # without a known last step are left to the server (it continues from its last step).
        self.server_steps = server_steps
        self.queue: deque[tuple[Any, ...]] = deque()
        self.segment: SegmentWriter | None = None
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._dirty = False
        self._last_sync = time.monotonic()
        self._disk_bytes = 0
        self._disk_checked = 0.0
        self._full = False
        self._full_at = 0
        self._bad_steps: set[str] = set()

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        self.qdir.files.mkdir(parents=True, exist_ok=True)
        try:
            # Small queue bounds get small segments, so acknowledged space is freed early.
            self.segment = SegmentWriter(self.qdir, min(SEGMENT_BYTES, max(64 * 1024, self.max_bytes // 8)))
        except OSError as exc:
            warn(f"runstore: cannot open the disk queue in {self.qdir.path}: {exc}; operations will be dropped")
            self.stats.error(str(exc))
        self._disk_bytes = self._measure()
        self._thread = threading.Thread(target=self._loop, name="runstore-writer", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def flush(self, timeout: float | None = None) -> tuple[int, int] | None:
        """Return the queue position once everything put so far is on disk (None on timeout)."""
        marker = FlushMarker()
        self.queue.append((None, "flush", marker))
        self._wake.set()
        if not marker.event.wait(timeout):
            return None
        return marker.position

    def close(self, timeout: float | None = None) -> None:
        self._closing = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self.segment is not None and not self.alive():
            self.segment.close()

    @property
    def position(self) -> tuple[int, int]:
        return self.segment.position if self.segment is not None else (0, 0)

    # -- the loop -------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            try:
                self.cycle()
            except Exception as exc:  # noqa: BLE001 - never let the worker die
                self.stats.error(repr(exc))
                bug(exc, "writing the disk queue")
            if self._closing and not self.queue:
                try:
                    self.cycle()
                except Exception as exc:  # noqa: BLE001
                    bug(exc, "writing the disk queue")
                return

    def cycle(self) -> None:
        markers: list[FlushMarker] = []
        queue = self.queue
        while queue:
            # popleft in a C-level loop: only this thread removes items, so n are there.
            items = list(starmap(queue.popleft, repeat((), min(len(queue), DRAIN_ITEMS))))
            try:
                self._encode(items, markers)
            except Exception as exc:  # noqa: BLE001 - the flush markers below must still be released
                self.stats.error(repr(exc))
                bug(exc, "encoding operations")
                markers += [item[2] for item in items if item[0] is None and item[1] == "flush"]
            self._write_out()
        now = time.monotonic()
        if self._dirty and (markers or now - self._last_sync >= self.flush_period):
            self._sync()
        if self._full and self.segment is not None and self.segment.offset > 0:
            # Seal the segment so that the sender can delete it once acknowledged.
            try:
                self.segment.rotate()
            except OSError as exc:
                self.stats.error(str(exc))
        for marker in markers:
            marker.position = self.position
            marker.event.set()
        if self.on_written is not None and (markers or self._dirty or self._out_bytes):
            self.on_written()

    def _sync(self) -> None:
        if self.segment is None:
            return
        try:
            self.segment.sync()
        except OSError as exc:
            self.stats.error(str(exc))
            warn(f"runstore: fsync of the disk queue failed: {exc}", once_key=f"fsync:{self.qdir.path}")
        self._dirty = False
        self._last_sync = time.monotonic()

    def _measure(self) -> int:
        try:
            return self.qdir.disk_bytes()
        except OSError:
            return 0

    # -- records --------------------------------------------------------------
    def _add(self, kind: int, points: int, payload: bytes, ops: int = 1) -> bool:
        now = time.monotonic()
        if now - self._disk_checked > 1.0:
            self._disk_bytes = self._measure()
            self._disk_checked = now
        size = len(payload) + 13
        used = self._disk_bytes + self._out_bytes
        # Once full, accept operations again only when the sender freed space (acknowledged
        # segments deleted) and 10% is free: one warning each way, no flapping.
        if self._full:
            refused = used >= self._full_at or used + size > self.max_bytes * 0.9
        else:
            refused = used + size > self.max_bytes
        if kind == KIND_OP and refused:
            self.stats.dropped_ops += ops
            if not self._full:
                self._full = True
                self._full_at = used
                self.stats.error("disk queue full")
                warn(
                    f"runstore: the disk queue {self.qdir.path} is full ({self.max_bytes} bytes, RUNSTORE_MAX_QUEUE_BYTES); "
                    "new operations are dropped until the server catches up"
                )
            return False
        if self._full and kind == KIND_OP:
            self._full = False
            warn(f"runstore: the disk queue {self.qdir.path} has room again; {self.stats.dropped_ops} operations were dropped")
        self._out.append(encode_record(kind, points, payload))
        self._out_bytes += size
        return True

    def _op(self, op: dict[str, Any], points: int = 0) -> None:
        try:
            payload = msgpack.packb(op, use_bin_type=True)
        except (OverflowError, TypeError, ValueError) as exc:
            if op.get("op") == "append" and op.get("kind") == "float":
                op["values"] = [float(v) for v in op["values"]]  # integers beyond 64 bits
                payload = msgpack.packb(op, use_bin_type=True)
            else:
                self.stats.rejected_ops += 1
                self.stats.error(str(exc))
                warn(f"runstore: cannot encode {op.get('op')} {op.get('path')!r}: {exc}; it is dropped")
                return
        self._add(KIND_OP, points, payload)

    def _ctl(self, ctl: dict[str, Any]) -> None:
        self._add(KIND_CTL, 0, msgpack.packb(ctl, use_bin_type=True))

    def _write_out(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out)
        count = len(self._out)
        self._out.clear()
        self._out_bytes = 0
        if self.segment is None:
            self.stats.dropped_ops += count
            return
        try:
            self.segment.write(data)
        except OSError as exc:
            self.stats.dropped_ops += count
            self.stats.error(str(exc))
            warn(f"runstore: cannot write the disk queue in {self.qdir.path}: {exc}; {count} records dropped", once_key=f"write:{self.qdir.path}:{exc.errno}")
            return
        self._disk_bytes += len(data)
        self._dirty = True
        self.stats.written_ops += count

    # -- encoding -------------------------------------------------------------
    def _encode(self, items: list[tuple[Any, ...]], markers: list[FlushMarker]) -> None:
        """Points between two other operations become one ``append`` per series (order kept per series)."""
        paths = list(map(itemgetter(0), items))
        # Common case first: only points. ``count`` of the first path compares by identity (the
        # handler's own string), ``set`` hashes once per point; searching for ``None`` compares
        # every str with None, which costs more than both.
        first = paths[0] if paths else None
        if first is not None:
            if paths.count(first) == len(paths):
                self._encode_points(items, paths, single=True)
                return
            present = set(paths)
            if None not in present:
                self._encode_points(items, paths, single=False)
                return
        start = 0
        while start < len(items):
            try:
                end = paths.index(None, start)
            except ValueError:
                end = len(items)
            if end > start:
                self._encode_points(items[start:end], paths[start:end])
            if end < len(items):
                item = items[end]
                if item[1] == "flush":
                    markers.append(item[2])
                else:
                    try:
                        self._special(item)
                    except Exception as exc:  # noqa: BLE001 - one bad op must not stop the others
                        self.stats.error(repr(exc))
                        bug(exc, f"queueing {item[1]} of {item[2] if len(item) > 2 else ''!r}")
            start = end + 1

    def _encode_points(self, items: list[tuple[Any, ...]], paths: list[str], single: bool | None = None) -> None:
        """The fast path, in C-level loops: a series of numbers with automatic steps.
        ``single``: all points are of one series (None: not known yet)."""
        values = list(map(itemgetter(1), items))
        steps = list(map(itemgetter(2), items))
        stamps = list(map(itemgetter(3), items))
        if single is None:
            single = len(set(paths)) == 1
        if single:
            groups: list[tuple[str, list[int]]] = [(paths[0], list(range(len(items))))]
        else:
            order = sorted(range(len(items)), key=paths.__getitem__)
            groups = [(path, list(indexes)) for path, indexes in groupby(order, key=paths.__getitem__)]
        last = self.last_steps
        for path, indexes in groups:
            if len(indexes) == len(items):
                vals, sts, tss = values, steps, stamps
            else:
                pick = itemgetter(*indexes)
                if len(indexes) == 1:
                    vals, sts, tss = [pick(values)], [pick(steps)], [pick(stamps)]
                else:
                    vals, sts, tss = list(pick(values)), list(pick(steps)), list(pick(stamps))
            if sts.count(None) == len(sts) and _all_numbers(vals):
                if self.server_steps and path not in last:
                    self._emit({path: ["float", vals, None, tss]})
                    continue
                first = last.get(path, -1) + 1
                last[path] = first + len(vals) - 1
                self._emit({path: ["float", vals, list(range(first, first + len(vals))), tss]})
            else:
                self._encode_slow([(path, v, s, t) for v, s, t in zip(vals, sts, tss)])

    def _encode_slow(self, items: list[tuple[Any, ...]]) -> None:
        groups: dict[str, list[Any]] = {}
        last = self.last_steps
        for item in items:
            path, value, step, timestamp = item
            t = type(value)
            kind = "float" if (t is float or t is int) else ("string" if t is str else "file")
            group = groups.get(path)
            if group is None or group[0] != kind:
                if group is not None:
                    self._emit({path: group})
                group = groups[path] = [kind, [], [], []]
            previous = last.get(path, -1)
            if step is None and self.server_steps and path not in last:
                value = self._point_value(kind, value)
                if value is not None:
                    if group[1]:
                        self._emit({path: group})
                        group = groups[path] = [kind, [], [], []]
                    self._emit({path: [kind, [value], None, [timestamp]]})
                continue
            if step is None:
                step = previous + 1
            elif step <= previous:
                self._bad_step(path, step, previous)
                continue
            last[path] = step
            value = self._point_value(kind, value)
            if value is None:
                continue
            group[1].append(value)
            group[2].append(step)
            group[3].append(timestamp)
        self._emit(groups)

    def _point_value(self, kind: str, value: Any) -> Any:
        if kind == "string":
            return clean_string(value)
        if kind == "file":
            return self._file(value)
        return value

    def _bad_step(self, path: str, step: int, previous: int) -> None:
        self.stats.rejected_ops += 1
        if path not in self._bad_steps:
            self._bad_steps.add(path)
            self.stats.error(f"step {step} not after {previous} in {path}")
            warn(f"runstore: {path}: step {step} is not after the last step {previous}; the point is dropped (steps must increase)")

    def _emit(self, groups: dict[str, list[Any]]) -> None:
        for path, (kind, values, steps, timestamps) in groups.items():
            if not values:
                continue
            if len(values) <= POINTS_PER_OP:
                op = {"op": "append", "path": path, "kind": kind, "values": values, "timestamps": timestamps}
                if steps is not None:
                    op["steps"] = steps
                self._op(op, len(values))
                continue
            for start in range(0, len(values), POINTS_PER_OP):
                end = start + POINTS_PER_OP
                op = {"op": "append", "path": path, "kind": kind, "values": values[start:end],
                      "timestamps": timestamps[start:end]}
                if steps is not None:
                    op["steps"] = steps[start:end]
                self._op(op, len(op["values"]))

    def _special(self, item: tuple[Any, ...]) -> None:
        kind = item[1]
        if kind == "assign":
            _, _, path, type_, value = item
            self._op({"op": "assign", "path": path, "value": value, "type": type_})
        elif kind == "file":
            ref = self._file(item[3])
            if ref is not None:
                self._op({"op": "upload", "path": item[2], **ref})
        elif kind in ("add_tags", "remove_tags"):
            self._op({"op": kind, "path": item[2], "values": item[3]})
        elif kind == "delete":
            path = item[2]
            self._op({"op": "delete", "path": path})
            for key in [k for k in self.last_steps if k == path or k.startswith(path + "/")]:
                del self.last_steps[key]
        elif kind == "upload_set":
            _, _, path, files, replace = item
            refs = []
            for relpath, file in files:
                ref = self._file(file)
                if ref is not None:
                    refs.append({"relpath": relpath, "sha256": ref["sha256"], **({"mime_type": ref["mime_type"]} if ref.get("mime_type") else {})})
            for start in range(0, max(1, len(refs)), 5000):
                chunk = refs[start:start + 5000]
                if chunk or replace:
                    self._op({"op": "upload_set", "path": path, "files": chunk, "replace": bool(replace and start == 0)})
        elif kind == "track":
            self._track(item[2], item[3])
        elif kind == "ctl":
            self._ctl(item[2])
        else:
            raise ValueError(f"unknown queue item {kind!r}")

    def _file(self, file: File) -> dict[str, Any] | None:
        """Put a file into the queue directory; write its upload control record; return its reference."""
        name = f"{uuid.uuid4().hex}"
        target = self.qdir.files / name
        try:
            if file.content is not None:
                sha256 = hashlib.sha256(file.content).hexdigest()
                with open(target, "wb") as f:
                    f.write(file.content)
                size = len(file.content)
                source, delete = f"files/{name}", True
            else:
                assert file.path is not None
                if file.path.stat().st_size <= COPY_LIMIT:
                    sha256, size = sha256_file(file.path, target)
                    source, delete = f"files/{name}", True
                else:
                    # Too big to copy: hashed now, read again at upload time; the
                    # server checks the hash, so a file changed meanwhile is refused.
                    sha256, size = sha256_file(file.path)
                    source, delete = str(file.path), False
        except OSError as exc:
            try:
                target.unlink()
            except OSError:
                pass
            self.stats.dropped_ops += 1
            self.stats.error(str(exc))
            warn(f"runstore: cannot queue the file {file!r}: {exc}; it is dropped")
            return None
        self._disk_bytes += size if delete else 0
        ref: dict[str, Any] = {"sha256": sha256}
        if file.name:
            ref["name"] = file.name[:255]
        if file.mime_type:
            ref["mime_type"] = file.mime_type
        self._ctl({"t": "upload", "file": source, "delete": delete, "size": size, **ref})
        return ref

    def _track(self, path: str, root: Path) -> None:
        """An artifact version: every file's relative path, size and SHA-256, and one hash over them all."""
        entries = []
        base = root if root.is_dir() else root.parent
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for file in files:
            try:
                sha256, size = sha256_file(file)
            except OSError as exc:
                warn(f"runstore: track_files: cannot read {file}: {exc}")
                continue
            entries.append((file.relative_to(base).as_posix(), sha256, size))
        overall = hashlib.sha256()
        for relpath, sha256, size in entries:
            overall.update(f"{relpath}\0{sha256}\0{size}\n".encode())
        value = {
            "hash": overall.hexdigest(),
            "size": sum(e[2] for e in entries),
            "file_count": len(entries),
            "location": root.resolve().as_uri(),
        }
        self._op({"op": "assign", "path": path, "value": value})
        listing = [f"{relpath}:{sha256}:{size}" for relpath, sha256, size in entries if len(relpath) < 900]
        if listing:
            self._op({"op": "assign", "path": f"{path}/files", "value": listing[:10_000], "type": "string_set"})


def copy_tree_files(root: Path) -> list[tuple[str, File]]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return [(p.relative_to(root).as_posix(), File(p)) for p in files]


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

The in-memory queue is bounded by items and by the bytes of strings and
file contents it holds; when full, new operations are dropped and counted
(one warning), as sentry-python's transport does. Hashing and copying
files (uploads from a path, file sets, ``track_files``, files from a path
appended to a file series) run on a separate worker thread: while a file is
prepared, points of other series keep flowing to disk; operations that could
depend on the file (every other non-point operation, points of the same
field, flush markers) wait behind it, in order.
"""

from __future__ import annotations

import hashlib
import queue as queue_module
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from itertools import groupby, repeat, starmap
from operator import itemgetter
from pathlib import Path
from struct import pack
from typing import Any

import msgpack

from ..file import File
from . import artifacts, bug, warn
from .queue import KIND_CTL, KIND_OP, SEGMENT_BYTES, QueueDir, SegmentWriter, encode_record
from .values import clean_string

POINTS_PER_OP = 50_000
DRAIN_ITEMS = 100_000
POLL_SECONDS = 0.05
WATCH_SECONDS = 0.01
COPY_LIMIT = 64 * 1024 * 1024
NUMBER_TYPES = frozenset((float, int))
# Float appends with packed columns (MessagePack bin); False: per-point lists, the older form
# (the sender falls back to it by itself for a server that predates packed columns).
PACKED_FLOATS = True


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


def _packed_ops(
    path: str, values: list[Any], steps: list[int] | range | None, timestamps: list[float]
) -> list[tuple[dict[str, Any], int]]:
    """The ``append`` operations (and their point counts) of one series' points, columns packed;
    ``struct.error`` when a value does not fit its column."""
    out = []
    n = len(values)
    for start in range(0, n, POINTS_PER_OP):
        end = min(n, start + POINTS_PER_OP)
        whole = start == 0 and end == n
        m = end - start
        op: dict[str, Any] = {
            "op": "append",
            "path": path,
            "kind": "float",
            "values": pack(f"<{m}d", *(values if whole else values[start:end])),
            "timestamps": pack(f"<{m}d", *(timestamps if whole else timestamps[start:end])),
        }
        if steps is not None:
            op["steps"] = pack(f"<{m}q", *(steps if whole else steps[start:end]))
        out.append((op, m))
    return out


def _fits_float(value: Any) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


class Stats:
    """Counters shared by a run's workers; read by ``Run.status()``."""

    def __init__(self) -> None:
        self.errors = 0
        self.dropped_ops = 0
        self.rejected_ops = 0
        self.dropped_memory_ops = 0  # of dropped_ops: refused because the in-memory queue was full
        self.written_ops = 0
        self.acked_ops = 0
        self.last_error: str | None = None
        # When the sender last made progress (an acknowledgement, a created run, upload bytes sent).
        self.progress_at = time.monotonic()
        # What holds sending back at the server, while it does (``sender.describe_block``): a storage or
        # count quota (``kind`` "quota") or rate limiting (``kind`` "rate_limited"); times are epoch seconds.
        self.blocked: dict[str, Any] | None = None

    def error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message


class FlushMarker:
    __slots__ = ("event", "position", "sync")

    def __init__(self, sync: bool = True):
        self.event = threading.Event()
        self.position: tuple[int, int] | None = None
        self.sync = sync


def point_bytes(value: Any) -> int:
    """What a point's value holds in memory beyond the fixed cost of the item (strings, file contents)."""
    if type(value) is str:
        return len(value)
    if isinstance(value, File):
        return len(value.content) if value.content is not None else 0
    return 0


def item_bytes(item: tuple[Any, ...]) -> int:
    """The same for a non-point operation; the writer subtracts exactly this when it takes the item."""
    kind = item[1]
    if kind == "assign":
        value = item[4]
        if type(value) is str:
            return len(value)
        if isinstance(value, list):
            return sum(len(v) for v in value if type(v) is str)
        return 0
    if kind == "file":
        return point_bytes(item[3])
    if kind in ("add_tags", "remove_tags"):
        return sum(len(v) for v in item[3])
    if kind == "upload_set":
        return 256 * len(item[3])
    return 0


class FileJob:
    """Hashing/copying for one operation, done by the ``FileWorker``; the writer writes the result."""

    __slots__ = ("item", "work", "done", "result")

    def __init__(self, item: tuple[Any, ...], work: Callable[[], Any]):
        self.item = item
        self.work = work
        self.done = threading.Event()
        self.result: Any = None

    def label(self) -> Any:
        """The field: a series point is ``(path, file, step, timestamp)``, another operation ``(None, kind, path, ...)``."""
        return self.item[0] if self.item[0] is not None else self.item[2]

    def run(self) -> None:
        try:
            self.result = self.work()
        except Exception as exc:  # noqa: BLE001 - handed to the writer, which reports it
            self.result = exc
        finally:
            self.done.set()


class FileWorker:
    """One daemon thread that hashes and copies files, started on demand and ending when idle."""

    IDLE_SECONDS = 2.0

    def __init__(self, on_done: Callable[[], None]):
        self.on_done = on_done
        self._jobs: queue_module.SimpleQueue[FileJob] = queue_module.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, job: FileJob) -> None:
        self._jobs.put(job)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="runstore-files", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.IDLE_SECONDS)
            except queue_module.Empty:
                with self._lock:
                    if self._jobs.empty():
                        self._thread = None
                        return
                continue
            job.run()
            self.on_done()


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
        max_items: int = 1_000_000,
        max_memory_bytes: int = 256 << 20,
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
        # The in-memory queue's bounds. ``memory_in`` is added to by the callers' threads (without a
        # lock: an approximation), ``memory_out`` only by this thread.
        self.max_items = max(1, int(max_items))
        self.max_memory_bytes = max(1, int(max_memory_bytes))
        self.memory_in = 0
        self.memory_out = 0
        self._memory_warned = False
        # Items waiting behind a file being hashed/copied (FileJob first), in order.
        self._held: deque[Any] = deque()
        self._held_paths: set[str] = set()
        self._files = FileWorker(self._wake.set)
        self._hash_cache: artifacts.HashCache | bool | None = None  # opened at the first track_files; False: unusable
        self.put = self._make_put()
        # The callers use the bare ``queue.append`` (C, no checks) while the queue is short; a
        # watchdog switches them to ``put`` (checks the bound) from half the bound on, and back.
        self.on_put_changed: Callable[[Callable[[tuple[Any, ...]], None]], None] | None = None
        self._checking = False

    # -- the callers' side ---------------------------------------------------
    def _make_put(self) -> Callable[[tuple[Any, ...]], None]:
        """The bounded put: a length check and a deque append (no lock)."""
        queue = self.queue
        append = queue.append
        limit = self.max_items
        refuse = self._refuse

        def put(item: tuple[Any, ...]) -> None:
            if len(queue) < limit:
                append(item)
            else:
                refuse()

        return put

    def put_sized(self, item: tuple[Any, ...], size: int) -> None:
        """Put an item holding ``size`` bytes of strings or file contents (bounded by ``max_memory_bytes``)."""
        used = self.memory_in - self.memory_out
        if len(self.queue) < self.max_items and (used <= 0 or used + size <= self.max_memory_bytes):
            self.memory_in += size
            self.queue.append(item)
        else:
            self._refuse()

    def _refuse(self) -> None:
        self.stats.dropped_ops += 1
        self.stats.dropped_memory_ops += 1
        if not self._memory_warned:
            self._memory_warned = True
            self.stats.error("in-memory queue full")
            warn(
                f"runstore: the in-memory queue is full ({self.max_items} operations or {self.max_memory_bytes} bytes, "
                "RUNSTORE_MAX_MEMORY_ITEMS / RUNSTORE_MAX_MEMORY_BYTES) while the writer catches up; new operations "
                "are dropped and counted in run.status()['dropped_operations'] (this is the only warning)"
            )

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
        threading.Thread(target=self._watch, name="runstore-watch", daemon=True).start()

    def current_put(self) -> Callable[[tuple[Any, ...]], None]:
        """What callers should use now: the bare append while the queue is short, else the bounded put."""
        return self.put if self._checking else self.queue.append

    def _watch(self) -> None:
        """Every 10 ms: switch the callers to the bounded put from half the bound on (even while
        the writer thread is blocked in a slow disk write), back to the bare append below a quarter."""
        queue = self.queue
        high, low = self.max_items // 2, self.max_items // 4
        while self.alive() or self._thread is None:
            time.sleep(WATCH_SECONDS)
            length = len(queue)
            checking = length >= high if not self._checking else length > low
            if checking != self._checking:
                self._checking = checking
                callback = self.on_put_changed
                if callback is not None:
                    try:
                        callback(self.current_put())
                    except Exception as exc:  # noqa: BLE001 - the watchdog must not die
                        bug(exc, "switching the in-memory queue's put")

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
            if self._closing and not self.queue and not self._held:
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
        if self._held:
            self._release(markers)
            self._write_out()
        elif not queue:
            self.memory_out = self.memory_in  # nothing queued: forget the counters' drift
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
            warn(
                f"runstore: the disk queue {self.qdir.path} has room again; {self.stats.dropped_ops} operations were dropped"
            )
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
            warn(
                f"runstore: cannot write the disk queue in {self.qdir.path}: {exc}; {count} records dropped",
                once_key=f"write:{self.qdir.path}:{exc.errno}",
            )
            return
        self._disk_bytes += len(data)
        self._dirty = True
        self.stats.written_ops += count

    # -- encoding -------------------------------------------------------------
    def _encode(self, items: list[tuple[Any, ...]], markers: list[FlushMarker]) -> None:
        """Points between two other operations become one ``append`` per series (order kept per series)."""
        if self._held:
            items = self._hold(items)
            if not items:
                return
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
                if self._held:
                    # A file appended to a series is being prepared: the same as below.
                    rest = self._hold(items[end:])
                    if rest:
                        self._encode_points(rest, list(map(itemgetter(0), rest)))
                    return
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
                    if self._held:
                        # A file is being prepared: what follows waits behind it, except other series' points.
                        rest = self._hold(items[end + 1 :])
                        if rest:
                            self._encode_points(rest, list(map(itemgetter(0), rest)))
                        return
            start = end + 1

    # -- waiting behind files being prepared ----------------------------------
    def _blocked(self, path: str) -> bool:
        held = self._held_paths
        if path in held:
            return True
        cut = path.rfind("/")
        while cut > 0:
            if path[:cut] in held:
                return True
            cut = path.rfind("/", 0, cut)
        return False

    def _hold(self, items: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """While a file is prepared: keep back every item but points of fields no held operation
        touches; return the points that may be written now."""
        passing = []
        held = self._held
        paths = self._held_paths
        blocked: dict[str, bool] = {}
        for item in items:
            path = item[0]
            if path is not None:
                stop = blocked.get(path)
                if stop is None:
                    stop = blocked[path] = self._blocked(path)
                if not stop:
                    passing.append(item)
                    continue
            elif item[1] != "flush" and len(item) > 2 and isinstance(item[2], str):
                paths.add(item[2])
                blocked.clear()
            if len(held) >= self.max_items and not (path is None and item[1] in ("flush", "ctl")):
                self.memory_out += point_bytes(item[1]) if path is not None else item_bytes(item)
                self._refuse()
                continue
            held.append(item)
        return passing

    def _release(self, markers: list[FlushMarker]) -> None:
        """Write what waited, in order, up to the first file still being prepared."""
        held = self._held
        while held:
            first = held[0]
            if isinstance(first, FileJob):
                if not first.done.is_set():
                    return
                held.popleft()
                try:
                    self._finish(first)
                except Exception as exc:  # noqa: BLE001
                    self.stats.error(repr(exc))
                    bug(exc, f"queueing the prepared file of {first.label()!r}")
                continue
            if first[0] is not None:
                points = []
                while held and not isinstance(held[0], FileJob) and held[0][0] is not None:
                    points.append(held.popleft())
                self._encode_points(points, list(map(itemgetter(0), points)))
                continue
            held.popleft()
            if first[1] == "flush":
                markers.append(first[2])
                continue
            try:
                self._special(first)
            except Exception as exc:  # noqa: BLE001
                self.stats.error(repr(exc))
                bug(exc, f"queueing {first[1]} of {first[2] if len(first) > 2 else ''!r}")
        self._held_paths.clear()

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
        waiting: list[Any] = []
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
                self._emit({path: ["float", vals, range(first, first + len(vals)), tss]})
            else:
                waiting += self._encode_slow([(path, v, s, t) for v, s, t in zip(vals, sts, tss, strict=True)])
        if waiting:
            # Files appended to series are being prepared: each job, then the later points of its
            # series, go first in line (before anything already waiting, which may depend on them).
            self._held.extendleft(reversed(waiting))

    def _encode_slow(self, items: list[tuple[Any, ...]]) -> list[Any]:
        """Any values, explicit steps. A file from a path is prepared on the file thread: returns
        its job and the points after it, which wait behind it (empty when none was started)."""
        groups: dict[str, list[Any]] = {}
        last = self.last_steps
        for index, item in enumerate(items):
            path, value, step, timestamp = item
            t = type(value)
            kind = "float" if (t is float or t is int) else ("string" if t is str else "file")
            if kind != "float":
                self.memory_out += point_bytes(value)
            group = groups.get(path)
            if group is None or group[0] != kind:
                if group is not None:
                    self._emit({path: group})
                group = groups[path] = [kind, [], [], []]
            previous = last.get(path, -1)
            if step is None and self.server_steps and path not in last:
                if kind == "file" and value.content is None:
                    return self._start_point_job(groups, item, None, items[index + 1 :])
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
            if kind == "file" and value.content is None:
                return self._start_point_job(groups, item, step, items[index + 1 :])
            value = self._point_value(kind, value)
            if value is None:
                continue
            group[1].append(value)
            group[2].append(step)
            group[3].append(timestamp)
        self._emit(groups)
        return []

    def _start_point_job(
        self, groups: dict[str, list[Any]], item: tuple[Any, ...], step: int | None, rest: list[tuple[Any, ...]]
    ) -> list[Any]:
        """Write the points before a file from a path, have the file thread prepare it; the caller
        puts the returned job and ``rest`` first in line."""
        self._emit(groups)
        path, file, _step, timestamp = item
        job = FileJob((path, file, step, timestamp), lambda: self._prepare_file(file))
        self._held_paths.add(path)
        self._files.submit(job)
        return [job, *rest]

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
            warn(
                f"runstore: {path}: step {step} is not after the last step {previous}; the point is dropped (steps must increase)"
            )

    def _emit(self, groups: dict[str, list[Any]]) -> None:
        for path, (kind, values, steps, timestamps) in groups.items():
            if not values:
                continue
            if kind == "float" and PACKED_FLOATS and self._emit_packed(path, values, steps, timestamps):
                continue
            if steps is not None and not isinstance(steps, list):
                steps = list(steps)
            if len(values) <= POINTS_PER_OP:
                op = {"op": "append", "path": path, "kind": kind, "values": values, "timestamps": timestamps}
                if steps is not None:
                    op["steps"] = steps
                self._op(op, len(values))
                continue
            for start in range(0, len(values), POINTS_PER_OP):
                end = start + POINTS_PER_OP
                op = {
                    "op": "append",
                    "path": path,
                    "kind": kind,
                    "values": values[start:end],
                    "timestamps": timestamps[start:end],
                }
                if steps is not None:
                    op["steps"] = steps[start:end]
                self._op(op, len(op["values"]))

    def _emit_packed(
        self, path: str, values: list[Any], steps: list[int] | range | None, timestamps: list[float]
    ) -> bool:
        """A float append with packed columns (``bin`` of little-endian float64 values and timestamps,
        int64 steps; ``struct.pack``, one C loop per column): no object per point here or on the
        server. An int beyond the float64 range is dropped (counted, one warning); False when a
        column cannot be packed otherwise."""
        try:
            ops = _packed_ops(path, values, steps, timestamps)
        except struct.error:
            keep = [i for i, v in enumerate(values) if _fits_float(v)]
            if len(keep) == len(values):
                return False
            self._beyond_float64(path, len(values) - len(keep))
            if not keep:
                return True
            try:
                ops = _packed_ops(
                    path,
                    [values[i] for i in keep],
                    None if steps is None else [steps[i] for i in keep],
                    [timestamps[i] for i in keep],
                )
            except struct.error:
                return False
        for op, n in ops:
            self._op(op, n)
        return True

    def _beyond_float64(self, path: str, count: int) -> None:
        self.stats.rejected_ops += count
        self.stats.error(f"{count} values of {path} beyond the float64 range")
        warn(
            f"runstore: {path}: {count} integer value(s) beyond the float64 range are dropped",
            once_key=f"float64:{path}",
        )

    def _start_job(self, item: tuple[Any, ...], work: Callable[[], Any]) -> None:
        job = FileJob(item, work)
        # First in line: called with nothing held, or by _release after taking this item off the front.
        self._held.appendleft(job)
        self._held_paths.add(item[2])
        self._files.submit(job)

    def _finish(self, job: FileJob) -> None:
        """Write the records of an operation whose files are prepared."""
        item, result = job.item, job.result
        if isinstance(result, Exception):
            self.stats.error(repr(result))
            bug(result, f"preparing the files of {job.label()!r}")
            return
        if item[0] is not None:
            path, _file, step, timestamp = item  # a file series' point, its step assigned when it was taken
            ref = self._emit_file(result)
            if ref is not None:
                self._emit({path: ["file", [ref], None if step is None else [step], [timestamp]]})
            return
        kind = item[1]
        if kind == "file":
            ref = self._emit_file(result)
            if ref is not None:
                self._op({"op": "upload", "path": item[2], **ref})
        elif kind == "upload_set":
            self._upload_set_ops(
                item[2], [(relpath, self._emit_file(prepared)) for relpath, prepared in result], item[4]
            )
        elif kind == "track":
            if result is not None:
                self._track_ops(item[2], item[3], result, name=item[4], role=item[5])

    def _special(self, item: tuple[Any, ...]) -> None:
        kind = item[1]
        self.memory_out += item_bytes(item)
        if kind == "assign":
            _, _, path, type_, value = item
            self._op({"op": "assign", "path": path, "value": value, "type": type_})
        elif kind == "file":
            file = item[3]
            if file.content is None:
                self._start_job(item, lambda: self._prepare_file(file))
                return
            ref = self._file(file)
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
            files = item[3]
            self._start_job(item, lambda: [(relpath, self._prepare_file(file)) for relpath, file in files])
        elif kind == "track":
            root = item[3]
            self._start_job(item, lambda: self._hash_tree(root))
        elif kind == "ctl":
            self._ctl(item[2])
        else:
            raise ValueError(f"unknown queue item {kind!r}")

    def _upload_set_ops(self, path: str, prepared: list[tuple[str, dict[str, Any] | None]], replace: bool) -> None:
        refs = []
        for relpath, ref in prepared:
            if ref is not None:
                refs.append(
                    {
                        "relpath": relpath,
                        "sha256": ref["sha256"],
                        **({"mime_type": ref["mime_type"]} if ref.get("mime_type") else {}),
                    }
                )
        for start in range(0, max(1, len(refs)), 5000):
            chunk = refs[start : start + 5000]
            if chunk or replace:
                self._op({"op": "upload_set", "path": path, "files": chunk, "replace": bool(replace and start == 0)})

    def _file(self, file: File) -> dict[str, Any] | None:
        """Put a file into the queue directory; write its upload control record; return its reference."""
        return self._emit_file(self._prepare_file(file))

    def _prepare_file(self, file: File) -> dict[str, Any] | None:
        """Copy (or only hash) a file into the queue directory; any thread. None when it cannot be read."""
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
        ref: dict[str, Any] = {"sha256": sha256}
        if file.name:
            ref["name"] = file.name[:255]
        if file.mime_type:
            ref["mime_type"] = file.mime_type
        return {"source": source, "delete": delete, "size": size, "ref": ref}

    def _emit_file(self, prepared: dict[str, Any] | None) -> dict[str, Any] | None:
        """Write the upload control record of a prepared file; return its reference (this thread)."""
        if prepared is None:
            return None
        self._disk_bytes += prepared["size"] if prepared["delete"] else 0
        ref: dict[str, Any] = prepared["ref"]
        self._ctl(
            {"t": "upload", "file": prepared["source"], "delete": prepared["delete"], "size": prepared["size"], **ref}
        )
        return ref

    def _hash_tree(self, root: Path | str) -> list[tuple[str, str, int]] | None:
        """Every file's relative path, hash and size (any thread): SHA-256 of local files (in
        parallel, unchanged files from the hash cache), ETags of an S3 prefix's objects. None
        (and a warning) when the location cannot be listed."""
        if isinstance(root, str):
            try:
                return artifacts.list_s3(root)
            except Exception as exc:  # boto3 missing, no credentials, no such bucket: the run goes on
                self.stats.error(str(exc))
                warn(f"runstore: track_files: cannot list {root}: {exc!r}; the version is not recorded")
                return None
        if self._hash_cache is None:
            from ..config import home

            self._hash_cache = artifacts.cache_for(home(), warn) or False
        cache = self._hash_cache if isinstance(self._hash_cache, artifacts.HashCache) else None
        return artifacts.hash_local(root, cache, warn)

    def _track_ops(
        self,
        path: str,
        root: Path | str,
        entries: list[tuple[str, str, int]],
        *,
        name: str | None = None,
        role: str = "input",
    ) -> None:
        """An artifact version: every file's relative path, size and hash, and one hash over them all;
        the fields ``<path>/hash|size|file_count|location|files`` and a ``track`` operation with the
        file list, which the server keeps as a version of the workspace."""
        if len(entries) > artifacts.MAX_FILES:
            warn(f"runstore: track_files: {root} holds more than {artifacts.MAX_FILES} files; the first are listed")
            entries = entries[: artifacts.MAX_FILES]
        digest = artifacts.version_hash(entries)
        location = root if isinstance(root, str) else root.resolve().as_uri()
        value = {
            "hash": digest,
            "size": sum(e[2] for e in entries),
            "file_count": len(entries),
            "location": location,
        }
        self._op({"op": "assign", "path": path, "value": value})
        listing = [f"{relpath}:{sha256}:{size}" for relpath, sha256, size in entries if len(relpath) < 900]
        if listing:
            self._op({"op": "assign", "path": f"{path}/files", "value": listing[:10_000], "type": "string_set"})
        op: dict[str, Any] = {
            "op": "track",
            "path": path,
            "hash": digest,
            "role": role,
            "location": location[:2048],
            "files": [{"path": r, "hash": h, "size": n} for r, h, n in entries if len(r) <= 1024],
        }
        if name:
            op["name"] = name
        self._op(op)


def copy_tree_files(root: Path) -> list[tuple[str, File]]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return [(p.relative_to(root).as_posix(), File(p)) for p in files]

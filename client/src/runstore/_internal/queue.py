"""The durable on-disk queue of one writer (one process) of one run.

A queue directory holds:

* ``meta.json``   server URL, project, run UUID (or what is needed to create
  or find the run later), the writer's ``stream`` id;
* ``seg-NNNNNNNN.log``  append-only segments of records. A record is a
  13-byte header (payload length, CRC-32 of the payload, kind, point count)
  followed by the payload: one MessagePack-encoded batch operation
  (kind 1) or a control record (kind 2: upload a file, change the state);
* ``ack.json``    the sender's position (segment, offset), the next batch
  ``seq`` and the batch in flight (its seq and byte range), so that a batch
  is re-sent after a crash with the same seq and the same operations:
  the server applies ``(stream, seq)`` once;
* ``blocked.json`` why the server holds the queue back, while it does (a storage
  or count quota, or rate limiting), for ``runstore status``;
* ``files/``      copies of files waiting to be uploaded;
* ``lock``        flock-ed by the process writing or sending this queue.

Only the highest-numbered segment is ever appended to; lower ones are
sealed, and deleted once fully acknowledged.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

HEADER = struct.Struct("<IIBI")
KIND_OP = 1
KIND_CTL = 2
SEGMENT_BYTES = 16 * 1024 * 1024
SEGMENT_PREFIX = "seg-"
# zlib.crc32 releases the GIL for more than 5 KiB; a background thread that lets it go waits up to
# sys.getswitchinterval() (5 ms) to take it back from a training loop that never blocks, so the
# writer and the sender compute a record's CRC in pieces under that size and keep the GIL (about
# 1 ms per MiB).
CRC_PIECE = 4096


def write_json_atomic(path: Path, data: Any, *, fsync: bool = False) -> None:
    # Encoded first, then the fewest system calls (a file object adds fstat, lseek and flush calls):
    # the sender writes ack.json once a batch, and every call lets the GIL go (see CRC_PIECE).
    encoded = json.dumps(data).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        try:
            view = memoryview(encoded)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def crc32(data: bytes) -> int:
    """``zlib.crc32(data)`` without letting the GIL go (see CRC_PIECE)."""
    if len(data) <= CRC_PIECE:
        return zlib.crc32(data)
    view = memoryview(data)
    crc = 0
    for start in range(0, len(view), CRC_PIECE):
        crc = zlib.crc32(view[start : start + CRC_PIECE], crc)
    return crc


def encode_record(kind: int, points: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), crc32(payload), kind, points) + payload


class QueueDir:
    """Paths and small state files of one queue directory."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.files = self.path / "files"
        self._lock_fd: int | None = None

    # -- meta and ack -------------------------------------------------------
    @property
    def meta_path(self) -> Path:
        return self.path / "meta.json"

    def read_meta(self) -> dict[str, Any]:
        with open(self.meta_path) as f:
            return dict(json.load(f))

    def write_meta(self, meta: dict[str, Any]) -> None:
        write_json_atomic(self.meta_path, meta, fsync=True)

    def read_ack(self) -> dict[str, Any]:
        try:
            with open(self.path / "ack.json") as f:
                return dict(json.load(f))
        except FileNotFoundError:
            first = self.segments()
            return {"seq": 0, "segment": first[0] if first else 1, "offset": 0, "inflight": None}

    def write_ack(self, ack: dict[str, Any], *, fsync: bool = False) -> None:
        write_json_atomic(self.path / "ack.json", ack, fsync=fsync)

    def read_blocked(self) -> dict[str, Any] | None:
        """What holds this queue back at the server (see ``sender.describe_block``), or None."""
        try:
            with open(self.path / "blocked.json") as f:
                value = json.load(f)
        except (OSError, ValueError):
            return None
        return dict(value) if isinstance(value, dict) else None

    def write_blocked(self, blocked: dict[str, Any] | None) -> None:
        if blocked is None:
            try:
                (self.path / "blocked.json").unlink()
            except FileNotFoundError:
                pass
        else:
            write_json_atomic(self.path / "blocked.json", blocked)

    # -- segments -----------------------------------------------------------
    def segments(self) -> list[int]:
        numbers = []
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        for name in names:
            if name.startswith(SEGMENT_PREFIX) and name.endswith(".log"):
                try:
                    numbers.append(int(name[len(SEGMENT_PREFIX) : -4]))
                except ValueError:
                    continue
        return sorted(numbers)

    def segment_path(self, number: int) -> Path:
        return self.path / f"{SEGMENT_PREFIX}{number:08d}.log"

    def disk_bytes(self) -> int:
        total = 0
        for folder in (self.path, self.files):
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        try:
                            if entry.is_file():
                                total += entry.stat().st_size
                        except FileNotFoundError:  # sent and removed meanwhile
                            continue
            except FileNotFoundError:  # no files folder (yet)
                continue
        return total

    def pending(self) -> tuple[int, int]:
        """(records, points) not yet acknowledged; reads the segments."""
        ack = self.read_ack()
        records = points = 0
        for number in self.segments():
            if number < ack["segment"]:
                continue
            start = ack["offset"] if number == ack["segment"] else 0
            for _kind, n, _payload, _end in read_records(self.segment_path(number), start):
                records += 1
                points += n
        return records, points

    # -- locking ------------------------------------------------------------
    def try_lock(self) -> bool:
        """Take the directory's lock (held until ``unlock`` or process death)."""
        if fcntl is None:
            return True
        fd = os.open(self.path / "lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            try:
                os.close(self._lock_fd)
            except OSError:
                pass
            self._lock_fd = None

    def is_locked(self) -> bool:
        if self._lock_fd is not None:
            return True
        if not self.try_lock():
            return True
        self.unlock()
        return False


def read_records(
    path: Path, offset: int, limit_bytes: int | None = None, *, buffer_bytes: int = -1
) -> Iterator[tuple[int, int, bytes, int]]:
    """Yield ``(kind, points, payload, end_offset)`` from ``offset``; stops at the end or at a torn record.
    ``buffer_bytes``: the file's read buffer; the sender reads a batch's records with one system
    call (each call lets the GIL go, and taking it back from a busy training loop costs ~5 ms)."""
    try:
        f = open(path, "rb", buffering=buffer_bytes)  # noqa: SIM115 - closed in finally, generator
    except FileNotFoundError:
        return
    try:
        f.seek(offset)
        position = offset
        while True:
            header = f.read(HEADER.size)
            if len(header) < HEADER.size:
                return
            length, crc, kind, points = HEADER.unpack(header)
            payload = f.read(length)
            if len(payload) < length or crc32(payload) != crc:
                return
            position += HEADER.size + length
            yield kind, points, payload, position
            if limit_bytes is not None and position - offset >= limit_bytes:
                return
    finally:
        f.close()


def segment_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class SegmentWriter:
    """Appends records to the newest segment of a queue directory; rotates at SEGMENT_BYTES."""

    def __init__(self, qdir: QueueDir, segment_bytes: int | None = None):
        self.qdir = qdir
        self.segment_bytes = segment_bytes
        existing = qdir.segments()
        # A new segment on every open: a crashed writer may have left a torn tail.
        self.number = (existing[-1] + 1) if existing else 1
        self.fd = -1
        self.offset = 0
        self._open()

    def _open(self) -> None:
        self.fd = os.open(self.qdir.segment_path(self.number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.offset = os.fstat(self.fd).st_size

    @property
    def position(self) -> tuple[int, int]:
        return (self.number, self.offset)

    def write(self, data: bytes) -> None:
        """Write whole records; on failure the segment is truncated back so no torn record stays."""
        if self.fd < 0:
            self._open()
        if self.offset >= (self.segment_bytes or SEGMENT_BYTES):
            self.rotate()
        try:
            view = memoryview(data)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except OSError:
            try:
                os.ftruncate(self.fd, self.offset)
            except OSError:
                self.rotate()
            raise
        self.offset += len(data)

    def sync(self) -> None:
        os.fsync(self.fd)

    def rotate(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1
        self.number += 1
        self._open()

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.fsync(self.fd)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = -1

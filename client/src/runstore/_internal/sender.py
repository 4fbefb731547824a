"""The sender: moves one queue directory's records to the server, in order, exactly once.

Operations are sent in batches of consecutive records to
``POST /runs/<uuid>/batch`` with this queue's ``stream`` and consecutive
``seq`` numbers. Before a batch is sent, its seq and byte range are saved
as "in flight" in ``ack.json``; after a crash the same range is re-sent
with the same seq, so the server's ``(stream, seq)`` check makes delivery
exactly once. The position after an acknowledged batch is written with the
next batch's in-flight record (or once nothing is left to send): one atomic
write of ``ack.json`` per batch, not two. A batch the server rejects names the bad operation
(``op_index``): that operation is dropped (and reported once) and the
rest is re-sent. Network errors, 5xx, 408 and 429 are retried forever with
jittered exponential backoff, honouring ``Retry-After`` (capped, with jitter).

A 403 ``quota_exceeded`` (a workspace's storage, run, project or upload
quota) is not a rejection: the request becomes possible once an admin raises
the quota. The operations stay queued on disk, one warning per quota names
it, and the same request is retried slowly (30 s, doubling up to 5 min) until
it passes; ``Stats.blocked`` and the queue's ``blocked.json`` say why the
queue is held back (``run.status()``, ``runstore status``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import struct
import threading
import time
import uuid as uuid_module
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from ..exceptions import ApiError
from . import bug, warn
from .api import Api, RetryableError, is_quota_error, quota_delay, retry_delay
from .queue import KIND_CTL, QueueDir, read_records
from .writer import Stats

MAX_BATCH_OPS = 5_000
# The server's default RUNSTORE_MAX_BATCH_POINTS; halved while a server with a smaller one answers 413.
# Half as many batches as at 100,000 (each costs the sender several GIL hand-offs beside a busy
# training loop, and the server a request): 1M appends until acknowledged at 596,429 against 493,781
# points/s (median of 3 each, alternating, same server; README's benchmark table).
MAX_BATCH_POINTS = 200_000
MAX_BATCH_BYTES = 8 * 1024 * 1024
PING_SECONDS = 20.0
# The read buffer for a batch's records: a whole batch (up to MAX_BATCH_BYTES; 200,000 packed floats
# are ~4.8 MB) comes in one or two reads, not two per record (see queue.read_records).
READ_BUFFER_BYTES = MAX_BATCH_BYTES


class _TooLarge(Exception):
    """The server refused a batch of several operations as too large (413): send fewer at a time."""


class Abandoned(Exception):
    """The sender was asked to stop while waiting to retry."""


class FatalSendError(Exception):
    """The server refuses this run (401/403/404): sending stops; the queue stays on disk."""


class QuotaBlocked(Exception):
    """A quota of the run's workspace refuses what is queued (only raised by a sender made with
    ``wait_on_quota=False``, e.g. ``runstore sync``); the queue stays on disk."""

    def __init__(self, blocked: dict[str, Any]):
        super().__init__(describe_block(blocked))
        self.blocked = blocked


def size_or_count(quota: str, value: Any) -> str:
    """``used``/``limit`` of a quota as people read them: bytes in KiB/MiB/GiB, counts as they are."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    if not quota.endswith("_bytes"):
        return str(value)
    n = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(value)


def describe_block(blocked: dict[str, Any], *, now: float | None = None) -> str:
    """One line saying what holds a queue back: ``blocked by quota storage_bytes in workspace acme:
    used 1.2 GiB of 1.0 GiB`` or ``rate limited by the server: retrying in 3 s``."""
    now = time.time() if now is None else now
    if blocked.get("kind") == "rate_limited":
        wait = max(0.0, float(blocked.get("until") or now) - now)
        limit = f" (limit {blocked['limit']} requests)" if blocked.get("limit") else ""
        return f"rate limited by the server{limit}: retrying in {wait:.0f} s"
    quota = str(blocked.get("quota") or "unknown")
    return (
        f"blocked by quota {quota} in workspace {blocked.get('workspace') or '?'}: "
        f"used {size_or_count(quota, blocked.get('used'))} of {size_or_count(quota, blocked.get('limit'))}"
    )


def quota_block(exc: ApiError) -> dict[str, Any]:
    """``Stats.blocked`` for a 403 ``quota_exceeded``, from the details of the server's answer."""
    details = exc.details
    return {
        "kind": "quota",
        "workspace": details.get("workspace"),
        "quota": details.get("quota"),
        "used": details.get("used"),
        "limit": details.get("limit"),
        "message": exc.message,
        "since": time.time(),
    }


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 65536:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def batch_body(stream: str, seq: int, ops: list[bytes]) -> bytes:
    """``{"stream", "seq", "ops": [...]}`` in MessagePack, reusing each operation's stored bytes."""
    head = b"\x83" + msgpack.packb("stream") + msgpack.packb(stream) + msgpack.packb("seq") + msgpack.packb(seq)
    body: bytes = head + msgpack.packb("ops") + _array_header(len(ops)) + b"".join(ops)
    return body


PACKED_COLUMNS = {"values": "<d", "steps": "<q", "timestamps": "<d"}


def packed_rejected(exc: ApiError, payload: bytes) -> bool:
    """Whether the server refused one of an operation's packed columns as not a list (a server
    from before packed columns says ``ops[i].values: must be a non-empty list``)."""
    field = str(exc.details.get("field") or "")
    if field.rsplit(".", 1)[-1] not in PACKED_COLUMNS or not any(
        text in exc.message for text in ("must be a non-empty list", "must be a list as long as")
    ):
        return False
    try:
        op = msgpack.unpackb(payload, raw=False)
    except Exception:  # noqa: BLE001 - not ours to judge here
        return False
    return isinstance(op, dict) and any(isinstance(op.get(name), bytes) for name in PACKED_COLUMNS)


def unpack_floats(payload: bytes) -> bytes:
    """An operation with its packed columns as lists (the per-point form every server reads)."""
    if b"\xc4" not in payload and b"\xc5" not in payload and b"\xc6" not in payload:
        return payload  # no bin in it
    op = msgpack.unpackb(payload, raw=False)
    if not isinstance(op, dict) or not any(isinstance(op.get(name), bytes) for name in PACKED_COLUMNS):
        return payload
    for name, fmt in PACKED_COLUMNS.items():
        data = op.get(name)
        if isinstance(data, bytes):
            op[name] = [item for (item,) in struct.iter_unpack(fmt, data)]
    packed: bytes = msgpack.packb(op, use_bin_type=True)
    return packed


class MultipartFile:
    """A ``multipart/form-data`` body (fields ``sha256`` and ``file``) read from disk piece by piece,
    so uploading a big file does not load it into memory."""

    def __init__(self, path: Path, ctl: dict[str, Any], on_read: Callable[[], None] | None = None):
        boundary = uuid_module.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={boundary}"
        name = str(ctl.get("name") or "file").replace('"', "_").replace("\r", "_").replace("\n", "_")
        mime = ctl.get("mime_type") or "application/octet-stream"
        self.head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="sha256"\r\n\r\n{ctl["sha256"]}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {mime}\r\n\r\n"
        ).encode()
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        self.file = open(path, "rb")  # noqa: SIM115 - closed by __exit__
        self.size = os.fstat(self.file.fileno()).st_size
        self._stage = 0
        self._on_read = on_read

    def __len__(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def read(self, n: int = -1) -> bytes:
        if self._stage == 0:
            self._stage = 1
            return self.head
        if self._stage == 1:
            chunk = self.file.read(n if n and n > 0 else 1 << 20)
            if chunk:
                if self._on_read is not None:
                    self._on_read()  # the previous chunk went out: the server is taking the upload
                return chunk
            self._stage = 2
        if self._stage == 2:
            self._stage = 3
            return self.tail
        return b""

    def __enter__(self) -> MultipartFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


class Sender:
    def __init__(
        self,
        qdir: QueueDir,
        api: Api,
        stats: Stats | None = None,
        *,
        stop: threading.Event | None = None,
        on_progress: Callable[[], None] | None = None,
        wait_on_quota: bool = True,
    ):
        self.qdir = qdir
        # A live run waits (slowly) for a quota to be raised; ``runstore sync`` reports and moves on.
        self.wait_on_quota = wait_on_quota
        # Set to retry a request held back by a quota now rather than at its next slow retry (at stop()).
        self.retry_now = threading.Event()
        self.api = api
        self.stats = stats or Stats()
        self.stop_event = stop or threading.Event()
        self.on_progress = on_progress
        # Called (from the sending thread) once the server created or found the run: (run, existed).
        self.on_run: Callable[[dict[str, Any], bool], None] | None = None
        self.last_status = 0
        self.meta = qdir.read_meta()
        self.ack = qdir.read_ack()
        self.stream: str = self.meta["stream"]
        self.acked_points = 0
        self._attempt = 0
        self._quota_attempt = 0
        self._reported: set[str] = set()
        self.unpack_floats = False  # the server predates packed float columns
        # The position after an acknowledged batch is saved with the next batch's "in flight" record
        # (one atomic write per batch instead of two), or once there is nothing more to send.
        self._ack_unsaved = False
        self.max_points = MAX_BATCH_POINTS  # lowered by a server with a smaller batch limit (413)

    @property
    def position(self) -> tuple[int, int]:
        return (int(self.ack["segment"]), int(self.ack["offset"]))

    # -- the run on the server ------------------------------------------------
    @property
    def run_uuid(self) -> str | None:
        value = self.meta.get("run_uuid")
        return str(value) if value else None

    def ensure_run(self) -> str:
        """The run's UUID; creates (offline runs) or looks up (``with_id``) the run first if needed."""
        uuid = self.run_uuid
        if uuid:
            return uuid
        for attempt in range(3):
            try:
                if self.meta.get("run_ref"):
                    run = self._call("GET", f"runs/{self.meta['run_ref']}/")
                else:
                    # Idempotent: the create body carries a custom_run_id, so a retry after a lost
                    # answer (or another process of the same run) gets the same run back (200).
                    run = self._call("POST", "runs/", body=self.meta["create"])
                break
            except ApiError as exc:
                # Processes starting together race to create the project: the loser sees "already exists".
                if exc.status == 400 and "already exists" in exc.message and attempt < 2:
                    if self.stop_event.wait(0.2):
                        raise Abandoned() from exc
                    continue
                raise FatalSendError(f"cannot create or find the run of {self.qdir.path}: {exc}") from exc
        existed = bool(self.meta.get("run_ref")) or self.last_status == 200
        self.meta["run_uuid"] = run["uuid"]
        self.meta["run_id"] = run["id"]
        self.qdir.write_meta(self.meta)
        self.stats.progress_at = time.monotonic()
        if self.on_run is not None:
            self.on_run(run, existed)
        return str(run["uuid"])

    def _call(self, method: str, path: str, *, body_factory: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
        """One request, retried until it succeeds or the sender is stopped (ApiError for a 4xx).
        ``body_factory`` makes a fresh streamed body (a context manager) for every attempt."""
        from .api import decode

        while True:
            try:
                if body_factory is None:
                    response = self.api.send(method, path, **kwargs)
                else:
                    with body_factory() as body:
                        response = self.api.send(
                            method,
                            path,
                            data=body,
                            headers={"Content-Type": body.content_type, "Content-Length": str(len(body))},
                            **kwargs,
                        )
                self._attempt = 0
                self.last_status = response.status_code
                if self.stats.blocked is not None:
                    self._unblocked()
                return decode(response)
            except RetryableError as exc:
                delay = retry_delay(exc.retry_after, self._attempt)
                self._attempt += 1
                self.stats.error(str(exc))
                if exc.status == 429:
                    self._set_blocked(
                        {
                            "kind": "rate_limited",
                            "until": time.time() + delay,
                            "limit": exc.rate_limit.get("RateLimit-Limit"),
                            "remaining": exc.rate_limit.get("RateLimit-Remaining"),
                            "reset": exc.rate_limit.get("RateLimit-Reset"),
                        }
                    )
                warn(
                    f"runstore: {exc}; retrying in {delay:.1f}s (operations stay queued on disk)",
                    once_key=f"retry:{self.qdir.path}:{exc.status}",
                )
                self._pause(delay)
            except ApiError as exc:
                if not is_quota_error(exc):
                    raise
                self._quota_exceeded(exc, "to create the run" if method == "POST" and path == "runs/" else "")

    def _pause(self, delay: float, *, interruptible: bool = False) -> None:
        """Wait ``delay`` seconds; Abandoned when the sender is stopped meanwhile. ``interruptible``:
        ``retry_now`` ends the wait early."""
        end = time.monotonic() + delay
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            if self.stop_event.wait(min(remaining, 0.25) if interruptible else remaining):
                raise Abandoned()
            if interruptible and self.retry_now.is_set():
                self.retry_now.clear()
                return

    def _quota_exceeded(self, exc: ApiError, refused: str = "") -> None:
        """A quota of the workspace refuses the request: keep it queued, warn once per quota, retry slowly."""
        blocked = quota_block(exc)
        previous = self.stats.blocked
        if previous is not None and previous.get("kind") == "quota" and previous.get("quota") == blocked["quota"]:
            blocked["since"] = previous["since"]
        if not self.wait_on_quota:
            self._set_blocked(blocked)
            raise QuotaBlocked(blocked) from exc
        delay = quota_delay(self._quota_attempt)
        self._quota_attempt += 1
        blocked["retry_at"] = time.time() + delay
        self._set_blocked(blocked)
        self.stats.error(f"{exc.message} ({describe_block(blocked)})")
        warn(
            f"runstore: the server refuses {refused or 'more data for this run'}: {exc.message} "
            f"({describe_block(blocked)}). "
            f"Nothing is lost: the operations stay queued on disk in {self.qdir.path} and are retried every "
            "few minutes, and training goes on; once the quota is raised (or usage falls) they are sent.",
            once_key=f"quota:{self.stream}:{blocked['quota']}",
        )
        self._pause(delay, interruptible=True)

    def _set_blocked(self, blocked: dict[str, Any]) -> None:
        self.stats.blocked = blocked
        try:
            self.qdir.write_blocked(blocked)
        except OSError:
            pass  # only ``runstore status`` reads it

    def _unblocked(self) -> None:
        blocked, self.stats.blocked = self.stats.blocked, None
        self._quota_attempt = 0
        try:
            self.qdir.write_blocked(None)
        except OSError:
            pass
        if blocked is not None and blocked.get("kind") == "quota":
            since = dt.datetime.fromtimestamp(float(blocked["since"])).strftime("%H:%M:%S")
            warn(
                f"runstore: the server accepts this run's data again (it was {describe_block(blocked)} "
                f"since {since}); sending the queued operations",
                level=logging.INFO,
            )

    # -- one step of work -----------------------------------------------------
    def step(self) -> bool:
        """Send one batch or control record. Returns False when nothing is available now."""
        uuid = self.ensure_run()
        inflight = self.ack.get("inflight")
        if inflight:
            ops = self._range(inflight["segment"], inflight["start"], inflight["end"])
            try:
                self._send_batch(uuid, inflight["seq"], ops)
            except _TooLarge:
                return self._smaller_batches(sum(n for n in self._range_points(inflight)))
            self._advance(inflight["segment"], inflight["end"], seq=inflight["seq"] + 1, ops=len(ops), save=False)
            return True
        segment, offset = self.position
        ops = []
        points = size = 0
        end = offset
        control: tuple[dict[str, Any], int] | None = None
        for kind, n, payload, record_end in read_records(
            self.qdir.segment_path(segment), offset, buffer_bytes=READ_BUFFER_BYTES
        ):
            if kind == KIND_CTL:
                if not ops:
                    control = (msgpack.unpackb(payload, raw=False), record_end)
                break
            if ops and (
                len(ops) >= MAX_BATCH_OPS or points + n > self.max_points or size + len(payload) > MAX_BATCH_BYTES
            ):
                break
            ops.append(payload)
            points += n
            size += len(payload)
            end = record_end
        if ops:
            seq = int(self.ack["seq"])
            self.ack["inflight"] = {"seq": seq, "segment": segment, "start": offset, "end": end}
            self.qdir.write_ack(self.ack, fsync=True)
            self._ack_unsaved = False
            try:
                self._send_batch(uuid, seq, ops)
            except _TooLarge:
                return self._smaller_batches(points)
            self.acked_points += points
            self._advance(segment, end, seq=seq + 1, ops=len(ops), save=False)
            return True
        if control is not None:
            self._control(uuid, control[0])
            self._advance(segment, control[1], seq=int(self.ack["seq"]), ops=1)
            return True
        later = [n for n in self.qdir.segments() if n > segment]
        if later:
            # A sealed segment is complete: move on and delete it.
            sealed = self.qdir.segment_path(segment)
            if sealed.exists() and sealed.stat().st_size > offset:
                warn(
                    f"runstore: {self.qdir.segment_path(segment)} has a damaged record at byte {offset}; skipping the rest of it"
                )
            self._advance(later[0], 0, seq=int(self.ack["seq"]), ops=0)
            try:
                self.qdir.segment_path(segment).unlink()
            except FileNotFoundError:
                pass
            return True
        self.save_ack()
        return False

    def save_ack(self) -> None:
        """Write the position if an acknowledged batch moved it since the last write. Until then
        ack.json names that batch as in flight: after a crash it is sent again with its seq, which
        the server recognises as applied (the same path as a crash during the request)."""
        if self._ack_unsaved:
            self.qdir.write_ack(self.ack)
            self._ack_unsaved = False

    def _smaller_batches(self, points: int) -> bool:
        """The batch in flight was refused whole as too large, so nothing of it was applied: the
        same seq goes again with fewer operations (half the points, down to one operation)."""
        self.max_points = max(1, min(self.max_points, points) // 2)
        self.ack["inflight"] = None
        self.qdir.write_ack(self.ack, fsync=True)
        self._ack_unsaved = False
        warn(
            f"runstore: the server takes smaller batches; sending at most {self.max_points} points per batch",
            once_key=f"smaller:{self.qdir.path}:{self.max_points}",
            level=logging.INFO,
        )
        return True

    def _range_points(self, inflight: dict[str, Any]) -> list[int]:
        points = []
        for _kind, n, _payload, record_end in read_records(
            self.qdir.segment_path(inflight["segment"]), inflight["start"]
        ):
            if record_end > inflight["end"]:
                break
            points.append(n)
            if record_end == inflight["end"]:
                break
        return points

    def _range(self, segment: int, start: int, end: int) -> list[bytes]:
        ops = []
        for _kind, _n, payload, record_end in read_records(
            self.qdir.segment_path(segment), start, buffer_bytes=READ_BUFFER_BYTES
        ):
            if record_end > end:
                break
            ops.append(payload)
            if record_end == end:
                break
        return ops

    def _advance(self, segment: int, offset: int, *, seq: int, ops: int, save: bool = True) -> None:
        self.ack = {"seq": seq, "segment": segment, "offset": offset, "inflight": None}
        if save:
            self.qdir.write_ack(self.ack)
        self._ack_unsaved = not save
        self.stats.acked_ops += ops
        self.stats.progress_at = time.monotonic()
        if self.on_progress is not None:
            self.on_progress()

    def _send_batch(self, uuid: str, seq: int, ops: list[bytes]) -> None:
        if self.unpack_floats:
            ops = [unpack_floats(op) for op in ops]
        keep = list(range(len(ops)))
        while keep:
            body = batch_body(self.stream, seq, [ops[i] for i in keep])
            try:
                self._call("POST", f"runs/{uuid}/batch", raw_msgpack=body)
                return
            except ApiError as exc:
                if exc.status in (401, 403, 404):
                    raise FatalSendError(f"the server refuses the run of {self.qdir.path}: {exc}") from exc
                if exc.status == 413 and len(keep) > 1:
                    raise _TooLarge() from exc
                index = exc.details.get("op_index")
                if isinstance(index, int) and 0 <= index < len(keep):
                    if not self.unpack_floats and exc.status == 400 and packed_rejected(exc, ops[keep[index]]):
                        # A server from before packed columns: send this queue's float appends per point.
                        self.unpack_floats = True
                        ops = [unpack_floats(op) for op in ops]
                        warn(
                            "runstore: the server does not take packed float columns (an older version); "
                            "sending float appends per point",
                            level=logging.INFO,
                        )
                        continue
                    bad = keep.pop(index)
                    self._rejected(exc, ops[bad])
                    continue
                # No operation named (e.g. the body is too large): nothing in it can be applied.
                self.stats.rejected_ops += len(keep)
                self.stats.error(str(exc))
                warn(
                    f"runstore: the server rejected a batch of {len(keep)} operations: {exc.message} ({exc.code}); they are dropped"
                )
                return

    def _rejected(self, exc: ApiError, payload: bytes) -> None:
        self.stats.rejected_ops += 1
        self.stats.error(exc.message)
        try:
            op = msgpack.unpackb(payload, raw=False)
            what = f"{op.get('op')} {op.get('path')!r}"
        except Exception:  # noqa: BLE001
            what = "an operation"
        key = f"{exc.code}:{exc.details.get('path')}"
        if key not in self._reported:
            self._reported.add(key)
            warn(
                f"runstore: the server rejected {what}: {exc.message} ({exc.status} {exc.code}); it is dropped, the rest is kept"
            )

    def _control(self, uuid: str, ctl: dict[str, Any]) -> None:
        kind = ctl.get("t")
        if kind == "upload":
            source = Path(ctl["file"])
            path = source if source.is_absolute() else self.qdir.path / source
            try:
                self._upload(uuid, path, ctl)
            except FileNotFoundError:
                self.stats.error(f"missing file {path}")
                warn(f"runstore: the file to upload {path} is gone; its field will be missing")
            if ctl.get("delete"):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
        elif kind == "state":
            try:
                self._call("PATCH", f"runs/{uuid}/", body={"state": ctl["state"]})
            except ApiError as exc:
                self.stats.error(str(exc))
                warn(f"runstore: cannot set the run state to {ctl['state']}: {exc}")
        else:
            warn(f"runstore: unknown control record {kind!r} skipped")

    def _upload(self, uuid: str, path: Path, ctl: dict[str, Any]) -> None:
        if not path.is_file():
            raise FileNotFoundError(path)
        try:
            self._call("POST", f"runs/{uuid}/uploads", body_factory=lambda: MultipartFile(path, ctl, self._uploading))
        except ApiError as exc:
            if exc.status in (401, 403, 404):
                raise FatalSendError(str(exc)) from exc
            self.stats.error(str(exc))
            warn(
                f"runstore: upload of {ctl.get('name') or path} refused: {exc.message}; the operation using it will be dropped"
            )

    def _uploading(self) -> None:
        self.stats.progress_at = time.monotonic()

    def ping(self) -> None:
        uuid = self.run_uuid
        if uuid:
            try:
                self.api.send("POST", f"runs/{uuid}/ping", timeout=10)
            except (RetryableError, ApiError):
                pass

    # -- draining (the CLI and the end of a run) ------------------------------
    def drain(self, *, writer_alive: Callable[[], bool] = lambda: False, deadline: float | None = None) -> bool:
        """Send until nothing is left (and no writer may add more). True when fully drained."""
        while deadline is None or time.monotonic() < deadline:
            if self.step():
                continue
            if not writer_alive():
                return True
            if self.stop_event.wait(0.05):
                break
        self.save_ack()
        return False

    def finished(self) -> bool:
        """Everything on disk is acknowledged (assuming no writer)."""
        segment, offset = self.position
        later = [n for n in self.qdir.segments() if n > segment]
        if later or self.ack.get("inflight"):
            return False
        return not any(True for _ in read_records(self.qdir.segment_path(segment), offset))

    def remove_queue(self) -> None:
        self.qdir.unlock()
        shutil.rmtree(self.qdir.path, ignore_errors=True)


class SenderThread:
    """The live run's sender: a daemon thread that sends whenever the writer wrote."""

    def __init__(self, sender: Sender, *, ping: bool = True):
        self.sender = sender
        self.wake = threading.Event()
        self.progress = threading.Condition()
        self.failed: str | None = None
        self.ping = ping
        self._thread = threading.Thread(target=self._loop, name="runstore-sender", daemon=True)
        sender.on_progress = self._progress

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _progress(self) -> None:
        with self.progress:
            self.progress.notify_all()

    def _loop(self) -> None:
        last_ping = time.monotonic()
        stop = self.sender.stop_event
        while not stop.is_set():
            try:
                worked = self.sender.step()
            except Abandoned:
                break
            except OSError as exc:  # the disk queue's own files (e.g. a full disk)
                self.sender.stats.error(str(exc))
                warn(f"runstore: disk queue error while sending: {exc}; retrying", once_key=f"send-os:{exc.errno}")
                worked = False
                if stop.wait(1.0):
                    break
            except FatalSendError as exc:
                self.failed = str(exc)
                self.sender.stats.error(str(exc))
                warn(
                    f"runstore: {exc}; sending stopped, the operations stay in {self.sender.qdir.path} for `runstore sync`"
                )
                self._save_ack()
                self._progress()
                return
            except Exception as exc:  # noqa: BLE001 - never let the worker die silently
                self.sender.stats.error(repr(exc))
                bug(exc, "sending the queue")
                worked = False
                if stop.wait(1.0):
                    break
            if self.ping and time.monotonic() - last_ping > PING_SECONDS:
                self.sender.ping()
                last_ping = time.monotonic()
            if not worked:
                self.wake.wait(0.5)
                self.wake.clear()
        self._save_ack()
        self._progress()

    def _save_ack(self) -> None:
        try:
            self.sender.save_ack()
        except OSError as exc:  # the queue stays consistent: the batch is re-sent and recognised
            self.sender.stats.error(str(exc))

    def wait_for(self, position: tuple[int, int], timeout: float | None) -> bool:
        """Block until the sender passed ``position`` (True), failed or timed out (False)."""
        end = None if timeout is None else time.monotonic() + timeout
        with self.progress:
            while True:
                if self.sender.position >= position and not self.sender.ack.get("inflight"):
                    return True
                if self.failed or not self.alive():
                    return self.sender.position >= position
                remaining = None if end is None else end - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.progress.wait(0.2 if remaining is None else min(0.2, remaining))

    def stop(self, timeout: float | None = None) -> None:
        self.sender.stop_event.set()
        self.wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

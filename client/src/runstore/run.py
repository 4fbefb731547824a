"""``Run``: the object training code logs to (made by ``runstore.init_run``)."""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
import uuid as uuid_module
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ._internal import bug, capture, warn
from ._internal.api import Api
from ._internal.progress import Progress
from ._internal.queue import QueueDir
from ._internal.reader import DebugStore, Reader
from ._internal.sender import Sender, SenderThread, describe_block
from ._internal.values import check_path
from ._internal.writer import Stats, Writer, item_bytes
from .config import Settings, new_queue_dir, sync_command
from .exceptions import NetworkError, ReadOnlyError, RunstoreError
from .handler import Handler
from .lifecycle import unregister


class Run:
    """A run being logged (or read). Create it with ``runstore.init_run``."""

    def __init__(
        self,
        *,
        mode: str,
        info: dict[str, Any] | None = None,
        api: Api | None = None,
        qdir: QueueDir | None = None,
        last_steps: dict[str, int] | None = None,
        flush_period: float = 1.0,
        server_steps: bool = False,
        settings: Settings | None = None,
    ):
        self._mode = mode
        self._settings = settings or Settings.from_env()
        self._server_steps = server_steps
        self._put: Callable[[tuple[Any, ...]], None]
        self._put_sized: Callable[[tuple[Any, ...], int], None] = self._put_unsized
        self._info = dict(info or {})
        self._api = api
        self._handlers: dict[str, Handler] = {}
        self._stats = Stats()
        self._queue: deque[tuple[Any, ...]] = deque()
        self._qdir = qdir
        self._writer: Writer | None = None
        self._sender: SenderThread | None = None
        self._debug: DebugStore | None = None
        self._stopped = False
        self._tees: list[tuple[str, Any]] = []
        self._monitor: capture.Monitor | None = None
        self._flush_period = flush_period
        self._sync_timeout = self._settings.sync_timeout
        self._last_steps = last_steps or {}
        self._pid = os.getpid()
        self._lock = threading.Lock()
        if mode == "read-only":
            self._put = self._read_only
        elif mode == "debug":
            self._debug = DebugStore()
            self._put = self._debug.apply
        else:
            self._start_workers()

    # -- plumbing ---------------------------------------------------------------
    def _start_workers(self) -> None:
        assert self._qdir is not None
        settings = self._settings
        self._writer = Writer(
            self._qdir,
            self._stats,
            flush_period=self._flush_period,
            max_bytes=settings.max_queue_bytes,
            last_steps=self._last_steps,
            server_steps=self._server_steps,
            max_items=settings.max_memory_items,
            max_memory_bytes=settings.max_memory_bytes,
        )
        self._queue = self._writer.queue
        self._writer.start()
        if self._mode in ("async", "sync") and self._api is not None:
            sender = Sender(self._qdir, Api(self._api.url, self._api.token), self._stats)
            sender.on_run = self._on_run_created
            self._sender = SenderThread(sender)
            self._writer.on_written = self._sender.wake.set
            self._sender.start()
        if self._mode == "sync":
            self._put = self._put_sync
            self._put_sized = self._put_sync_sized
        else:
            self._put = self._writer.current_put()
            self._put_sized = self._writer.put_sized
            self._writer.on_put_changed = self._switch_put

    def _switch_put(self, put: Callable[[tuple[Any, ...]], None]) -> None:
        """From the writer's watchdog: the bare append while the in-memory queue is short, else the bounded put."""
        with self._lock:
            writer = self._writer
            current = self._put
            if not self._stopped and writer is not None and (current == writer.put or current == writer.queue.append):
                self._put = put

    def _put_unsized(self, item: tuple[Any, ...], size: int) -> None:
        self._put(item)

    def _put_op(self, item: tuple[Any, ...]) -> None:
        """A non-point operation: bounded by the bytes it holds too."""
        self._put_sized(item, item_bytes(item))

    def _put_control(self, item: tuple[Any, ...]) -> None:
        """A state change: never dropped for a full in-memory queue."""
        if self._writer is None or self._put == self._put_restart or self._put == self._put_stopped:
            self._put(item)
        else:
            self._writer.queue.append(item)

    def _on_run_created(self, run: dict[str, Any], existed: bool) -> None:
        """The sender created (or found, for a shared ``custom_run_id``) the run on the server."""
        state = self._info.get("state")
        self._info.update(run)
        if state in ("failed", "aborted"):  # marked before the server answered: the answer's "running" is older
            self._info["state"] = state
        if existed and self._api is not None:
            # Another process of this run may have left operations queued on this machine: send them first.
            from .init import sync_leftovers

            sync_leftovers(self._api, str(run["uuid"]))

    def _put_sync(self, item: tuple[Any, ...]) -> None:
        self._put_sync_sized(item, 0)

    def _put_sync_sized(self, item: tuple[Any, ...], size: int) -> None:
        assert self._writer is not None
        self._writer.put_sized(item, size)
        end = time.monotonic() + self._sync_timeout
        while True:
            if self._quota_blocked() is not None:
                return  # nothing is acknowledged until the quota is raised: waiting would only stall training
            # In slices of a second, so that a quota found meanwhile ends the wait.
            slice_end = min(end, time.monotonic() + 1.0)
            if self.wait(max(0.0, slice_end - time.monotonic())):
                return
            now = time.monotonic()
            if now >= end or now < slice_end - 0.05:  # timed out, or the wait ended early (sending stopped)
                break
        warn(
            f"runstore: sync mode: the server did not acknowledge within {self._sync_timeout:.0f}s "
            "(RUNSTORE_SYNC_TIMEOUT); continuing, the operation stays queued",
            once_key=f"sync-timeout:{id(self)}",
        )

    def _read_only(self, item: tuple[Any, ...]) -> None:
        raise ReadOnlyError(
            "this run was opened with mode='read-only'; open it with mode='async' (and with_id=) to write"
        )

    def _put_stopped(self, item: tuple[Any, ...]) -> None:
        warn("runstore: the run is stopped; writes to it are ignored", once_key=f"stopped:{id(self)}")

    def _after_fork(self) -> None:
        """In a forked child: the parent's threads are gone; restart them on the first write."""
        if self._mode not in ("async", "sync", "offline") or self._stopped:
            return
        self._pid = os.getpid()
        self._put = self._put_restart
        self._put_sized = self._put_unsized

    def _put_restart(self, item: tuple[Any, ...]) -> None:
        with self._lock:
            if self._put == self._put_restart:
                try:
                    self._fork_queue()
                except Exception as exc:  # noqa: BLE001
                    bug(exc, "restarting the workers after fork")
                    self._put = self._put_stopped
                    self._put_sized = self._put_unsized
                    return
        self._put(item)

    def _fork_queue(self) -> None:
        assert self._qdir is not None and self._writer is not None
        meta = self._qdir.read_meta()
        meta["stream"] = uuid_module.uuid4().hex
        qdir = new_queue_dir(meta)
        self._qdir = qdir
        self._last_steps = dict(self._writer.last_steps)
        self._stats = Stats()
        self._start_workers()

    def _reader(self) -> Any:
        if self._debug is not None:
            return self._debug
        if self._api is None:
            raise RunstoreError("an offline run cannot be read; run `runstore sync` and open it with mode='read-only'")
        timeout = self._settings.fetch_timeout
        if self._mode != "read-only" and not self._stopped:
            self.wait(timeout=timeout)
        ref = self._info.get("uuid")
        if not ref and self._sender is not None:
            ref = self._sender.sender.run_uuid
        if not ref:
            raise self._not_created(timeout)
        return Reader(self._api, str(ref))

    def _run_id(self) -> str:
        """``sys/id``: known once the server created the run; waits for that at most ``RUNSTORE_FETCH_TIMEOUT``."""
        if self._info.get("id") or self._sender is None:
            return str(self._info["id"]) if self._info.get("id") else str(self._reader().fetch("sys/id"))
        timeout = self._settings.fetch_timeout
        end = time.monotonic() + timeout
        while not self._info.get("id"):
            if self._sender.failed or not self._sender.alive() or time.monotonic() >= end:
                raise self._not_created(timeout)
            time.sleep(0.05)
        return str(self._info["id"])

    def _not_created(self, timeout: float) -> NetworkError:
        assert self._api is not None
        if self._sender is not None and self._sender.failed:
            reason = self._sender.failed
        else:
            reason = (
                f"the last attempt failed with: {self._stats.last_error}" if self._stats.last_error else "no answer yet"
            )
        return NetworkError(
            f"the run is not created on the server yet: {self._api.url} has not answered within {timeout:g}s "
            f"(RUNSTORE_FETCH_TIMEOUT); {reason}. Logging goes on; the run is created when the server answers."
        )

    # -- fields -----------------------------------------------------------------
    def __getitem__(self, path: str) -> Handler:
        try:
            return self._handlers[path]
        except (KeyError, TypeError):
            pass
        check_path(path)
        if len(self._handlers) > 100_000:
            self._handlers.clear()
        handler = self._handlers[path] = Handler(self, path)
        return handler

    def __setitem__(self, path: str, value: Any) -> None:
        self[path].assign(value)

    def __delitem__(self, path: str) -> None:
        self[path].delete()

    def __contains__(self, path: str) -> bool:
        return self.exists(path)

    def assign(self, value: dict[str, Any], *, wait: bool = False) -> None:
        """Assign a dict of fields at the root: ``run.assign({"parameters": {...}})``."""
        if not isinstance(value, dict):
            raise TypeError("Run.assign takes a dict of fields; use run[path] = value for one field")
        for key, sub in value.items():
            self[str(key)].assign(sub)
        if wait:
            self.wait()

    def exists(self, path: str) -> bool:
        return bool(self._reader().exists(path))

    def fetch(self) -> dict[str, Any]:
        """Every field as a nested dict (series give their last value)."""
        return dict(self._reader().fetch(""))

    def __repr__(self) -> str:
        ident = self._info.get("id") or self._info.get("uuid") or "(not created yet)"
        return f"<Run {ident} mode={self._mode}>"

    @property
    def mode(self) -> str:
        return self._mode

    # -- delivery ---------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Return when every operation so far is on local disk (True), or after ``timeout`` (False)."""
        if self._writer is None or os.getpid() != self._pid:
            return True
        if not self._writer.alive():
            return False
        return self._writer.flush(timeout) is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Return when every operation so far is acknowledged by the server (True), or after ``timeout``."""
        if self._writer is None or os.getpid() != self._pid:
            return True
        end = None if timeout is None else time.monotonic() + timeout
        if not self._writer.alive():
            return False
        position = self._writer.flush(timeout)
        if position is None:
            return False
        if self._sender is None:
            return self._mode == "offline"
        remaining = None if end is None else max(0.0, end - time.monotonic())
        return self._sender.wait_for(position, remaining)

    def _quota_blocked(self) -> dict[str, Any] | None:
        blocked = self._stats.blocked
        return blocked if blocked is not None and blocked.get("kind") == "quota" else None

    def _rate_limited(self) -> dict[str, Any] | None:
        blocked = self._stats.blocked
        if blocked is None or blocked.get("kind") != "rate_limited" or float(blocked["until"]) <= time.time():
            return None
        return blocked

    def status(self) -> dict[str, Any]:
        """Counters: errors, dropped and rejected operations, operations written and acknowledged; and
        what holds sending back at the server: ``quota`` (a storage or count quota of the workspace:
        workspace, quota, used, limit, message, since), ``rate_limited`` (retry_in seconds and the
        server's RateLimit-* values) and ``blocked`` (either, as one line)."""
        pending = max(0, self._stats.written_ops - self._stats.acked_ops)
        quota = self._quota_blocked()
        throttled = self._rate_limited()
        now = time.time()
        return {
            "mode": self._mode,
            "errors": self._stats.errors,
            "last_error": self._stats.last_error,
            "dropped_operations": self._stats.dropped_ops,
            "dropped_in_memory": self._stats.dropped_memory_ops,
            "rejected_operations": self._stats.rejected_ops,
            "pending_operations": pending,
            "queue_dir": str(self._qdir.path) if self._qdir is not None else None,
            "sending_failed": self._sender.failed if self._sender is not None else None,
            "blocked": describe_block(quota or throttled or {}, now=now) if (quota or throttled) else None,
            "quota": {k: quota.get(k) for k in ("workspace", "quota", "used", "limit", "message", "since")}
            if quota
            else None,
            "rate_limited": {
                "retry_in": max(0.0, float(throttled["until"]) - now),
                **{k: throttled.get(k) for k in ("limit", "remaining", "reset")},
            }
            if throttled
            else None,
        }

    @property
    def error_count(self) -> int:
        return self._stats.errors

    # -- the end ----------------------------------------------------------------
    def fail(self, exc: BaseException | str) -> None:
        """Mark the run failed and store the traceback (``sys/failure``)."""
        if self._mode == "read-only" or self._stopped:
            return
        text = exc if isinstance(exc, str) else "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            self["sys/failure"] = text
            self._put_control((None, "ctl", {"t": "state", "state": "failed"}))
            self._info["state"] = "failed"
        except Exception as error:  # noqa: BLE001
            bug(error, "marking the run failed")

    def _mark(self, state: str) -> None:
        if self._mode == "read-only" or self._stopped or self._info.get("state") in ("failed", "aborted"):
            return
        self._put_control((None, "ctl", {"t": "state", "state": state}))
        self._info["state"] = state

    def stop(self, timeout: float | None = None) -> None:
        """Finish the run: flush, send what is queued, stop the workers. The wait for the server lasts
        while it makes progress: it ends after ``stall_timeout`` (``RUNSTORE_STALL_TIMEOUT``, 30 s)
        without an acknowledgement, and after ``timeout`` (``RUNSTORE_STOP_TIMEOUT``, 300 s) in all.
        Ctrl-C twice abandons the wait. What is left stays on disk; a warning gives the number of
        operations and the ``runstore sync`` command that sends them."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        unregister(self)
        self._stop_capture()
        if self._writer is None or os.getpid() != self._pid or self._put == self._put_restart:
            # Read-only/debug runs, and a forked child that never wrote: nothing of ours to deliver.
            self._put = self._put_stopped if self._mode != "read-only" else self._read_only
            self._put_sized = self._put_unsized
            return
        if self._info.get("state") not in ("failed", "aborted"):
            self._queue.append((None, "ctl", {"t": "state", "state": "finished"}))
        if timeout is None:
            timeout = self._settings.stop_timeout
        self._put = self._put_stopped
        self._put_sized = self._put_unsized
        delivered: bool | str = False
        try:
            delivered = self._drain(timeout)
        finally:
            if self._sender is not None:
                self._sender.stop(5)
            self._writer.close(10)
            assert self._qdir is not None
            if delivered is True and self._sender is not None and self._sender.sender.finished():
                self._sender.sender.remove_queue()
            else:
                self._qdir.unlock()
                left = self._qdir.path
                pending = max(0, self._stats.written_ops - self._stats.acked_ops)
                if self._mode == "offline":
                    warn(
                        f"runstore: offline run saved in {left} ({pending} operations); upload it with: {sync_command(left)}"
                    )
                else:
                    why = f" ({delivered})" if isinstance(delivered, str) else ""
                    warn(
                        f"runstore: {pending} operations did not reach the server{why}; they are kept in {left}; "
                        f"send them later with: {sync_command(left)}"
                    )

    def _drain(self, timeout: float) -> bool | str:
        """True when everything is acknowledged; else False or why the wait ended."""
        assert self._writer is not None
        if not self._writer.alive():
            return False
        interrupted = 0

        def keep_waiting() -> bool:
            """After a Ctrl-C: the first asks for a second, which abandons the wait."""
            nonlocal interrupted
            interrupted += 1
            try:
                if interrupted < 2:
                    sys.stderr.write(
                        "\nrunstore: still sending; press Ctrl-C again to stop waiting (the rest stays on disk for `runstore sync`)\n"
                    )
                    sys.stderr.flush()
                    return True
            except KeyboardInterrupt:
                pass
            warn("runstore: abandoned waiting for the server; the queue stays on disk for `runstore sync`")
            return False

        while True:  # the writer's flush is part of the wait: a Ctrl-C during it is the first of two too
            try:
                position = self._writer.flush(min(timeout, 60.0))
                break
            except KeyboardInterrupt:
                if not keep_waiting():
                    return False
        if position is None:
            return False
        if self._sender is None:
            return False
        end = time.monotonic() + timeout
        stall = self._settings.stall_timeout
        started = time.monotonic()
        # A quota may have been raised since the last (slow) retry: try again now rather than later.
        self._sender.sender.retry_now.set()
        progress: Progress | None = None
        start_ops = self._stats.acked_ops
        try:
            while True:
                try:
                    now = time.monotonic()
                    remaining = end - now
                    if remaining <= 0:
                        return f"gave up after {timeout:g}s, RUNSTORE_STOP_TIMEOUT"
                    throttled = self._rate_limited()
                    if throttled is not None:
                        # Waiting as the server told (Retry-After) is not a stall.
                        started = max(started, now + float(throttled["until"]) - time.time())
                    if now - max(started, self._stats.progress_at) >= stall:
                        quota = self._quota_blocked()
                        if quota is not None:
                            return (
                                f"{describe_block(quota)}: {quota.get('message')}; raise the quota "
                                f"(no acknowledgement for {stall:g}s, stall_timeout / RUNSTORE_STALL_TIMEOUT)"
                            )
                        return f"no acknowledgement for {stall:g}s, stall_timeout / RUNSTORE_STALL_TIMEOUT; last error: {self._stats.last_error}"
                    if self._sender.wait_for(position, min(remaining, 0.5)):
                        return True
                    if self._sender.failed:
                        return self._sender.failed
                    pending = max(0, self._stats.written_ops - self._stats.acked_ops)
                    if progress is None and pending > 1000:
                        progress = Progress("runstore: sending", total=pending)
                    if progress is not None:
                        progress.update(self._stats.acked_ops - start_ops)
                except KeyboardInterrupt:
                    if not keep_waiting():
                        return False
        finally:
            if progress is not None:
                progress.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, KeyboardInterrupt):
            self._mark("aborted")
        elif exc is not None and not isinstance(exc, (SystemExit, GeneratorExit)):
            self.fail(exc)
        self.stop()

    # -- capture ----------------------------------------------------------------
    def _start_capture(
        self, *, stdout: bool, stderr: bool, hardware: bool, source: bool, environment: bool, namespace: str
    ) -> None:
        if stdout:
            tee = capture.StreamTee(sys.stdout, self, f"{namespace}/stdout")
            sys.stdout = tee
            self._tees.append(("stdout", tee))
        if stderr:
            tee = capture.StreamTee(sys.stderr, self, f"{namespace}/stderr")
            sys.stderr = tee
            self._tees.append(("stderr", tee))
        if hardware:
            self._monitor = capture.Monitor(self, self._settings.monitoring_interval, namespace)
            self._monitor.start()
        if source or environment:

            def collect() -> None:
                for enabled, function in ((source, capture.source_code), (environment, capture.environment)):
                    if enabled:
                        try:
                            function(self)
                        except Exception as exc:  # noqa: BLE001
                            bug(exc, f"capturing {function.__name__}")

            thread = threading.Thread(target=collect, name="runstore-capture", daemon=True)
            thread.start()
            self._capture_thread = thread

    def _stop_capture(self) -> None:
        thread = getattr(self, "_capture_thread", None)
        if thread is not None:
            thread.join(30)
        if self._monitor is not None:
            self._monitor.stop()
        for name, tee in reversed(self._tees):
            tee.flush_line()
            if getattr(sys, name) is tee:
                setattr(sys, name, tee._stream)
        self._tees.clear()

"""Celery beat that schedules only while it holds a lock, so a second beat cannot double-schedule.

Run as many ``celery -A tracker beat`` processes as you like (one per host, for fail-over): the
one holding the lock sends the periodic tasks, the others stand by and take over within
``RUNSTORE_BEAT_LOCK_TTL`` seconds of the holder's death. The lock lives in Redis
(``RUNSTORE_BEAT_LOCK_URL``, by default the Celery broker when it is Redis): a key set with
``NX`` and a time to live, renewed by its holder every third of the TTL, compared on its
random value before it is renewed or released. On the embedded filesystem broker (one machine)
it is an ``flock`` on a file under ``var/``.

``CELERY_BEAT_SCHEDULER`` names this class, so ``celery beat`` and the beat inside a worker
(``worker -B``, as ``make run`` starts) both use it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from pathlib import Path

from celery.beat import PersistentScheduler
from django.conf import settings

logger = logging.getLogger("tracker.beat")

# Renew our key if it still holds our value (and set its TTL); 1 if we hold it.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class RedisLock:
    def __init__(self, url: str, key: str, ttl: float):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.key, self.ttl_ms = key, int(ttl * 1000)
        self.token = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex}"

    def acquire_or_renew(self) -> bool:
        if self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms):
            return True
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def release(self) -> None:
        self.client.eval(_RELEASE, 1, self.key, self.token)


class FileLock:
    """One machine only (the embedded mode): the kernel drops the lock when the process dies."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fd: int | None = None

    def acquire_or_renew(self) -> bool:
        if self.fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def make_lock() -> RedisLock | FileLock:
    url = settings.RUNSTORE_BEAT_LOCK_URL
    if url:
        return RedisLock(url, settings.RUNSTORE_BEAT_LOCK_KEY, settings.RUNSTORE_BEAT_LOCK_TTL)
    return FileLock(settings.VAR_DIR / "celery" / "beat.lock")


class LockedScheduler(PersistentScheduler):
    """A :class:`PersistentScheduler` whose ticks send nothing unless this beat holds the lock."""

    def __init__(self, *args, **kwargs):
        self._lock = make_lock()
        self._ttl = float(settings.RUNSTORE_BEAT_LOCK_TTL)
        self._confirmed_at: float | None = None  # monotonic time the lock was last confirmed ours
        self._standing_by = False
        super().__init__(*args, **kwargs)

    def _holds_lock(self) -> bool:
        now = time.monotonic()
        if self._confirmed_at is not None and now - self._confirmed_at < self._ttl / 3:
            return True
        try:
            held = self._lock.acquire_or_renew()
        except Exception as exc:  # the lock store is down: schedule nothing rather than risk twice
            logger.warning("beat lock store unreachable (%s): not scheduling", exc)
            held = False
        if held:
            if self._confirmed_at is None:
                logger.info("beat lock acquired: this beat schedules the periodic tasks")
            self._confirmed_at, self._standing_by = now, False
        else:
            if self._confirmed_at is not None:
                logger.warning("beat lock lost: another beat schedules now")
            elif not self._standing_by:
                logger.info("beat lock held by another beat: standing by")
            self._confirmed_at, self._standing_by = None, True
        return held

    def tick(self, *args, **kwargs):
        if not self._holds_lock():
            return min(self._ttl / 3, self.max_interval)
        return min(super().tick(*args, **kwargs), self._ttl / 3)

    def close(self):
        try:
            super().close()
        finally:
            if self._confirmed_at is not None:
                try:
                    self._lock.release()
                except Exception:  # expiry frees it anyway
                    logger.warning("could not release the beat lock; it expires in %s s", self._ttl)
                self._confirmed_at = None

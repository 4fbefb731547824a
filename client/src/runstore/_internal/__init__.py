"""Internals of the client. Nothing here is public API.

Two ways a swallowed problem is surfaced:

* ``warn(message)`` for the expected failures of the plumbing (server down,
  429/5xx, an operation the server rejects, a full disk): a ``logging``
  warning on the ``runstore`` logger, optionally once per key.
* ``bug(exc, context)`` for an unexpected exception caught in a worker so
  that it cannot reach the training job. It logs the traceback and calls
  ``on_internal_error``, a hook tests set to record the error and fail.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("runstore")

on_internal_error: Callable[[BaseException], None] | None = None

_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn(message: str, *, once_key: str | None = None, level: int = logging.WARNING) -> None:
    if once_key is not None:
        with _warned_lock:
            if once_key in _warned:
                return
            _warned.add(once_key)
    logger.log(level, message)


def bug(exc: BaseException, context: str) -> None:
    logger.error("runstore: internal error while %s: %r", context, exc, exc_info=exc)
    hook = on_internal_error
    if hook is not None:
        hook(exc)


def forget_warnings() -> None:
    with _warned_lock:
        _warned.clear()

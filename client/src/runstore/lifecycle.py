"""The process around live runs: stop them at exit, mark them failed on an uncaught exception,
restart their workers in a forked child."""

from __future__ import annotations

import atexit
import os
import sys
import weakref
from types import TracebackType
from typing import TYPE_CHECKING

from ._internal import bug

if TYPE_CHECKING:
    from .run import Run

live: weakref.WeakSet[Run] = weakref.WeakSet()
_hooks_installed = False


def register(run: Run) -> None:
    """Track a live run; the first one installs the atexit, excepthook and fork hooks."""
    global _hooks_installed
    live.add(run)
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(stop_all)
    previous = sys.excepthook

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        for run in list(live):
            if issubclass(exc_type, KeyboardInterrupt):
                run._mark("aborted")
            else:
                run.fail(exc.with_traceback(tb))
        previous(exc_type, exc, tb)

    sys.excepthook = excepthook
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=after_fork)


def unregister(run: Run) -> None:
    live.discard(run)


def after_fork() -> None:
    for run in list(live):
        run._after_fork()


def stop_all() -> None:
    for run in list(live):
        try:
            run.stop()
        except Exception as exc:  # noqa: BLE001 - at exit, nothing may raise
            bug(exc, "stopping the run at exit")

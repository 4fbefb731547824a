"""A minimal progress bar on stderr (only when stderr is a terminal or forced)."""

from __future__ import annotations

import os
import sys
import time


class Progress:
    def __init__(self, label: str, total: int, *, force: bool | None = None):
        self.label = label
        self.total = max(1, total)
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0
        stream = sys.__stderr__
        self.enabled = (
            force
            if force is not None
            else bool(stream and stream.isatty()) or os.environ.get("RUNSTORE_PROGRESS") == "1"
        )

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = max(1, total)
        now = time.monotonic()
        if self.enabled and now - self._last >= 0.2:
            self._last = now
            self._draw()

    def _draw(self, end: str = "\r") -> None:
        stream = sys.__stderr__
        if stream is None:
            return
        fraction = min(1.0, self.done / self.total)
        width = 30
        bar = "#" * int(fraction * width) + "-" * (width - int(fraction * width))
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        stream.write(f"{self.label} [{bar}] {self.done}/{self.total} ({rate:,.0f}/s){end}")
        stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw("\n")

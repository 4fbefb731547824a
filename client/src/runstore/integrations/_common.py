"""What every integration shares: the run it logs to, values made loggable, series with increasing steps."""

from __future__ import annotations

import datetime as dt
import enum
import math
import numbers
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import runstore

MAX_DEPTH = 8


class RunHolder:
    """The run an integration logs to: the one it was given, or one it starts (and then stops) itself.

    ``run=None`` starts a run lazily with ``runstore.init_run(**init_kwargs)`` (so ``RUNSTORE_PROJECT``,
    ``RUNSTORE_API_TOKEN`` and ``RUNSTORE_URL`` apply); a run passed in is never stopped by the integration.
    """

    def __init__(self, run: runstore.Run | None, prefix: str, init_kwargs: dict[str, Any]):
        self._run = run
        self._init_kwargs = init_kwargs
        self.prefix = prefix.strip("/")
        self._last_steps: dict[str, int] = {}

    @property
    def run(self) -> runstore.Run:
        if self._run is None:
            self._run = runstore.init_run(**self._init_kwargs)
        return self._run

    @property
    def started(self) -> bool:
        return self._run is not None

    def path(self, *parts: str) -> str:
        """The field path of ``parts`` under the prefix; names from frameworks (metric keys, parameter
        names) are made valid: no empty segments or surrounding blanks, 128 characters at most each."""
        segments = [seg.strip()[:128] for part in (self.prefix, *parts) for seg in str(part).split("/")]
        return "/".join(seg for seg in segments if seg)

    def handler(self, *parts: str) -> runstore.Handler:
        return self.run[self.path(*parts)]

    def append(self, name: str, value: Any, step: int | None) -> bool:
        """Append ``value`` to the series ``name`` (under the prefix) at ``step``; a number only, and only
        when the step is after the series' last one (frameworks repeat a step across calls, e.g. the
        epoch number with every log call). Returns whether the point was logged."""
        number = as_number(value)
        if number is None:
            return False
        path = self.path(name)
        if step is not None:
            step = int(step)
            last = self._last_steps.get(path)
            if last is not None and step <= last:
                return False
            self._last_steps[path] = step
        self.run[path].append(number, step=step)
        return True

    def flush(self) -> None:
        """Put what was logged so far on local disk (a run the integration started goes on until
        ``run.stop()`` or the end of the process, so a later ``trainer.test`` still logs to it)."""
        if self._run is not None:
            self._run.flush()


def as_number(value: Any) -> float | None:
    """A loggable number from a Python/numpy/torch scalar, or None (tensors of more than one value,
    strings and the like are not metrics)."""
    if hasattr(value, "item") and callable(value.item):
        size = getattr(value, "size", None)
        count = value.numel() if hasattr(value, "numel") else (size if isinstance(size, int) else 1)
        if count != 1:
            return None
        value = value.item()
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return None


def loggable(value: Any, depth: int = 0) -> Any:
    """``value`` as something ``Run.assign`` stores: dicts stay namespaces (with str keys), numbers, strings,
    dates and paths stay as they are, lists/tuples of plain values stay lists, None becomes "None" and
    any other object its ``str``. Hyper-parameter dicts hold all of these."""
    if isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            return str(value)
        out = {}
        for key, sub in value.items():
            name = clean_key(key)
            if name:
                out[name] = loggable(sub, depth + 1)
        return out
    if isinstance(value, enum.Enum):
        return loggable(value.value, depth)
    if isinstance(value, (bool, str, dt.date, PurePath)):
        return value
    number = as_number(value) if not isinstance(value, (list, tuple, set, frozenset)) else None
    if number is not None:
        if isinstance(value, numbers.Integral) or (hasattr(value, "dtype") and "int" in str(value.dtype)):
            return int(number)
        return number if not math.isnan(number) else "nan"
    if isinstance(value, (list, tuple)):
        items = [loggable(v, depth + 1) for v in value]
        if all(isinstance(v, (bool, int, float, str)) for v in items):
            return items if isinstance(value, list) else tuple(items)
        return str(items)
    if value is None:
        return "None"
    return str(value)


def clean_key(key: Any) -> str:
    """A field-path segment from a dict key: no slashes (they would nest), no surrounding blanks."""
    text = str(key).replace("/", "_").strip()
    return "".join(ch if ch.isprintable() else "_" for ch in text)[:128]


def log_params(holder: RunHolder, name: str, params: Mapping[str, Any]) -> None:
    """Assign a dict of parameters as a namespace under the prefix (nothing when it is empty)."""
    values = loggable(params)
    if values:
        holder.handler(name).assign(values)

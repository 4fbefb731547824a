"""Validation and conversion of user values, at the call (TypeError/ValueError name the path)."""

from __future__ import annotations

import datetime as dt
import io
import math
import unicodedata
from decimal import Decimal
from fractions import Fraction
from pathlib import PurePath
from typing import Any

from ..file import File, is_image_like

ASSIGN_TYPES = (
    "bool, int, float, str, datetime/date, pathlib.Path, numpy scalars and arrays, pandas DataFrame/Series, "
    "runstore.File, a dict (a namespace of fields) or a list/tuple/set"
)
APPEND_TYPES = (
    "a number (int, float, bool, numpy scalar, 0-d array or tensor), a str, a runstore.File, "
    "or an image (PIL image, numpy H×W[×C] array, matplotlib figure)"
)
WRITABLE_SYS = {"sys/name", "sys/description", "sys/tags", "sys/failure", "sys/hostname", "sys/group_tags"}
INT64 = 2**63
MAX_STRING_BYTES = 64 * 1024
MAX_LIST_AS_STRING = 10_000


def check_path(path: Any, *, write: bool = False) -> str:
    if not isinstance(path, str):
        raise TypeError(f"a field path must be a str like 'train/loss', not {type(path).__name__}")
    if not path or len(path) > 512:
        raise ValueError(f"invalid field path {path!r}: must be 1-512 characters")
    segments = path.split("/")
    if len(segments) > 32:
        raise ValueError(f"invalid field path {path!r}: more than 32 segments")
    for segment in segments:
        if not segment:
            raise ValueError(f"invalid field path {path!r}: empty segment (leading, trailing or double '/')")
        if segment != segment.strip() or len(segment) > 128:
            raise ValueError(
                f"invalid field path {path!r}: a segment starts/ends with white space or is over 128 characters"
            )
        for char in segment:
            if unicodedata.category(char) in ("Cc", "Cs", "Cn"):
                raise ValueError(f"invalid field path {path!r}: control character {char!r}")
    if write and path.startswith("sys/") and path not in WRITABLE_SYS:
        raise ValueError(f"{path} is read-only; the writable sys/ fields are {', '.join(sorted(WRITABLE_SYS))}")
    return path


def join(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix else key


def _numpy_scalar(value: Any) -> Any:
    """numpy/torch scalars and 0-d arrays → a Python scalar; anything else unchanged."""
    module = type(value).__module__
    if module.startswith(("numpy", "torch", "jax", "tensorflow")):
        size = getattr(value, "size", None)
        if callable(size):  # torch: .size() is a method
            size = value.numel() if hasattr(value, "numel") else None
        if (getattr(value, "ndim", None) == 0 or size == 1) and hasattr(value, "item"):
            return value.item()
    return value


def to_datetime(value: dt.date) -> str:
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    if value.tzinfo is None:
        value = value.astimezone()  # naive means local time, as everywhere in Python
    return value.astimezone(dt.timezone.utc).isoformat()


def truncate(text: str) -> str:
    if len(text) * 4 <= MAX_STRING_BYTES:
        return text
    data = text.encode("utf-8", "replace")
    if len(data) <= MAX_STRING_BYTES:
        return text
    return data[: MAX_STRING_BYTES - 3].decode("utf-8", "ignore") + "…"


def clean_string(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return truncate(text)


def assign_value(path: str, value: Any) -> tuple[str, Any]:
    """Convert one leaf value for ``assign``. Returns (wire type, value) or ("file", File)."""
    value = _numpy_scalar(value)
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, int):
        return ("int", value) if -INT64 <= value < INT64 else ("float", float(value))
    if isinstance(value, float):
        return "float", value
    if isinstance(value, (Decimal, Fraction)):
        return "float", float(value)
    if isinstance(value, str):
        return "string", clean_string(value)
    if isinstance(value, dt.date):
        return "datetime", to_datetime(value)
    if isinstance(value, PurePath):
        return "string", clean_string(str(value))
    if isinstance(value, File):
        return "file", value
    module = type(value).__module__
    if module.startswith("pandas"):
        if hasattr(value, "to_pydatetime"):  # Timestamp
            return "datetime", to_datetime(value.to_pydatetime())
        if hasattr(value, "to_csv"):
            return "file", File(
                content=value.to_csv().encode("utf-8"), name=f"{path.rsplit('/', 1)[-1]}.csv", mime_type="text/csv"
            )
    if module.startswith("numpy") and hasattr(value, "tolist"):
        if value.dtype.kind == "M":  # datetime64
            return assign_value(path, value.astype("datetime64[us]").item())
        if value.size > MAX_LIST_AS_STRING:
            import numpy as np

            buffer = io.BytesIO()
            np.save(buffer, value)
            return "file", File(
                content=buffer.getvalue(), name=f"{path.rsplit('/', 1)[-1]}.npy", mime_type="application/octet-stream"
            )
        value = value.tolist()
    if isinstance(value, (set, frozenset)) or (
        isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value)
    ):
        if all(isinstance(v, str) for v in value):
            return "string_set", sorted({clean_string(v)[:1024] for v in value})
    if isinstance(value, (list, tuple, set, frozenset)):
        # Like hyper-parameter lists in other trackers: stored as their text.
        return "string", clean_string(
            repr([_plain(v) for v in value]) if not isinstance(value, tuple) else repr(tuple(_plain(v) for v in value))
        )
    raise TypeError(
        f"cannot assign {type(value).__module__}.{type(value).__qualname__} to {path!r}; accepted: {ASSIGN_TYPES}"
    )


def _plain(value: Any) -> Any:
    value = _numpy_scalar(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def flatten(path: str, value: dict[Any, Any], out: list[tuple[str, Any]]) -> None:
    for key, sub in value.items():
        if not isinstance(key, str):
            key = str(_numpy_scalar(key)) if isinstance(_numpy_scalar(key), (int, float, bool)) else None
            if key is None:
                raise TypeError(f"dict keys under {path!r} must be str (or numbers), not {type(key).__name__}")
        sub_path = join(path, key)
        if isinstance(sub, dict):
            flatten(sub_path, sub, out)
        else:
            out.append((sub_path, sub))


def append_value(path: str, value: Any) -> Any:
    """The slow path of ``append``: returns a float, str or File."""
    scalar = _numpy_scalar(value)
    if type(scalar) in (float, int, str):
        return scalar
    if isinstance(scalar, bool):
        return float(scalar)
    if isinstance(scalar, (int, float, Decimal, Fraction)):
        return float(scalar)
    if isinstance(scalar, str):
        return str(scalar)
    if isinstance(scalar, File):
        return scalar
    if is_image_like(value):
        return File.as_image(value)
    if isinstance(scalar, PurePath):
        return str(scalar)
    raise TypeError(
        f"cannot append {type(value).__module__}.{type(value).__qualname__} to series {path!r}; accepted: {APPEND_TYPES}"
    )


def check_step(path: str, step: Any) -> int:
    step = _numpy_scalar(step)
    if isinstance(step, bool) or not isinstance(step, (int, float)):
        raise TypeError(f"step of {path!r} must be an int, not {type(step).__name__}")
    if isinstance(step, float):
        if not step.is_integer():
            raise ValueError(f"step of {path!r} must be a whole number, got {step}")
        step = int(step)
    if not 0 <= step < INT64:
        raise ValueError(f"step of {path!r} must be between 0 and 2**63-1, got {step}")
    return int(step)


def check_timestamp(path: str, timestamp: Any) -> float:
    if isinstance(timestamp, dt.datetime):
        return (timestamp if timestamp.tzinfo else timestamp.astimezone()).timestamp()
    timestamp = _numpy_scalar(timestamp)
    if hasattr(timestamp, "timestamp") and callable(timestamp.timestamp):
        return float(timestamp.timestamp())
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp):
        raise TypeError(f"timestamp of {path!r} must be unix seconds (float) or a datetime, not {timestamp!r}")
    return float(timestamp)


def to_list(path: str, values: Any, what: str = "values") -> list[Any]:
    if values is None:
        raise TypeError(f"{what} of {path!r} must be a list, array or Series, not None")
    if isinstance(values, (str, bytes, dict)):
        raise TypeError(f"{what} of {path!r} must be a list, array or Series, not {type(values).__name__}")
    if hasattr(values, "tolist") and getattr(values, "ndim", 1) == 1:
        return list(values.tolist())
    try:
        return list(values)
    except TypeError:
        raise TypeError(f"{what} of {path!r} must be a list, array or Series, not {type(values).__name__}") from None

"""The batch ingestion engine: validate a whole batch, then apply it atomically.

A batch is ``{"stream": str, "seq": int, "ops": [...]}``. ``(run, stream, seq)``
identifies it, so a retried batch is applied once. Operations:

* ``assign``      ``path``, ``value``, optional ``type`` (int, float, bool, string,
  datetime, string_set); a dict value assigns every leaf under ``path``
* ``append``      ``path``, ``kind`` (float (default), string, file), ``values``,
  optional ``steps`` (strictly increasing ints; default: continue from the
  last step) and ``timestamps`` (unix seconds; default: now). In MessagePack, a float
  append may send each of the three as a ``bin`` of packed little-endian items (``values``
  and ``timestamps`` float64, ``steps`` int64): checked and handed on as numpy arrays
* ``add_tags`` / ``remove_tags``  ``path`` (a string set, e.g. ``sys/tags``), ``values``
* ``delete``      ``path``
* ``upload``      ``path``, ``sha256`` of a blob this project uploaded, optional
  ``name``, ``mime_type``: a file field
* ``upload_set``  ``path``, ``files``: ``[{relpath, sha256, mime_type?}]``, optional
  ``replace``: add files to (or replace) a file-set field
* ``track``       ``path``, ``hash``, ``files``: ``[{path, hash, size}]``, optional ``name``,
  ``role`` (input (default) or output), ``location``, ``metadata``: the run consumed or
  produced an artifact version (``runs.artifacts``); uploaded file and file-set fields
  are recorded as the run's outputs

Validation of shapes and values happens before anything is written; type
conflicts with stored fields are found while applying, inside the
transaction, so the whole batch rolls back.
"""

import itertools
import math
import mimetypes
import operator
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Field as ModelField
from django.utils import timezone

from tracker import metrics

from . import maintenance, rollups, usage
from . import series as series_store
from .artifacts import services as artifacts
from .errors import ApiError, BatchError
from .models import Attribute, AttributeType, Blob, FileEntry, ProjectField, Run, RunBatch, RunState, Upload
from .paths import RUN_COLUMN_PATHS, PathError, file_name_error, is_writable, relpath_error, validate_path
from .webhooks import events as webhook_events

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_TIMESTAMP = 253402300800  # 10000-01-01, unix seconds
SPECIAL_FLOATS = {
    "nan": math.nan,
    "inf": math.inf,
    "+inf": math.inf,
    "-inf": -math.inf,
    "infinity": math.inf,
    "+infinity": math.inf,
    "-infinity": -math.inf,
}
SCALAR_TYPES = {"int", "float", "bool", "string", "datetime", "string_set"}
APPEND_KINDS = {
    "float": AttributeType.FLOAT_SERIES,
    "string": AttributeType.STRING_SERIES,
    "file": AttributeType.FILE_SERIES,
}
# The columns a float append may send packed (MessagePack ``bin``: little-endian 8-byte items).
PACKED_DTYPES = {"values": np.dtype("<f8"), "steps": np.dtype("<i8"), "timestamps": np.dtype("<f8")}
OPS = {"assign", "append", "add_tags", "remove_tags", "delete", "upload", "upload_set", "track"}
MAX_TAG_LENGTH = 1024
MAX_SET_SIZE = 10_000
SHA256_CHARS = set("0123456789abcdef")


@dataclass
class Op:
    index: int
    kind: str
    path: str
    type: str | None = None
    value: object = None
    values: list | np.ndarray = field(default_factory=list)  # an array: a float append's packed column
    steps: list | np.ndarray | None = None
    timestamps: list | np.ndarray | None = None
    files: list = field(default_factory=list)
    replace: bool = False


def _fail(index, path, field_name, message, code="invalid", status=400):
    return BatchError(status, code, message, op_index=index, path=path, field=field_name)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _to_float(value, index, path, field_name):
    if _is_number(value):
        if _is_int(value) and not INT64_MIN <= value <= INT64_MAX:
            raise _fail(index, path, field_name, "integer out of the 64-bit range")
        return float(value)
    if isinstance(value, str) and value.strip().lower() in SPECIAL_FLOATS:
        return SPECIAL_FLOATS[value.strip().lower()]
    raise _fail(
        index, path, field_name, f"expected a number (or 'NaN', 'Infinity', '-Infinity'), got {_describe(value)}"
    )


def _describe(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'…' if len(text) > 40 else ''}"


def _check_string(value, index, path, field_name, limit=None):
    if not isinstance(value, str):
        raise _fail(index, path, field_name, f"expected a string, got {_describe(value)}")
    limit = limit or settings.RUNSTORE_MAX_STRING_BYTES
    if len(value) > limit or len(value.encode("utf-8", "surrogatepass")) > limit:
        raise _fail(index, path, field_name, f"string is longer than {limit} bytes")
    if "\x00" in value:
        raise _fail(index, path, field_name, "string contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(index, path, field_name, "string is not valid Unicode (lone surrogate)") from None
    return value


def _parse_datetime(value, index, path):
    if _is_number(value):
        if not math.isfinite(value) or abs(value) > 253402300799:
            raise _fail(index, path, "value", "timestamp out of range")
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _fail(index, path, "value", f"not an ISO 8601 datetime: {value[:40]!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    raise _fail(index, path, "value", f"expected an ISO 8601 string or unix seconds, got {_describe(value)}")


def _string_set(values, index, path, field_name="value"):
    if not isinstance(values, (list, tuple)):
        raise _fail(index, path, field_name, f"expected a list of strings, got {_describe(values)}")
    if len(values) > MAX_SET_SIZE:
        raise _fail(index, path, field_name, f"more than {MAX_SET_SIZE} strings")
    return [_check_string(v, index, path, f"{field_name}[{i}]", MAX_TAG_LENGTH) for i, v in enumerate(values)]


def _scalar(index, path, value, declared):
    """Normalise an assigned value; return (type, python value)."""
    kind = declared
    if kind is None:
        if isinstance(value, bool):
            kind = "bool"
        elif _is_int(value):
            kind = "int"
        elif isinstance(value, float):
            kind = "float"
        elif isinstance(value, str):
            kind = "string"
        elif isinstance(value, (list, tuple)):
            kind = "string_set"
        elif isinstance(value, datetime):
            kind = "datetime"
        else:
            raise _fail(
                index,
                path,
                "value",
                f"cannot store {_describe(value)}; send a number, bool, string, list of strings or set 'type'",
            )
    if kind == "bool":
        if not isinstance(value, bool):
            raise _fail(index, path, "value", f"type bool needs true or false, got {_describe(value)}")
        return kind, value
    if kind == "int":
        if not _is_int(value):
            raise _fail(index, path, "value", f"type int needs an integer, got {_describe(value)}")
        if not INT64_MIN <= value <= INT64_MAX:
            raise _fail(index, path, "value", "integer out of the 64-bit range")
        return kind, value
    if kind == "float":
        return kind, _to_float(value, index, path, "value")
    if kind == "string":
        return kind, _check_string(value, index, path, "value")
    if kind == "datetime":
        return kind, _parse_datetime(value, index, path)
    if kind == "string_set":
        return kind, sorted(set(_string_set(value, index, path)))
    raise _fail(index, path, "type", f"unknown type {kind!r}; expected one of {', '.join(sorted(SCALAR_TYPES))}")


def _flatten(prefix: str, value: dict, out: list, index: int, limit: int):
    """Append the leaves of a nested dict as (path, value) to ``out``; 413 past ``limit`` leaves in
    the batch, since every leaf is one field written (a batch's size is counted in fields, not ops)."""
    if not value:
        return
    for key, sub in value.items():
        if not isinstance(key, str):
            raise _fail(index, prefix, "value", f"dict keys must be strings, got {_describe(key)}")
        path = f"{prefix}/{key}"
        if isinstance(sub, dict):
            _flatten(path, sub, out, index, limit)
        else:
            if len(out) >= limit:
                raise BatchError(
                    413,
                    "batch_too_large",
                    f"a batch writes at most {settings.RUNSTORE_MAX_BATCH_OPS} fields (a dict counts each of its leaves)",
                    op_index=index,
                    path=prefix,
                    field="value",
                )
            out.append((path, sub))


def _path(raw, index):
    try:
        return validate_path(raw, write=True)
    except PathError as exc:
        raise _fail(
            index, raw if isinstance(raw, str) else None, "path", f"invalid path: {exc}", code="invalid_path"
        ) from None


def parse_ops(raw_ops) -> list[Op]:
    """Check the shape of every operation; return them normalised. Raises BatchError (400/413)."""
    if not isinstance(raw_ops, list):
        raise BatchError(400, "invalid", f"'ops' must be a list, got {_describe(raw_ops)}", field="ops")
    if len(raw_ops) > settings.RUNSTORE_MAX_BATCH_OPS:
        raise BatchError(
            413,
            "batch_too_large",
            f"a batch holds at most {settings.RUNSTORE_MAX_BATCH_OPS} operations, got {len(raw_ops)}",
            field="ops",
        )
    ops: list[Op] = []
    total_points = 0
    for index, raw in enumerate(raw_ops):
        if not isinstance(raw, dict):
            raise _fail(index, None, None, f"an operation must be an object, got {_describe(raw)}")
        kind = raw.get("op")
        if kind not in OPS:
            raise _fail(
                index,
                None,
                "op",
                f"unknown operation {kind!r}; expected one of {', '.join(sorted(OPS))}",
                code="unknown_op",
            )
        path = _path(raw.get("path"), index)
        if not is_writable(path):
            raise _fail(
                index,
                path,
                "path",
                "is read-only (sys/ fields other than name, description, tags, failure and hostname are set by the server)",
                code="read_only",
            )
        if kind == "assign":
            if "value" not in raw:
                raise _fail(index, path, "value", "is required")
            declared = raw.get("type")
            if declared is not None and declared not in SCALAR_TYPES:
                raise _fail(
                    index, path, "type", f"unknown type {declared!r}; expected one of {', '.join(sorted(SCALAR_TYPES))}"
                )
            if isinstance(raw["value"], dict):
                leaves: list = []
                # the other operations of the batch count against the same limit
                _flatten(
                    path,
                    raw["value"],
                    leaves,
                    index,
                    settings.RUNSTORE_MAX_BATCH_OPS - len(raw_ops) - len(ops) + index + 1,
                )
                for leaf_path, leaf_value in leaves:
                    leaf_path = _path(leaf_path, index)
                    if not is_writable(leaf_path):
                        raise _fail(index, leaf_path, "path", "is read-only", code="read_only")
                    kind_, value = _scalar(index, leaf_path, leaf_value, None)
                    ops.append(Op(index, "assign", leaf_path, type=kind_, value=value))
                continue
            kind_, value = _scalar(index, path, raw["value"], declared)
            if path in RUN_COLUMN_PATHS and kind_ != "string":
                raise _fail(index, path, "value", f"{path} is a string field")
            if path == "sys/tags" and kind_ != "string_set":
                raise _fail(index, path, "value", "sys/tags is a string set")
            ops.append(Op(index, "assign", path, type=kind_, value=value))
        elif kind == "append":
            op = _parse_append(index, path, raw)
            total_points += len(op.values)
            if total_points > settings.RUNSTORE_MAX_BATCH_POINTS:
                raise BatchError(
                    413,
                    "batch_too_large",
                    f"a batch holds at most {settings.RUNSTORE_MAX_BATCH_POINTS} series points",
                    op_index=index,
                    path=path,
                    field="values",
                )
            ops.append(op)
        elif kind in ("add_tags", "remove_tags"):
            if path in RUN_COLUMN_PATHS:
                raise _fail(index, path, "path", f"{path} is a string field, not a string set")
            ops.append(Op(index, kind, path, values=_string_set(raw.get("values"), index, path, "values")))
        elif kind == "delete":
            if path.startswith("sys/"):
                raise _fail(index, path, "path", "sys/ fields cannot be deleted", code="read_only")
            ops.append(Op(index, "delete", path))
        elif kind == "upload":
            entry = _file_ref(index, path, raw, "")
            ops.append(Op(index, "upload", path, files=[entry]))
        elif kind == "upload_set":
            files = raw.get("files")
            if not isinstance(files, list) or not files:
                raise _fail(index, path, "files", "must be a non-empty list of {relpath, sha256}")
            if len(files) > MAX_SET_SIZE:
                raise _fail(index, path, "files", f"at most {MAX_SET_SIZE} files per operation")
            entries = []
            for i, item in enumerate(files):
                if not isinstance(item, dict):
                    raise _fail(index, path, f"files[{i}]", "must be an object with relpath and sha256")
                relpath = item.get("relpath")
                _check_string(relpath, index, path, f"files[{i}].relpath", 1024)
                reason = relpath_error(relpath)
                if reason:
                    raise _fail(
                        index, path, f"files[{i}].relpath", f"{reason}: {relpath[:80]!r}", code="invalid_file_name"
                    )
                entries.append(_file_ref(index, path, item, relpath, prefix=f"files[{i}]."))
            replace = raw.get("replace", False)
            if not isinstance(replace, bool):
                raise _fail(index, path, "replace", "must be true or false")
            ops.append(Op(index, "upload_set", path, files=entries, replace=replace))
        elif kind == "track":
            ops.append(Op(index, "track", path, value=artifacts.parse_track(index, path, raw)))
    return ops


def _file_ref(index, path, raw, relpath, prefix=""):
    sha = raw.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64 or not set(sha) <= SHA256_CHARS:
        raise _fail(index, path, f"{prefix}sha256", "must be 64 lower-case hex characters")
    name = raw.get("name", relpath.rsplit("/", 1)[-1] if relpath else None)
    if name is not None:
        _check_string(name, index, path, f"{prefix}name", 255)
        # The name becomes a file name on whoever downloads the file: a plain base name only.
        reason = file_name_error(name) or (
            "must not be empty (leave it out to use the field's name)" if not name else None
        )
        if reason:
            raise _fail(index, path, f"{prefix}name", f"{reason}: {name[:80]!r}", code="invalid_file_name")
    name = name or ""
    mime = raw.get("mime_type")
    if mime is not None:
        _check_string(mime, index, path, f"{prefix}mime_type", 200)
    return {"sha256": sha, "relpath": relpath, "name": name, "mime_type": mime}


def _parse_append(index, path, raw) -> Op:
    kind = raw.get("kind", "float")
    if kind not in APPEND_KINDS:
        raise _fail(index, path, "kind", f"unknown kind {kind!r}; expected float, string or file")
    if any(isinstance(raw.get(name), bytes) for name in PACKED_DTYPES):
        if kind != "float":
            name = next(name for name in PACKED_DTYPES if isinstance(raw.get(name), bytes))
            raise _fail(index, path, name, f"packed binary columns are only for kind float, not {kind!r}")
        return _parse_packed_append(index, path, raw)
    values = raw.get("values")
    if not isinstance(values, list) or not values:
        raise _fail(index, path, "values", "must be a non-empty list")
    if kind == "float":
        if not _all_type(values, float):
            values = [
                _to_float(v, index, path, f"values[{i}]") if not isinstance(v, float) else v
                for i, v in enumerate(values)
            ]
    elif kind == "string":
        values = [_check_string(v, index, path, f"values[{i}]") for i, v in enumerate(values)]
    else:
        files = []
        for i, item in enumerate(values):
            if not isinstance(item, dict):
                raise _fail(index, path, f"values[{i}]", "must be an object with sha256")
            files.append(_file_ref(index, path, item, "", prefix=f"values[{i}]."))
        values = files
    steps = raw.get("steps")
    if steps is not None:
        if not isinstance(steps, list) or len(steps) != len(values):
            raise _fail(index, path, "steps", f"must be a list as long as values ({len(values)})")
        fast = _all_type(steps, int) and 0 <= steps[0] and steps[-1] <= INT64_MAX
        if not (fast and all(map(operator.lt, steps, steps[1:]))):
            _check_steps(index, path, steps)
    timestamps = raw.get("timestamps")
    if timestamps is not None:
        if not isinstance(timestamps, list) or len(timestamps) != len(values):
            raise _fail(index, path, "timestamps", f"must be a list as long as values ({len(values)})")
        # A finite sum means every element is finite (an Inf or NaN makes the sum so).
        fast = _all_type(timestamps, float) and math.isfinite(sum(timestamps))
        if not (fast and 0 <= min(timestamps) and max(timestamps) < MAX_TIMESTAMP):
            _check_timestamps(index, path, timestamps)
    return Op(index, "append", path, type=APPEND_KINDS[kind], values=values, steps=steps, timestamps=timestamps)


def _packed_column(index, path, raw, name: str, n: int | None) -> np.ndarray | None:
    """One column of a packed append as a numpy array (a read-only view of the request body): a
    ``bin`` of little-endian 8-byte items, or a list (checked as the per-point form checks it)."""
    data = raw.get(name)
    if data is None:
        return None
    if isinstance(data, bytes):
        if len(data) % 8:
            raise _fail(
                index, path, name, f"packed {PACKED_DTYPES[name]} column of {len(data)} bytes: not a multiple of 8"
            )
        column = np.frombuffer(data, dtype=PACKED_DTYPES[name])
    elif isinstance(data, list):
        if n is not None and len(data) != n:
            raise _fail(index, path, name, f"holds {len(data)} items, values holds {n}: the lengths must be equal")
        if name == "values":
            data = [v if type(v) is float else _to_float(v, index, path, f"values[{i}]") for i, v in enumerate(data)]
        elif name == "steps":
            _check_steps(index, path, data)
        else:
            _check_timestamps(index, path, data)
        column = np.asarray(data, dtype=PACKED_DTYPES[name].newbyteorder("="))
    else:
        raise _fail(
            index, path, name, f"expected a bin of packed {PACKED_DTYPES[name]} items or a list, got {_describe(data)}"
        )
    if n is None:
        if not len(column):
            raise _fail(index, path, name, "must not be empty")
    elif len(column) != n:
        raise _fail(index, path, name, f"holds {len(column)} items, values holds {n}: the lengths must be equal")
    return column


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _parse_packed_append(index, path, raw) -> Op:
    """A float append whose columns are packed arrays: checked with numpy, handed on as arrays,
    never a Python object per point."""
    values = _packed_column(index, path, raw, "values", None)
    if values is None:
        raise _fail(index, path, "values", "is required")
    n = len(values)
    steps = _packed_column(index, path, raw, "steps", n)
    if steps is not None:
        if steps[0] < 0:
            raise _fail(index, path, "steps[0]", "must be between 0 and 2**63-1")
        if n > 1:
            bad = steps[1:] <= steps[:-1]
            if bad.any():
                i = _first(bad) + 1
                raise _fail(
                    index,
                    path,
                    f"steps[{i}]",
                    f"steps must increase strictly ({int(steps[i])} after {int(steps[i - 1])})",
                )
    timestamps = _packed_column(index, path, raw, "timestamps", n)
    if timestamps is not None:
        with np.errstate(invalid="ignore"):
            bad = ~((timestamps >= 0) & (timestamps < MAX_TIMESTAMP))  # NaN compares false: bad too
        if bad.any():
            i = _first(bad)
            raise _fail(index, path, f"timestamps[{i}]", f"must be unix seconds, got {float(timestamps[i])!r}")
    return Op(index, "append", path, type=AttributeType.FLOAT_SERIES, values=values, steps=steps, timestamps=timestamps)


def _all_type(items: list, type_) -> bool:
    """Whether every item is exactly of ``type_`` (so ``bool`` is not an ``int``)."""
    return all(map(operator.is_, map(type, items), itertools.repeat(type_)))


def _check_steps(index, path, steps: list) -> None:
    """Element by element, converting integral floats in place; raises on the first bad step."""
    previous = None
    for i, step in enumerate(steps):
        if not _is_int(step):
            if isinstance(step, float) and step.is_integer():
                step = int(step)
                steps[i] = step
            else:
                raise _fail(index, path, f"steps[{i}]", f"must be an integer, got {_describe(step)}")
        if not 0 <= step <= INT64_MAX:
            raise _fail(index, path, f"steps[{i}]", "must be between 0 and 2**63-1")
        if previous is not None and step <= previous:
            raise _fail(index, path, f"steps[{i}]", f"steps must increase strictly ({step} after {previous})")
        previous = step


def _check_timestamps(index, path, timestamps: list) -> None:
    for i, ts in enumerate(timestamps):
        if not _is_number(ts) or not math.isfinite(ts) or not 0 <= ts < MAX_TIMESTAMP:
            raise _fail(index, path, f"timestamps[{i}]", f"must be unix seconds, got {_describe(ts)}")


# --- applying ---------------------------------------------------------------


def record_fields(project_id: int, fields) -> None:
    """Add (path, type) pairs to the project's field catalogue (idempotent)."""
    ProjectField.objects.bulk_create(
        [ProjectField(project_id=project_id, path=path, type=type_) for path, type_ in set(fields)],
        ignore_conflicts=True,
    )


def _fsum(values: list) -> float:
    """An exact sum of finite floats; ±Inf when it leaves the float range."""
    try:
        return math.fsum(values)
    except OverflowError:
        return sum(values)


def _conflict(op: Op, stored: str, sent: str) -> BatchError:
    return BatchError(
        409,
        "type_conflict",
        f"field is stored as {stored}, cannot write {sent}",
        op_index=op.index,
        path=op.path,
        field="value",
        stored_type=stored,
        sent_type=sent,
    )


class _Batch:
    def __init__(self, run: Run, paths: set[str], now, fields=None):
        self.run = run
        if fields is not None:
            self.fields: dict[str, Attribute] = {path: fields[path] for path in paths if path in fields}
        else:
            self.fields = {a.path: a for a in Attribute.objects.filter(run=run, path__in=paths)} if paths else {}
        self.deleted_ids: set[int] = set()
        self.dirty: dict[int, Attribute] = {}
        self.points: dict[int, list] = {}  # id(attribute) -> rows
        self.files: dict[int, list] = {}  # id(attribute) -> FileEntry (unsaved, attribute unset)
        self.clear_files: set[int] = set()  # attribute pks whose files are replaced
        self.run_columns: dict[str, str] = {}
        self.now = now
        self.point_count = 0
        self.blobs: dict[str, Blob] = {}
        self.upload_mimes: dict[str, str] = {}
        self.previous_last_step: dict[int, int | None] = {}  # id(attribute) -> last step before this batch
        self.tracks: list = []  # artifacts.VersionSpec of the batch's track operations

    def _field(self, op: Op, type_: str) -> Attribute:
        attr = self.fields.get(op.path)
        if attr is None:
            attr = Attribute(run=self.run, project_id=self.run.project_id, path=op.path, type=type_)
            self.fields[op.path] = attr
        elif attr.type != type_:
            if not (attr.type == AttributeType.FLOAT and type_ == AttributeType.INT):
                raise _conflict(op, attr.type, type_)
        self.dirty[id(attr)] = attr
        attr.updated_at = self.now
        return attr

    def apply(self, op: Op) -> None:
        getattr(self, f"_op_{op.kind}")(op)

    def _op_assign(self, op: Op):
        if op.path in RUN_COLUMN_PATHS:
            self.run_columns[RUN_COLUMN_PATHS[op.path]] = op.value
            return
        attr = self._field(op, op.type)
        value = op.value
        if attr.type == AttributeType.FLOAT:
            attr.float_value = float(value)
        elif attr.type == AttributeType.INT:
            attr.int_value = value
        elif attr.type == AttributeType.BOOL:
            attr.bool_value = value
        elif attr.type == AttributeType.STRING:
            attr.string_value = value
        elif attr.type == AttributeType.DATETIME:
            attr.datetime_value = value
        elif attr.type == AttributeType.STRING_SET:
            attr.json_value = value

    def _op_add_tags(self, op: Op):
        attr = self._field(op, AttributeType.STRING_SET)
        attr.json_value = sorted(set(attr.json_value or []) | set(op.values))

    def _op_remove_tags(self, op: Op):
        attr = self.fields.get(op.path)
        if attr is None:
            return
        attr = self._field(op, AttributeType.STRING_SET)
        attr.json_value = sorted(set(attr.json_value or []) - set(op.values))

    def _op_delete(self, op: Op):
        attr = self.fields.pop(op.path, None)
        if attr is None:
            return
        self.dirty.pop(id(attr), None)
        self.points.pop(id(attr), None)
        self.files.pop(id(attr), None)
        if attr.pk:
            self.deleted_ids.add(attr.pk)

    def _op_append(self, op: Op):
        attr = self._field(op, op.type)
        n = len(op.values)
        packed = isinstance(op.values, np.ndarray)
        if op.steps is None:
            start = 0 if attr.last_step is None else attr.last_step + 1
            if start + n - 1 > INT64_MAX:
                raise BatchError(
                    409,
                    "step_order",
                    f"the automatic steps after the series' last step {attr.last_step} pass 2**63-1",
                    op_index=op.index,
                    path=op.path,
                    field="steps",
                    last_step=attr.last_step,
                )
            steps = np.arange(start, start + n, dtype=np.int64) if packed else range(start, start + n)
        else:
            steps = op.steps
            if attr.last_step is not None and steps[0] <= attr.last_step:
                raise BatchError(
                    409,
                    "step_order",
                    f"step {int(steps[0])} is not after the series' last step {attr.last_step}",
                    op_index=op.index,
                    path=op.path,
                    field="steps[0]",
                    last_step=attr.last_step,
                )
        timestamps = op.timestamps
        if timestamps is None or not len(timestamps):
            timestamps = np.full(n, time.time()) if packed else [time.time()] * n
        self.previous_last_step.setdefault(id(attr), attr.last_step)
        if attr.first_step is None:
            attr.first_step = int(steps[0])
        attr.last_step = int(steps[-1])
        attr.count += n
        self.point_count += n
        if packed:
            self._packed_float_stats(attr, op.values)
            self.points.setdefault(id(attr), []).append((steps, timestamps, op.values))
        elif op.type == AttributeType.FLOAT_SERIES:
            values = op.values
            attr.float_value = values[-1]
            if math.isfinite(sum(values)):  # no NaN or ±Inf among them: no filtered copies
                finite = comparable = values
            else:
                finite = [v for v in values if math.isfinite(v)]
                comparable = [v for v in values if not math.isnan(v)]
            if comparable:
                low, high = min(comparable), max(comparable)
                attr.min_value = low if attr.min_value is None else min(attr.min_value, low)
                attr.max_value = high if attr.max_value is None else max(attr.max_value, high)
            if finite:
                attr.sum_value = (attr.sum_value or 0.0) + _fsum(finite)
                attr.finite_count += len(finite)
            self.points.setdefault(id(attr), []).append((steps, timestamps, values))
        elif op.type == AttributeType.STRING_SERIES:
            attr.string_value = op.values[-1]
            self.points.setdefault(id(attr), []).append((steps, timestamps, op.values))
        else:
            entries = self.files.setdefault(id(attr), [])
            for step, ts, ref in zip(steps, timestamps, op.values, strict=True):
                entries.append(self._entry(op, ref, step=step, timestamp=ts))
            attr.json_value = {"last": op.values[-1]["name"] or op.values[-1]["sha256"]}

    @staticmethod
    def _packed_float_stats(attr: Attribute, values: np.ndarray) -> None:
        """The series' running statistics from a packed column, as the per-point form keeps them
        (min/max without NaN, an exact sum of the finite values)."""
        attr.float_value = float(values[-1])
        finite_mask = np.isfinite(values)
        if finite_mask.all():
            finite = comparable = values
        else:
            finite = values[finite_mask]
            comparable = values[~np.isnan(values)]
        if len(comparable):
            low, high = float(comparable.min()), float(comparable.max())
            attr.min_value = low if attr.min_value is None else min(attr.min_value, low)
            attr.max_value = high if attr.max_value is None else max(attr.max_value, high)
        if len(finite):
            attr.sum_value = (attr.sum_value or 0.0) + _fsum(finite.tolist())
            attr.finite_count += len(finite)

    def _entry(self, op: Op, ref: dict, step=None, timestamp=None) -> FileEntry:
        blob = self.blobs.get(ref["sha256"])
        if blob is None:
            raise BatchError(
                400,
                "unknown_blob",
                f"blob {ref['sha256']} was not uploaded to this project; upload it first",
                op_index=op.index,
                path=op.path,
                field="sha256",
            )
        return FileEntry(
            relpath=ref["relpath"],
            step=step,
            blob=blob,
            name=ref["name"],
            mime_type=ref["mime_type"]
            or self.upload_mimes.get(blob.sha256)
            or mimetypes.guess_type(ref["name"])[0]
            or "application/octet-stream",
            size=blob.size,
            timestamp=timestamp,
        )

    def _op_upload(self, op: Op):
        attr = self._field(op, AttributeType.FILE)
        self.files[id(attr)] = [self._entry(op, op.files[0])]
        if attr.pk:
            self.clear_files.add(attr.pk)
        attr.json_value = {"name": op.files[0]["name"], "size": self.blobs[op.files[0]["sha256"]].size}

    def _op_upload_set(self, op: Op):
        attr = self._field(op, AttributeType.FILE_SET)
        entries = self.files.setdefault(id(attr), [])
        if op.replace:
            entries.clear()
            if attr.pk:
                self.clear_files.add(attr.pk)
        by_relpath = {e.relpath: e for e in entries}
        for ref in op.files:
            by_relpath[ref["relpath"]] = self._entry(op, ref)
        entries[:] = by_relpath.values()

    def _op_track(self, op: Op):
        self.tracks.append(op.value)

    def load_blobs(self, ops: list[Op]) -> None:
        wanted = {ref["sha256"] for op in ops for ref in (op.files or [])}
        wanted |= {ref["sha256"] for op in ops if op.type == AttributeType.FILE_SERIES for ref in op.values}
        if not wanted:
            return
        uploaded = Upload.objects.filter(run__project_id=self.run.project_id, blob_id__in=wanted).values("blob_id")
        self.blobs = {b.sha256: b for b in Blob.objects.filter(sha256__in=uploaded)}
        # A file's default MIME type is what this project's uploader said, not the shared blob's
        # (which may come from another project's upload of the same bytes).
        uploads = Upload.objects.filter(run__project_id=self.run.project_id, blob_id__in=wanted).exclude(mime_type="")
        for blob_id, mime, _ in sorted(
            uploads.values_list("blob_id", "mime_type", "run_id"), key=lambda u: u[2] == self.run.pk
        ):
            self.upload_mimes[blob_id] = mime

    def flush(self) -> None:
        if self.deleted_ids:
            doomed = list(self.deleted_ids)
            series_store.delete_points(doomed)
            FileEntry.objects.filter(attribute_id__in=doomed).delete()
            Attribute.objects.filter(pk__in=doomed).delete()
        live = {id(a) for a in self.fields.values()}
        changed = [a for key, a in self.dirty.items() if key in live]
        new = [a for a in changed if a.pk is None]
        old = [a for a in changed if a.pk is not None]
        if new:
            self._check_field_cap(len(new))
            Attribute.objects.bulk_create(new)
            record_fields(self.run.project_id, [(a.path, a.type) for a in new])
            maintenance.after_bulk_write()  # the query tables' statistics and visibility map follow
        if old:
            _update_attributes(old)
        by_key = {id(a): a for a in changed}
        float_rows, string_rows = [], []
        for key, chunks in self.points.items():
            attr = by_key[key]
            target = float_rows if attr.type == AttributeType.FLOAT_SERIES else string_rows
            for steps, timestamps, values in chunks:
                target.append((attr.pk, steps, timestamps, values))
        if float_rows:
            series_store.insert_float_points(float_rows)
            rollups.schedule_after_commit(
                (a.pk, self.previous_last_step.get(id(a)), a.last_step)
                for key, a in by_key.items()
                if key in self.points and a.type == AttributeType.FLOAT_SERIES
            )
        if string_rows:
            series_store.insert_string_points(string_rows)
        if self.clear_files:
            FileEntry.objects.filter(attribute_id__in=self.clear_files, step__isnull=True).delete()
        entries = []
        for key, items in self.files.items():
            for entry in items:
                entry.attribute = by_key[key]
                entries.append(entry)
        if entries:
            if any(e.step is None for e in entries):
                # file-set entries replace same-relpath entries already stored
                for attr_key in {id(e.attribute) for e in entries if e.step is None}:
                    attr = by_key[attr_key]
                    relpaths = [e.relpath for e in entries if e.attribute is attr and e.step is None]
                    FileEntry.objects.filter(attribute=attr, step__isnull=True, relpath__in=relpaths).delete()
            FileEntry.objects.bulk_create(entries)
        self._refresh_file_set_summaries(changed)

    def _check_field_cap(self, adding: int) -> None:
        """409 when the run would hold more than RUNSTORE_MAX_FIELDS_PER_RUN fields (asked only when
        a batch creates fields, so appending to existing series costs no query)."""
        cap = settings.RUNSTORE_MAX_FIELDS_PER_RUN
        stored = Attribute.objects.filter(run=self.run).count() if adding <= cap else 0
        if stored + adding > cap:
            raise BatchError(
                409,
                "too_many_fields",
                f"ops: run {self.run.human_id} would hold {stored + adding} fields; at most {cap} (RUNSTORE_MAX_FIELDS_PER_RUN)",
                field="ops",
                stored_fields=stored,
                max_fields=cap,
            )

    def _refresh_file_set_summaries(self, changed):
        for attr in changed:
            if attr.type == AttributeType.FILE_SET:
                rows = FileEntry.objects.filter(attribute=attr, step__isnull=True)
                total = sum(rows.values_list("size", flat=True))
                attr.json_value = {"files": rows.count(), "size": total}
                Attribute.objects.filter(pk=attr.pk).update(json_value=attr.json_value)


def _update_attributes(attrs: list[Attribute]) -> None:
    """Write the changed attributes back: on PostgreSQL one ``UPDATE ... FROM (VALUES ...)`` for all
    of them, elsewhere one parameterised UPDATE run for each (executemany). ``bulk_update``'s CASE WHEN
    expressions cost more Python time than the statement itself costs the database (tens of ms for a
    batch of a few series)."""
    fields = [cast(ModelField, Attribute._meta.get_field(name)) for name in _UPDATE_FIELDS]  # concrete columns
    rows = [[f.get_db_prep_save(getattr(a, f.attname), connection) for f in fields] + [a.pk] for a in attrs]
    quote, table = connection.ops.quote_name, Attribute._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql" or len(rows) == 1:
            assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
            cursor.executemany(f"UPDATE {table} SET {assignments} WHERE id = %s", rows)
            return
        # one plan and one executor start for the batch instead of one per field (in a load test the
        # per-field UPDATEs were a seventh of the database's time); rows in id order. A column's
        # values go as one array: the statement's text is the same for every batch, so psycopg
        # reuses its parsed template (a VALUES row of placeholders per field was parsed anew each time)
        rows.sort(key=lambda row: row[-1])
        assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in fields)
        arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
        names = ", ".join(quote(f.column) for f in fields)
        cursor.execute(
            f"UPDATE {table} AS a SET {assignments} FROM unnest({arrays}, %s::bigint[]) AS v({names}, id) "
            "WHERE a.id = v.id",
            [list(column) for column in zip(*rows, strict=True)],
        )


_UPDATE_FIELDS = [
    "type",
    "int_value",
    "float_value",
    "bool_value",
    "string_value",
    "datetime_value",
    "json_value",
    "count",
    "first_step",
    "last_step",
    "min_value",
    "max_value",
    "sum_value",
    "finite_count",
    "updated_at",
]


def _claim_batch(cursor, run: Run, stream: str, seq: int, op_count: int, now) -> bool:
    """Record the batch key; False when it is taken (a retry). A concurrent retry of the same
    batch waits here for the first one's transaction, then finds the key taken."""
    table = RunBatch._meta.db_table
    cursor.execute(
        f"INSERT INTO {table} (run_id, stream, seq, op_count, applied_at) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (run_id, stream, seq) DO NOTHING RETURNING id",
        [run.pk, stream, seq, op_count, connection.ops.adapt_datetimefield_value(now)],
    )
    return cursor.fetchone() is not None


def parse_envelope(body) -> tuple[str, int, object]:
    """A batch body's ``stream``, ``seq`` and (still unchecked) ``ops``; a 400 naming what is wrong."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid", "the body must be an object with stream, seq and ops")
    stream, seq = body.get("stream"), body.get("seq")
    if not isinstance(stream, str) or not 1 <= len(stream) <= 64:
        raise ApiError(400, "invalid", "stream: must be a string of 1-64 characters", field="stream")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63:
        raise ApiError(400, "invalid", "seq: must be an integer from 0 to 2**63-1", field="seq")
    if "ops" not in body:
        raise ApiError(400, "invalid", "ops: is required", field="ops")
    return stream, seq, body["ops"]


def _announce(run: Run, ops: list[Op], tags_before: set, tags) -> None:
    """Webhook events of an applied batch (tags added/removed, fields changed), sent after the commit;
    one on_commit callback per batch, which costs one query when the project has no webhook."""
    events: list[tuple[str, dict]] = []
    tags_after = set(tags.json_value or []) if tags is not None else set()
    if tags_after - tags_before:
        events.append((webhook_events.m.RUN_TAG_ADDED, {"tags": sorted(tags_after - tags_before)}))
    if tags_before - tags_after:
        events.append((webhook_events.m.RUN_TAG_REMOVED, {"tags": sorted(tags_before - tags_after)}))
    webhook_events.emit_run_events(run, events, {op.path for op in ops})


def touch_run(cursor, run: Run, now) -> None:
    """Touch the run's row, which locks it: one batch at a time per run, as series statistics are
    read-modify-write. A write is a sign of life: a run marked crashed is running again."""
    stamp = connection.ops.adapt_datetimefield_value(now)
    cursor.execute(
        f"UPDATE {Run._meta.db_table} SET modified_at = %s, ping_at = %s,"
        " state = CASE WHEN state = %s THEN %s ELSE state END WHERE id = %s",
        [stamp, stamp, RunState.CRASHED.value, RunState.RUNNING.value, run.pk],
    )


@metrics.observe_batch
def apply_batch(run: Run, *, stream: str, seq: int | None, raw_ops, admit=None, fields=None) -> dict:
    """Validate and apply one batch to ``run`` atomically; idempotent per ``(stream, seq)``.

    The engine under ``runs.services.apply_batch``, which checks the caller's rights first and
    passes ``admit(nbytes, is_replay)``: called before the transaction with the bytes the batch
    adds (``usage.batch_bytes``), it raises to refuse the batch, which then applies nothing;
    ``is_replay()`` tells whether this batch was applied already (a retry is not charged twice).

    ``seq=None``: a caller that has made the batch idempotent itself and already called
    :func:`touch_run` in its open transaction (the MLflow API) records no batch key and touches
    no row; ``fields``: the run's stored attributes at the batch's paths, when the caller has read
    them already (path -> Attribute; at least every path the batch writes)."""
    ops = parse_ops(raw_ops)
    if admit is not None:
        nbytes = usage.batch_bytes(ops)
        if nbytes:
            replay = seq is not None and (lambda: RunBatch.objects.filter(run=run, stream=stream, seq=seq).exists())
            admit(nbytes, replay or (lambda: False))
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        if seq is not None:
            if not _claim_batch(cursor, run, stream, seq, len(raw_ops), now):
                return {"applied": False, "duplicate": True, "ops": len(raw_ops), "points": 0}
            touch_run(cursor, run, now)
        batch = _Batch(run, {op.path for op in ops}, now, fields=fields)
        tags = batch.fields.get("sys/tags")
        tags_before = set(tags.json_value or []) if tags is not None else set()
        batch.load_blobs(ops)
        for op in ops:
            batch.apply(op)
        batch.flush()
        live = {id(a) for a in batch.fields.values()}
        artifacts.record(
            run,
            artifacts.uploaded_versions([a for key, a in batch.dirty.items() if key in live]) + batch.tracks,
            now,
            cleared_paths={op.path for op in ops if op.kind == "delete"},
        )
        if batch.run_columns:
            Run.objects.filter(pk=run.pk).update(**batch.run_columns)
        _announce(run, ops, tags_before, batch.fields.get("sys/tags"))
    return {"applied": True, "duplicate": False, "ops": len(raw_ops), "points": batch.point_count}

"""``runstore import wandb DIR``: W&B offline run folders (``pip install 'runstore[wandb]'``).

Every ``offline-run-*`` folder below DIR (``wandb/offline-run-<time>-<id>``) becomes a run. Its
``run-<id>.wandb`` file holds the run's records; they are read with wandb's own reader
(``wandb.sdk.internal.datastore``) where the installed wandb has it, and otherwise with the
record-log reader below (the same format: a ``:W&B`` header, 32 KiB blocks of CRC-checked
records), decoded with wandb's own protobuf messages; so the wandb package is needed either way.

The source id is ``<W&B project>/<run id>``; the display name, notes, tags, group and start time
(``sys/creation_time``) are kept. The config becomes ``config/…``; history ``_step`` and
``_timestamp`` give each point's step and time: numbers become float series, strings string
series, logged images file series; the summary's own values (not ``_…``) go to ``summary/…``;
the run's ``files/`` folder becomes the file set ``files``. A run without an exit record was
interrupted (aborted); a non-zero exit code marks it failed. ``--workspace`` maps the W&B project
to ``<workspace>/<project>``."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..exceptions import ConfigurationError
from ..file import File
from .core import Series, SourceRun, clean_path, clean_slug

SOURCE = "wandb"
BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
IMAGE_TYPES = {"image-file"}


def _proto() -> Any:
    try:
        from wandb.proto import wandb_internal_pb2
    except ImportError as exc:
        raise ConfigurationError(
            f"importing W&B runs needs the wandb package (its record format): pip install 'runstore[wandb]' ({exc})"
        ) from None
    return wandb_internal_pb2


def records(path: Path) -> Iterator[bytes]:
    """The records of a ``.wandb`` file, in order; a torn or corrupt tail (a run killed mid-write) ends them."""
    try:  # older wandb releases ship their reader; newer ones write the file from wandb-core (Go)
        datastore: Any = importlib.import_module("wandb.sdk.internal.datastore")
    except ImportError:
        datastore = None
    if datastore is not None:
        store = datastore.DataStore()
        store.open_for_scan(str(path))
        while True:
            data = store.scan_data()
            if data is None:
                return
            yield bytes(data)
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ConfigurationError(f"{path} is not a W&B run file (no ':W&B' header)")
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        space = BLOCK - pos % BLOCK
        if space < HEADER:
            pos += space  # a block's tail too short for a record header is padding
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != checksum:
            return
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""
        else:
            return


def run_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise ConfigurationError(f"{root} is not a directory")
    found = {p.resolve() for p in root.rglob("offline-run-*") if p.is_dir() and not p.is_symlink()}
    if root.name.startswith("offline-run-"):
        found.add(root.resolve())
    return sorted(p for p in found if any(p.glob("run-*.wandb")))


def read_runs(location: str, *, project: str | None, workspace: str | None = None) -> tuple[int, Iterator[SourceRun]]:
    pb = _proto()
    folders = run_folders(Path(location))

    def runs() -> Iterator[SourceRun]:
        for folder in folders:
            yield read_run(pb, folder, project, workspace)

    return len(folders), runs()


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _nest(items: Any, into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Items keyed by ``key`` or by a ``nested_key`` path (how wandb writes a dict, e.g. an image's
    ``_type`` and ``path``) as one nested dict; a later item replaces an earlier one."""
    out: dict[str, Any] = {} if into is None else into
    for item in items:
        keys = list(item.nested_key) or [str(item.key)]
        node = out
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[keys[-1]] = _json(item.value_json)
    return out


def _remove(items: Any, out: dict[str, Any]) -> None:
    for item in items:
        keys = list(item.nested_key) or [str(item.key)]
        node: Any = out
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(keys[-1], None)


def _leaves(value: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every leaf; a media dict (one with ``_type``) is one leaf."""
    for key, inner in value.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(inner, dict) and "_type" not in inner:
            yield from _leaves(inner, path)
        else:
            yield path, inner


def read_run(pb: Any, folder: Path, project: str | None, workspace: str | None) -> SourceRun:
    src = SourceRun(source=SOURCE, source_id=folder.name, project=project or f"{workspace}/wandb")
    config: dict[str, Any] = {}
    summary_items: dict[tuple[str, ...], Any] = {}
    exit_code: int | None = None
    runtime = 0.0
    files = folder / "files"
    for data in records(next(folder.glob("run-*.wandb"))):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            src.source_id = f"{run.project}/{run.run_id}" if run.project else run.run_id
            src.project = project or f"{workspace}/{clean_slug(run.project or 'wandb')}"
            src.name = run.display_name or run.run_id
            src.description = run.notes
            src.tags = list(run.tags)
            src.group = run.run_group or None
            if run.HasField("start_time"):
                src.creation_time = run.start_time.ToDatetime(tzinfo=dt.timezone.utc)
            _nest(run.config.update, config)
            if run.job_type:
                src.fields["wandb/job_type"] = run.job_type
            if run.entity:
                src.fields["wandb/entity"] = run.entity
        elif kind == "config":
            _nest(record.config.update, config)
            _remove(record.config.remove, config)
        elif kind == "history":
            _history(src, record.history, files)
        elif kind == "summary":
            # Raw until the end: a summary record follows every history row, only the last value counts.
            for item in record.summary.update:
                summary_items[tuple(item.nested_key) or (str(item.key),)] = item
            for item in record.summary.remove:
                summary_items.pop(tuple(item.nested_key) or (str(item.key),), None)
        elif kind == "exit":
            exit_code = int(record.exit.exit_code)
            runtime = float(record.exit.runtime)
    summary = _nest(summary_items.values())
    for key, value in _leaves(config):
        if not key.startswith("_"):
            _assign(src, "config", key, value)
    for key, value in _leaves(summary):
        if not key.startswith("_") and clean_path(key) not in src.series:  # not a history series' last value
            _assign(src, "summary", key, value)
    if exit_code is None:
        src.state = "aborted"
    elif exit_code != 0:
        src.state = "failed"
        src.fields["wandb/exit_code"] = exit_code
    if src.creation_time is not None and exit_code is not None:
        src.fields["import/end_time"] = src.creation_time + dt.timedelta(seconds=runtime)
    if files.is_dir() and any(p.is_file() for p in files.rglob("*")):
        src.file_sets["files"] = files
    return src


def _assign(src: SourceRun, namespace: str, key: str, value: Any) -> None:
    if isinstance(value, dict):
        src.skip(f"{namespace} media values (kept in the files folder)")
        return
    path = clean_path(key, prefix=namespace)
    if path is None:
        src.skip(f"{namespace} values with an empty key")
    elif value is None:
        src.skip(f"{namespace} values that are null")
    else:
        src.fields[path] = value


def _history(src: SourceRun, history: Any, files: Path) -> None:
    row = dict(_leaves(_nest(history.item)))
    step = row.pop("_step", None)
    if not isinstance(step, (int, float)):
        step = history.step.num
    stamp = row.pop("_timestamp", None)
    when = float(stamp) if isinstance(stamp, (int, float)) else 0.0
    row.pop("_runtime", None)
    for key, value in row.items():
        if key.startswith("_"):
            continue
        path = clean_path(key)
        if path is None:
            src.skip("history values with an empty key")
        elif isinstance(value, bool) or not isinstance(value, (int, float, str, dict)):
            src.skip("history values that are neither numbers, strings nor images")
        elif isinstance(value, (int, float)):
            _series(src, path, "float").add(int(step), float(value), when)
        elif isinstance(value, str):
            _series(src, path, "string").add(int(step), value, when)
        elif value.get("_type") in IMAGE_TYPES and isinstance(value.get("path"), str):
            image = (files / value["path"]).resolve()
            if image.is_relative_to(files.resolve()) and image.is_file():
                _series(src, path, "file").add(int(step), File(image), when)
            else:
                src.skip("history images missing from the run's files folder")
        else:
            src.skip(f"history values of W&B type {value.get('_type', 'dict')!r}")


def _series(src: SourceRun, path: str, kind: str) -> Series:
    series = src.series.get(path)
    if series is None:
        series = src.series[path] = Series(kind)
    elif series.kind != kind:
        return _series(src, f"{path}/{kind}", kind)
    return series

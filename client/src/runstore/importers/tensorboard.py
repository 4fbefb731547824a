"""``runstore import tensorboard DIR``: TensorBoard event files (``pip install 'runstore[tensorboard]'``).

One run per run directory (a directory holding ``events.out.tfevents.*`` files; its path below DIR's
parent is the source id and the run name). Scalars become float series, images file series (PNG),
text string series, all with their steps and wall times; hparams (the hparams plugin's session
start info) become ``parameters/<name>``. The run's creation time is its first event's wall time.
Histograms, audio, PR curves, graphs and other plugins are skipped and counted in the summary."""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..exceptions import ConfigurationError
from ..file import File
from .core import Series, SourceRun, clean_path

SOURCE = "tensorboard"
EVENT_GLOB = "*tfevents*"
KIND_NAMES = {"histo": "histogram", "histograms": "histogram", "audio": "audio", "pr_curves": "PR curve"}


def _tensorboard() -> Any:
    try:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.plugins.hparams import metadata as hparams_metadata
        from tensorboard.util import tensor_util
    except ImportError as exc:
        raise ConfigurationError(
            f"importing TensorBoard event files needs the tensorboard package: pip install 'runstore[tensorboard]' ({exc})"
        ) from None
    return event_pb2, hparams_metadata, tensor_util


def run_directories(root: Path) -> list[Path]:
    """Every directory below ``root`` (itself included) that holds event files."""
    if not root.is_dir():
        raise ConfigurationError(f"{root} is not a directory")
    dirs = {p.parent for p in root.rglob(EVENT_GLOB) if p.is_file()}
    return sorted(dirs)


def read_runs(location: str, *, project: str | None, workspace: str | None = None) -> tuple[int, Iterator[SourceRun]]:
    """The number of run directories, and the runs read one at a time (into ``project``)."""
    if project is None:
        raise ConfigurationError("a TensorBoard import needs --project workspace/project")
    _tensorboard()
    root = Path(location).resolve()
    dirs = run_directories(root)
    base = root.parent

    def runs() -> Iterator[SourceRun]:
        for directory in dirs:
            yield read_run(directory, directory.relative_to(base).as_posix(), project)

    return len(dirs), runs()


def events(path: Path, event_pb2: Any, run: SourceRun) -> Iterator[Any]:
    """The Event messages of one event file (TFRecord framing: a little-endian uint64 length, its
    masked CRC, the data, the data's masked CRC). The CRCs are not recomputed (tensorboard's
    pure-Python CRC-32C was most of the import's time); a torn or unparsable record, as a job
    killed mid-write leaves at the end, ends the file and is counted."""
    data = path.read_bytes()
    pos, end = 0, len(data)
    while pos < end:
        if pos + 12 > end:
            run.skip("torn records at the end of an event file")
            return
        (length,) = struct.unpack_from("<Q", data, pos)
        start = pos + 12
        if start + length + 4 > end:
            run.skip("torn records at the end of an event file")
            return
        event = event_pb2.Event()
        try:
            event.ParseFromString(data[start : start + length])
        except Exception:  # noqa: BLE001 - protobuf's DecodeError, whose class depends on the backend
            run.skip("corrupt records in an event file")
            return
        yield event
        pos = start + length + 4


def _hparam_value(value: Any) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = float(value.number_value)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "string_value":
        return str(value.string_value)
    if kind == "bool_value":
        return bool(value.bool_value)
    return None


def read_run(directory: Path, source_id: str, project: str) -> SourceRun:
    event_pb2, hparams_metadata, tensor_util = _tensorboard()
    tags: dict[str, str | None] = {}
    run = SourceRun(source=SOURCE, source_id=source_id, project=project, name=source_id)
    first_wall: float | None = None
    for path in sorted(p for p in directory.glob(EVENT_GLOB) if p.is_file()):
        for event in events(path, event_pb2, run):
            wall = float(event.wall_time)
            if wall > 0 and (first_wall is None or wall < first_wall):
                first_wall = wall
            if not event.HasField("summary"):
                if event.HasField("graph_def") or event.HasField("meta_graph_def"):
                    run.skip("graphs (not imported)")
                continue
            step = int(event.step)
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name if value.HasField("metadata") else ""
                kind = value.WhichOneof("value")
                raw = value.tag or value.node_name
                tag = tags[raw] if raw in tags else tags.setdefault(raw, clean_path(raw))
                if tag is None:
                    run.skip("values without a tag")
                    continue
                if plugin == "hparams":
                    content = value.metadata.plugin_data.content
                    if value.tag == hparams_metadata.SESSION_START_INFO_TAG:
                        info = hparams_metadata.parse_session_start_info_plugin_data(content)
                        for name, hvalue in info.hparams.items():
                            param = clean_path(name, prefix="parameters")
                            if param is not None:
                                run.fields[param] = _hparam_value(hvalue)
                    continue  # the experiment and session-end summaries describe, they hold no data
                if kind == "simple_value":
                    _series(run, tag, "float").add(step, float(value.simple_value), wall)
                elif kind == "image":
                    _series(run, tag, "file").add(step, _png(tag, step, value.image.encoded_image_string), wall)
                elif kind == "tensor" and plugin in ("scalars", ""):
                    array = tensor_util.make_ndarray(value.tensor)
                    if array.size == 1 and array.dtype.kind in "fiub":
                        _series(run, tag, "float").add(step, float(array.reshape(-1)[0]), wall)
                    else:
                        run.skip(f"{plugin or 'untyped'} tensors that are not one number")
                elif kind == "tensor" and plugin == "text":
                    array = tensor_util.make_ndarray(value.tensor)
                    items = [
                        x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in array.reshape(-1)
                    ]
                    _series(run, tag, "string").add(step, "\n".join(items), wall)
                elif kind == "tensor" and plugin == "images":
                    array = tensor_util.make_ndarray(value.tensor).reshape(-1)
                    encoded = list(array[2:])  # width, height, then the PNG/JPEG images
                    if not encoded:
                        continue
                    _series(run, tag, "file").add(step, _png(tag, step, bytes(encoded[0])), wall)
                    if len(encoded) > 1:
                        run.skip("images beyond the first of a batched image summary", len(encoded) - 1)
                else:
                    what = KIND_NAMES.get(plugin or kind or "", plugin or kind or "empty")
                    run.skip(f"{what} summaries (not imported)")
    if first_wall is not None:
        run.creation_time = dt.datetime.fromtimestamp(first_wall, tz=dt.timezone.utc)
    return run


def _series(run: SourceRun, path: str, kind: str) -> Series:
    series = run.series.get(path)
    if series is None:
        series = run.series[path] = Series(kind)
    elif series.kind != kind:
        # One tag holding two kinds: the second one goes next to the first.
        return _series(run, f"{path}/{kind}", kind)
    return series


def _png(tag: str, step: int, data: bytes) -> File:
    kind = "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"
    ext = "jpg" if kind == "image/jpeg" else "png"
    name = f"{tag.rsplit('/', 1)[-1]}-{step}.{ext}"
    return File(content=bytes(data), name=name, mime_type=kind)

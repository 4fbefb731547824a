"""``runstore import neptune DIR``: what ``neptune-exporter`` wrote (``pip install 'runstore[neptune]'``).

Its layout: ``DIR/data/<project dir>/<run>_part_<n>.parquet`` (one row per value: ``project_id``,
``run_id``, ``attribute_path``, ``attribute_type``, ``step`` decimal(18,6), ``timestamp``, and the
typed ``int_value`` … ``string_set_value``, ``file_value.path``, ``histogram_value``) and the files
under ``DIR/files/`` (``--files-path`` elsewhere; ``file_value.path`` is relative to it, or to its
folder of the project). ``--workspace`` maps a Neptune
project ``org/name`` to ``<workspace>/<name>``; ``--project`` takes every run.

Each Neptune run becomes a run (source id ``<project_id>/<run_id>``, the run id as its name):
``float``/``int``/``string``/``bool``/``datetime``/``string_set`` become fields, float and string
series series, ``file`` (and ``artifact``) files, ``file_set`` file sets, ``file_series`` file series (steps and timestamps kept). Neptune's
steps are decimals: a run whose steps are all whole numbers keeps them; otherwise every step of the
run is multiplied by the smallest power of ten (at most 10**6) that makes them whole, the same for
all its series so they stay aligned, and ``import/step_multiplier`` says by how much.
``sys/name`` (the experiment), ``sys/tags``, ``sys/description`` and ``sys/creation_time`` map to
the run's group, tags, description and creation time; other ``sys/`` fields go to ``import/sys/``.
A fork (``sys/forking/parent``) keeps ``import/fork/parent`` and ``import/fork/step`` and shares the
group of the run it was forked from. Histogram series have no Runstore type and are skipped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..exceptions import ConfigurationError
from ..file import File
from .core import Series, SourceRun, clean_path, clean_slug, to_datetime

SOURCE = "neptune"
SCALARS = ("float", "int", "string", "bool", "datetime", "string_set")
VALUE_COLUMN = {
    "float": "float_value",
    "int": "int_value",
    "string": "string_value",
    "bool": "bool_value",
    "datetime": "datetime_value",
    "string_set": "string_set_value",
}
SERIES_TYPES = ["float_series", "string_series", "file_series"]
META_PATHS = ["sys/name", "sys/forking/parent", "sys/forking/step", "sys/custom_run_id"]


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ConfigurationError(
            f"importing neptune-exporter output needs pyarrow: pip install 'runstore[neptune]' ({exc})"
        ) from None
    return pq


def _layout(root: Path, files_path: Path | None) -> tuple[Path, Path]:
    if not root.is_dir():
        raise ConfigurationError(f"{root} is not a directory")
    data = root / "data" if (root / "data").is_dir() else root
    files = files_path or (root / "files" if (root / "data").is_dir() else root.parent / "files")
    return data, files


def run_parts(data: Path) -> dict[tuple[Path, str], list[Path]]:
    """{(project dir, run file prefix): part files in part order}, for runs whose part_0 exists."""
    runs: dict[tuple[Path, str], list[Path]] = {}
    for first in sorted(data.rglob("*_part_0.parquet")):
        prefix = first.name[: -len("_part_0.parquet")]
        parts = list(first.parent.glob(f"{prefix}_part_*.parquet"))
        numbered = []
        for part in parts:
            number = part.stem.rsplit("_part_", 1)[-1]
            if number.isdigit() and part.stem[: -len(number) - len("_part_")] == prefix:
                numbered.append((int(number), part))
        runs[(first.parent, prefix)] = [p for _, p in sorted(numbered)]
    return runs


def read_runs(
    location: str,
    *,
    project: str | None,
    workspace: str | None = None,
    files_path: Path | None = None,
) -> tuple[int, Iterator[SourceRun]]:
    pq = _pyarrow()
    data, files = _layout(Path(location).resolve(), files_path)
    runs = run_parts(data)
    # A first pass over the few metadata rows: the experiment names and fork parents give the groups.
    meta: dict[str, dict[str, Any]] = {}
    keys: dict[tuple[Path, str], str] = {}
    for key, parts in runs.items():
        table = pq.read_table(parts, filters=[("attribute_path", "in", META_PATHS)]).to_pydict()
        ids = pq.read_table(parts[0], columns=["project_id", "run_id"]).slice(0, 1).to_pydict()
        if not ids["run_id"]:
            continue
        source_id = f"{ids['project_id'][0]}/{ids['run_id'][0]}"
        keys[key] = source_id
        entry = meta[source_id] = {"project_id": ids["project_id"][0], "run_id": ids["run_id"][0]}
        for path, string, number in zip(
            table["attribute_path"], table["string_value"], table["float_value"], strict=True
        ):
            entry[path] = string if string is not None else number
    by_run_id = {(m["project_id"], m["run_id"]): sid for sid, m in meta.items()}

    forked = {(m["project_id"], m.get("sys/forking/parent")) for m in meta.values() if m.get("sys/forking/parent")}

    def group_of(source_id: str) -> str | None:
        """The experiment's name; without one, the run id at the root of the run's fork tree (if any)."""
        root, seen = source_id, {source_id}
        while True:
            entry = meta[root]
            if entry.get("sys/name"):
                return str(entry["sys/name"])
            parent = entry.get("sys/forking/parent")
            if not parent:
                return str(entry["run_id"]) if (entry["project_id"], entry["run_id"]) in forked else None
            parent_id = by_run_id.get((entry["project_id"], parent))
            if parent_id is None or parent_id in seen:
                return str(parent)  # forked from a run that was not exported: named after it
            seen.add(parent_id)
            root = parent_id

    def generate() -> Iterator[SourceRun]:
        for key, parts in runs.items():
            source_id = keys.get(key)
            if source_id is None:
                continue
            entry = meta[source_id]
            target = project or f"{workspace}/{clean_slug(str(entry['project_id']).rsplit('/', 1)[-1])}"
            table = pq.read_table(parts)
            roots = [files, files / key[0].relative_to(data)]
            yield read_run(table, source_id, target, roots, group_of(source_id))

    return len(keys), generate()


def _multiplier(steps: Any) -> int:
    """The smallest power of ten (at most 10**6, decimal(18,6)'s scale) making every step whole."""
    import numpy as np

    for exponent in range(7):
        factor = int(10**exponent)
        scaled = steps * factor
        if bool(np.all(np.abs(scaled - np.round(scaled)) < 1e-6)):
            return factor
    return 10**6


def read_run(table: Any, source_id: str, project: str, files: list[Path], group: str | None) -> SourceRun:
    """One run from its rows (a pyarrow table); ``files``: the folders a ``file_value.path`` may be
    relative to. The series' columns are converted whole (pyarrow, numpy), not row by row."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    run_id = source_id.split("/")[-1]
    src = SourceRun(source=SOURCE, source_id=source_id, project=project, name=run_id, group=group)
    is_series = pc.fill_null(pc.is_in(table["attribute_type"], value_set=pa.array(SERIES_TYPES)), False)
    rows = table.filter(pc.invert(is_series)).to_pydict()
    for i, (kind, path) in enumerate(zip(rows["attribute_type"], rows["attribute_path"], strict=True)):
        if kind in SCALARS:
            _scalar(src, path, kind, rows[VALUE_COLUMN[kind]][i])
        elif kind in ("file", "file_set", "artifact"):
            _file(src, path, files, rows["file_value"][i])
        elif kind == "histogram_series":
            src.skip("histogram series points (Runstore has no histogram type)")
        else:
            src.skip(f"attributes of type {kind!r}")
    points = table.filter(is_series)
    stepped = points.filter(pc.is_valid(points["step"]))
    if len(stepped) < len(points):
        src.skip("series points without a step", len(points) - len(stepped))
    if len(stepped) == 0:
        return src
    steps = pc.cast(stepped["step"], pa.float64()).to_numpy(zero_copy_only=False)
    factor = _multiplier(steps)
    if factor != 1:
        src.fields["import/step_multiplier"] = factor
    whole = np.round(steps * factor).astype(np.int64)
    millis = pc.fill_null(pc.cast(stepped["timestamp"], pa.int64()), 0).to_numpy(zero_copy_only=False)
    stamps = millis / 1000.0
    encoded = stepped["attribute_path"].combine_chunks().dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    kinds = stepped["attribute_type"]
    for code, path in enumerate(encoded.dictionary.to_pylist()):
        where = np.nonzero(codes == code)[0]
        target = clean_path(path)
        if target is None:
            src.skip("series with an empty path", len(where))
            continue
        take = pa.array(where)
        kind = str(kinds[int(where[0])].as_py()).removesuffix("_series")
        column = {"float": "float_value", "string": "string_value", "file": "file_value"}[kind]
        values = stepped[column].take(take).to_pylist()
        keep: list[int] = []
        kept: list[Any] = []
        for k, value in enumerate(values):
            if value is None:
                src.skip(f"{kind} series points without a value")
                continue
            if kind == "file":
                found = _path_of(files, value)
                if found is None:
                    src.skip("file series steps whose file is missing from the files folder")
                    continue
                value = File(found)
            keep.append(k)
            kept.append(value)
        if not keep:
            continue
        chosen = where if len(keep) == len(where) else where[keep]
        series_steps, series_stamps = whole[chosen].tolist(), stamps[chosen].tolist()
        src.series[target] = Series(kind, series_steps, kept, series_stamps)
    return src


def _scalar(src: SourceRun, path: str, kind: str, value: Any) -> None:
    if value is None:
        src.skip("attributes without a value")
        return
    if kind == "string_set":
        value = set(value)
    if path == "sys/name":
        src.group = src.group or str(value)
        src.fields["import/sys/name"] = value
    elif path == "sys/custom_run_id":
        src.name = str(value)
    elif path == "sys/tags":
        src.tags = sorted(value)
    elif path == "sys/description":
        src.description = str(value)
    elif path == "sys/creation_time":
        src.creation_time = to_datetime(value)
    elif path == "sys/failed" and value is True:
        src.state = "failed"
        src.fields["import/sys/failed"] = True
    elif path == "sys/forking/parent":
        src.fields["import/fork/parent"] = value
    elif path == "sys/forking/step":
        src.fields["import/fork/step"] = float(value)
    else:
        target = clean_path(path)
        if target is None:
            src.skip("attributes with an empty path")
        else:
            src.fields[target] = value


def _path_of(roots: list[Path], value: Any) -> Path | None:
    """The exported file: relative to the files folder (neptune-exporter's loaders), or to its project folder."""
    relative = (value or {}).get("path")
    if not isinstance(relative, str) or not relative:
        return None
    for root in roots:
        path = (root / relative).resolve()
        if path.is_relative_to(root.resolve()) and path.exists():
            return path
    return None


def _file(src: SourceRun, path: str, files: list[Path], value: Any) -> None:
    found = _path_of(files, value)
    target = clean_path(path)
    if target is None:
        src.skip("files with an empty path")
    elif found is None:
        src.skip("files missing from the files folder")
    elif found.is_dir():
        src.file_sets[target] = found
    else:
        src.files[target] = found

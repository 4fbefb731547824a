"""What every importer shares: the source run model, idempotent writing, the progress bar and the summary.

An importer reads its source into :class:`SourceRun` objects, one at a time, and hands them to
:func:`import_runs`. Each becomes one Runstore run whose ``custom_run_id`` is
``import:<source>:<source id>``, so importing again finds the same run: fields already on the server
are left alone, and each series gets only the points past its last step there (an interrupted import
continues where it stopped; a finished one adds nothing). The run keeps the source's creation time
(``sys/creation_time``) and its id (``import/source_id``)."""

from __future__ import annotations

import datetime as dt
import functools
import math
import operator
import sys
import time
import unicodedata
import uuid as uuid_module
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .._internal.api import Api, decode
from .._internal.progress import Progress
from ..config import Settings, new_queue_dir
from ..exceptions import RunstoreError
from ..file import File
from ..lifecycle import register
from ..run import Run

MAX_STEP = 2**63 - 1
STATES = ("finished", "failed", "aborted")
FLUSH_EVERY = 50_000  # points written before waiting for the disk queue (the in-memory queue is bounded)
WAIT_EVERY = 1_000_000  # points (or bytes of files / 1000) before waiting for the server (the disk queue is bounded)


@dataclass
class Series:
    """A series of the source: ``kind`` float, string or file (values are then ``File`` objects or paths)."""

    kind: str = "float"
    steps: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)

    def add(self, step: int, value: Any, timestamp: float) -> None:
        self.steps.append(step)
        self.values.append(value)
        self.timestamps.append(timestamp)


@dataclass
class SourceRun:
    """One run of the source, as the importer read it."""

    source: str
    source_id: str
    project: str
    name: str = ""
    description: str = ""
    creation_time: dt.datetime | None = None
    state: str = "finished"
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Series] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    file_sets: dict[str, Path] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)

    def skip(self, why: str, count: int = 1) -> None:
        self.skipped[why] += count


@dataclass
class Summary:
    source: str
    runs_created: int = 0
    runs_resumed: int = 0
    runs_unchanged: int = 0
    runs_failed: int = 0
    points: int = 0
    fields: int = 0
    files: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    run_ids: dict[str, str] = field(default_factory=dict)  # source id -> Runstore run id

    @property
    def runs(self) -> int:
        return self.runs_created + self.runs_resumed + self.runs_unchanged

    def lines(self) -> list[str]:
        rate = self.points / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"imported from {self.source} in {self.seconds:.1f}s: {self.runs} runs "
            f"({self.runs_created} new, {self.runs_resumed} continued, {self.runs_unchanged} already complete"
            + (f", {self.runs_failed} failed" if self.runs_failed else "")
            + ")",
            f"  {self.points:,} points ({rate:,.0f}/s), {self.fields:,} fields, {self.files:,} files",
        ]
        if self.skipped:
            out.append(f"  skipped {sum(self.skipped.values()):,}:")
            out += [f"    {count:,} {why}" for why, count in sorted(self.skipped.items(), key=lambda kv: -kv[1])]
        out += [f"  error: {error}" for error in self.errors]
        return out

    def print(self, stream: TextIO | None = None) -> None:
        print("\n".join(self.lines()), file=stream or sys.stdout)


# -- names and values -------------------------------------------------------------------------------
@functools.lru_cache(maxsize=65536)  # the same keys come back at every step
def clean_path(path: str, *, prefix: str = "") -> str | None:
    """A source's key as a Runstore field path (None when nothing is left of it)."""
    segments = []
    for raw in path.replace("\\", "/").split("/"):
        segment = "".join(c for c in raw if unicodedata.category(c) not in ("Cc", "Cs", "Cn")).strip()[:128].strip()
        if segment:
            segments.append(segment)
    if not segments:
        return None
    if prefix:
        segments = [s for s in prefix.split("/") if s] + segments
    elif segments[0] == "sys":
        segments.insert(0, "import")  # the server owns sys/
    segments = segments[:32]
    joined = "/".join(segments)
    return joined[:512].rstrip("/") or None


def clean_slug(name: str) -> str:
    """A project name: letters, digits, '.', '_' and '-', starting with a letter or digit."""
    slug = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in name.strip())
    slug = slug.strip("-._")[:100]
    return slug or "imported"


def to_datetime(value: Any) -> dt.datetime | None:
    """Unix seconds, milliseconds (MLflow) or a datetime, as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        return None
    return dt.datetime.fromtimestamp(number, tz=dt.timezone.utc)


def normalise(path: str, series: Series, skipped: Counter[str]) -> Series:
    """Sorted by step, one point per step (the one written last), steps in Runstore's range."""
    steps = series.steps
    if steps and 0 <= steps[0] and steps[-1] <= MAX_STEP and all(map(operator.lt, steps, steps[1:])):
        return series  # already so: the usual case, checked at C speed
    order = sorted(range(len(series.steps)), key=lambda i: series.steps[i])  # stable: the last write wins below
    out = Series(series.kind)
    for i in order:
        step = series.steps[i]
        if not 0 <= step <= MAX_STEP:
            skipped[f"points with a step outside 0..2**63-1 ({path} and others)"] += 1
            continue
        if out.steps and out.steps[-1] == step:
            skipped["points at a step already seen in the same series (the last one written is kept)"] += 1
            out.values[-1], out.timestamps[-1] = series.values[i], series.timestamps[i]
            continue
        out.add(step, series.values[i], series.timestamps[i])
    return out


# -- the server -----------------------------------------------------------------------------------
def custom_run_id(source: str, source_id: str) -> str:
    ident = f"import:{source}:{source_id}"
    if len(ident) > 128:  # the server's limit: a stable digest of the long id
        import hashlib

        ident = f"import:{source}:sha256:{hashlib.sha256(source_id.encode()).hexdigest()[:40]}"
    return ident


def _existing_fields(api: Api, run_uuid: str) -> dict[str, dict[str, Any]]:
    fields = api.call("GET", f"runs/{run_uuid}/attributes")["fields"]
    return {f["path"]: f for f in fields}


def _open_run(api: Api, info: dict[str, Any], last_steps: dict[str, int]) -> Run:
    """A Run writing to the existing ``info`` run, without the captures of ``init_run`` (an import is no training job)."""
    meta = {
        "url": api.url,
        "stream": uuid_module.uuid4().hex,
        "project": info.get("project"),
        "mode": "async",
        "created": time.time(),
        "run_uuid": info["uuid"],
        "run_id": info["id"],
    }
    run = Run(
        mode="async",
        info=info,
        api=Api(api.url, api.token),
        qdir=new_queue_dir(meta),
        last_steps=last_steps,
        flush_period=0.5,
        settings=Settings.from_env(),
    )
    register(run)
    return run


class _Writer:
    """Writes one source run's missing parts to its Runstore run and counts them."""

    def __init__(self, api: Api, source_run: SourceRun, summary: Summary, progress: Progress):
        self.api = api
        self.src = source_run
        self.summary = summary
        self.progress = progress
        self.run: Run | None = None
        self.info: dict[str, Any] = {}
        self.since_flush = 0
        self.since_wait = 0

    def create(self) -> tuple[dict[str, Any], bool]:
        src = self.src
        body: dict[str, Any] = {
            "project": src.project,
            "name": src.name[:250],
            "description": src.description[:65536],
            "tags": sorted({t[:1024] for t in src.tags if t})[:100],
            "custom_run_id": custom_run_id(src.source, src.source_id),
        }
        if src.creation_time is not None:
            now = dt.datetime.now(dt.timezone.utc)
            body["creation_time"] = min(src.creation_time, now).isoformat()
        response = self.api.call_raw("POST", "runs/", body=body)
        created = response.status_code == 201
        return decode(response), created

    def open(self, last_steps: dict[str, int]) -> Run:
        if self.run is None:
            self.run = _open_run(self.api, self.info, last_steps)
        return self.run

    def pace(self, points: int) -> None:
        """Keep the client's bounded queues from overflowing: wait for disk, and now and then for the server."""
        assert self.run is not None
        self.since_flush += points
        self.since_wait += points
        if self.since_wait >= WAIT_EVERY:
            self.since_wait = self.since_flush = 0
            self.run.wait()
        elif self.since_flush >= FLUSH_EVERY:
            self.since_flush = 0
            self.run.flush()

    def write(self) -> str:
        """``created``, ``resumed`` or ``unchanged``."""
        src = self.src
        self.info, created = self.create()
        existing = {} if created else _existing_fields(self.api, self.info["uuid"])
        last_steps: dict[str, int] = {}
        for path, attr in existing.items():
            value = attr.get("value")
            if str(attr.get("type", "")).endswith("_series") and isinstance(value, dict):
                if value.get("last_step") is not None:
                    last_steps[path] = int(value["last_step"])
        skipped = src.skipped
        fields: dict[str, Any] = {"import/source": src.source, "import/source_id": src.source_id}
        if src.group:
            fields["sys/group_tags"] = {src.group}
        fields.update(src.fields)
        todo_fields = {p: v for p, v in fields.items() if p not in existing and v is not None}
        todo_files = {p: f for p, f in src.files.items() if p not in existing}
        todo_sets = {p: f for p, f in src.file_sets.items() if p not in existing}
        todo_series: dict[str, Series] = {}
        for path, series in src.series.items():
            clean = normalise(path, series, skipped)
            last = last_steps.get(path)
            if last is not None:
                start = next((i for i, s in enumerate(clean.steps) if s > last), len(clean.steps))
                clean = Series(clean.kind, clean.steps[start:], clean.values[start:], clean.timestamps[start:])
            if clean.steps:
                todo_series[path] = clean
        state = src.state if src.state in STATES else "finished"
        same_state = not created and self.info.get("state") == state
        if not (todo_fields or todo_files or todo_sets or todo_series) and same_state:
            return "unchanged"
        run = self.open(last_steps)
        for path, value in todo_fields.items():
            try:
                run[path] = value
                self.summary.fields += 1
            except (TypeError, ValueError) as exc:
                skipped[f"fields of a type Runstore does not hold ({exc})"[:200]] += 1
        for path, file in todo_files.items():
            run[path].upload(File(file))
            self.summary.files += 1
            self.pace(max(1, file.stat().st_size // 1000))
        for path, folder in todo_sets.items():
            run[path].upload_files(str(folder))
            count = sum(1 for p in folder.rglob("*") if p.is_file())
            self.summary.files += count
            self.pace(max(1, sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) // 1000))
        for path, series in todo_series.items():
            handler = run[path]
            chunk = 10_000
            for start in range(0, len(series.steps), chunk):
                stop = start + chunk
                values = series.values[start:stop]
                if series.kind == "file":
                    values = [v if isinstance(v, File) else File(v) for v in values]
                    self.summary.files += len(values)
                handler.extend(values, steps=series.steps[start:stop], timestamps=series.timestamps[start:stop])
                self.summary.points += len(values)
                self.progress.label = self._label()
                self.progress.update(self.progress.done)
                self.pace(len(values) if series.kind != "file" else 1000 * len(values))
        run.stop()
        status = run.status()
        lost = status["dropped_operations"] + status["rejected_operations"]
        if lost or status["pending_operations"]:
            raise RunstoreError(
                f"{lost} operations were dropped or rejected and {status['pending_operations']} not delivered "
                f"(last error: {status['last_error']}); import again to complete the run"
            )
        if state != "finished":
            self.api.call("PATCH", f"runs/{self.info['uuid']}/", body={"state": state})
        return "created" if created else "resumed"

    def _label(self) -> str:
        return f"importing from {self.summary.source}: {self.summary.points:,} points"


def import_runs(
    api: Api, source: str, runs: Iterable[SourceRun], *, total: int, progress: bool | None = None
) -> Summary:
    """Import every source run (see the module's docstring); a run that fails is counted and the rest go on."""
    summary = Summary(source)
    bar = Progress(f"importing from {source}", total=total, force=progress)
    started = time.monotonic()
    done = 0
    iterator: Iterator[SourceRun] = iter(runs)
    try:
        while True:
            try:
                src = next(iterator)
            except StopIteration:
                break
            writer = _Writer(api, src, summary, bar)
            try:
                outcome = writer.write()
            except RunstoreError as exc:
                summary.runs_failed += 1
                summary.errors.append(f"{src.source_id}: {exc}")
                outcome = "failed"
            finally:
                if writer.run is not None:
                    writer.run.stop()
            if writer.info.get("id"):
                summary.run_ids[src.source_id] = str(writer.info["id"])
            if outcome == "created":
                summary.runs_created += 1
            elif outcome == "resumed":
                summary.runs_resumed += 1
            elif outcome == "unchanged":
                summary.runs_unchanged += 1
            summary.skipped.update(src.skipped)
            done += 1
            bar.update(done)
    finally:
        summary.seconds = time.monotonic() - started
        bar.close()
    return summary

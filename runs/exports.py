"""Exports: a project or one run as a ZIP archive of JSON and files, built by a task.

Layout::

    manifest.json                         project, time, runs, format version
    runs/<KEY-N>/run.json                 the run and all its fields (as the API reads them)
    runs/<KEY-N>/series/<path>.json       points of each float/string series: {steps, timestamps, values}
    runs/<KEY-N>/files/<path>/<relpath>   files of file and file-set fields
    runs/<KEY-N>/files/<path>/<step>-<name>  files of file series
    runs/<KEY-N>/lineage.json             artifact versions consumed (inputs) and produced (outputs), with files
    runs/<KEY-N>/audit.json               the audit log's entries about the run

The archive is written to a temporary file, then stored as ``exports/<id>.zip``;
building it again (a retried task) overwrites it.
"""

import json
import math
import os
import tempfile
import zipfile

from django.db.models import F
from django.utils import timezone

from projects.models import AuditEvent

from . import series as series_store
from . import storage
from .artifacts.models import ArtifactVersion
from .attributes import run_fields
from .models import Attribute, AttributeType, Export, ExportState, FileEntry, Run
from .paths import safe_file_name, safe_relpath

FORMAT_VERSION = 1
POINT_PAGE = 100_000


def _json_default(value):
    return str(value)


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _dump(archive: zipfile.ZipFile, name: str, data) -> None:
    archive.writestr(name, json.dumps(_clean(data), default=_json_default, indent=1))


def _entry(archive: zipfile.ZipFile, *parts: str) -> str:
    """An archive member name that unzips inside the target folder: every part a sanitised relative
    path (so names stored before file names were checked cannot climb out with ``..`` or ``/``),
    made unique with a ``~n`` suffix when sanitising made two names equal."""
    name = "/".join(p for p in (safe_relpath(part) for part in parts) if p)
    unique, n = name, 1
    while unique in archive.NameToInfo:
        stem, dot, ext = name.rpartition(".") if "." in name.rsplit("/", 1)[-1] else (name, "", "")
        unique = f"{stem}~{n}{dot}{ext}"
        n += 1
    return unique


def _series(archive, prefix, attr: Attribute) -> None:
    table = series_store.FLOAT_TABLE if attr.type == AttributeType.FLOAT_SERIES else series_store.STRING_TABLE
    with archive.open(_entry(archive, prefix, "series", f"{attr.path}.json"), "w", force_zip64=True) as out:
        out.write(b'{"path": ' + json.dumps(attr.path).encode() + b', "points": [')
        after, first = None, True
        while True:
            page = series_store.read_points(attr.pk, table, after_step=after, limit=POINT_PAGE)
            for step, ts, value in zip(page["steps"], page["timestamps"], page["values"], strict=True):
                out.write((b"" if first else b",") + json.dumps([step, ts, _clean(value)]).encode())
                first = False
            after = page["next_after_step"]
            if after is None:
                break
        out.write(b"]}")


def _files(archive, prefix, attr: Attribute) -> None:
    for entry in FileEntry.objects.filter(attribute=attr).select_related("blob").order_by("step", "relpath"):
        if attr.type == AttributeType.FILE_SERIES:
            name = f"{entry.step}-{safe_file_name(entry.name, fallback=entry.blob_id[:12])}"
        elif entry.relpath:
            name = safe_relpath(entry.relpath) or entry.blob_id[:12]
        else:
            name = safe_file_name(entry.name, fallback=attr.path.rsplit("/", 1)[-1])
        with archive.open(_entry(archive, prefix, "files", attr.path, name), "w", force_zip64=True) as out:
            for chunk in storage.iter_blob(entry.blob.storage_key):
                out.write(chunk)


def _run(archive, run: Run, prefix: str = "") -> dict:
    """Everything about ``run`` under ``prefix`` (default ``runs/<KEY-N>``)."""
    prefix = prefix or f"runs/{run.human_id}"
    attributes = list(Attribute.objects.filter(run=run).order_by("path"))
    _dump(
        archive,
        _entry(archive, prefix, "run.json"),
        {
            "id": run.human_id,
            "uuid": str(run.uuid),
            "name": run.name,
            "description": run.description,
            "state": run.state,
            "owner": run.owner.username if run.owner else None,
            "fields": run_fields(run, attributes),
        },
    )
    for attr in attributes:
        if attr.type in (AttributeType.FLOAT_SERIES, AttributeType.STRING_SERIES):
            _series(archive, prefix, attr)
        elif attr.type in (AttributeType.FILE, AttributeType.FILE_SET, AttributeType.FILE_SERIES):
            _files(archive, prefix, attr)
    _lineage(archive, prefix, run)
    _audit(archive, prefix, run)
    return {"id": run.human_id, "uuid": str(run.uuid), "name": run.name}


def _lineage(archive, prefix, run: Run) -> None:
    """``lineage.json``: the artifact versions the run consumed and produced, each with its file list."""
    from .artifacts.queries import link_json, run_links

    links = run_links(run)
    files = dict(ArtifactVersion.objects.filter(pk__in={link.version_id for link in links}).values_list("pk", "files"))
    rows = [{**link_json(link), "files": files.get(link.version_id) or []} for link in links]
    _dump(
        archive,
        _entry(archive, prefix, "lineage.json"),
        {"inputs": [r for r in rows if r["role"] == "input"], "outputs": [r for r in rows if r["role"] == "output"]},
    )


def _audit(archive, prefix, run: Run) -> None:
    """``audit.json``: the audit log's entries about the run (deleted to the trash, restored, ...)."""
    entries = AuditEvent.objects.filter(project_id=run.project_id, target_type="run", target_id=str(run.pk))
    rows = [
        {"at": e.at.isoformat(), "action": e.action, "actor": e.actor_name, "details": e.details}
        for e in entries.order_by("at", "id")
    ]
    _dump(archive, _entry(archive, prefix, "audit.json"), rows)


def build(export_id) -> str:
    export = Export.objects.select_related("project", "project__workspace", "run").filter(pk=export_id).first()
    if export is None:
        return "missing"
    if export.state == ExportState.DONE:
        return export.state
    live = Run.objects.filter(deleted_at__isnull=True).select_related("project", "project__workspace", "owner")
    runs = list(
        live.filter(pk=export.run_id) if export.run_id else live.filter(project=export.project).order_by("number")
    )
    Export.objects.filter(pk=export.pk).update(state=ExportState.RUNNING, total=len(runs), progress=0, error="")
    key = f"exports/{export.pk}.zip"
    fd, path = tempfile.mkstemp(suffix=".zip")
    os.close(fd)
    try:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            listed = []
            for run in runs:
                listed.append(_run(archive, run))
                Export.objects.filter(pk=export.pk).update(progress=F("progress") + 1)
            _dump(
                archive,
                _entry(archive, "manifest.json"),
                {
                    "format": FORMAT_VERSION,
                    "project": export.project.full_name,
                    "exported_at": timezone.now().isoformat(),
                    "runs": listed,
                },
            )
        size = os.path.getsize(path)
        with open(path, "rb") as stream:
            storage.delete_key(key)
            storage.blob_storage().save(key, stream)
    except Exception as exc:
        Export.objects.filter(pk=export.pk).update(
            state=ExportState.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
        )
        raise
    finally:
        os.unlink(path)
    Export.objects.filter(pk=export.pk).update(
        state=ExportState.DONE, storage_key=key, size=size, finished_at=timezone.now(), progress=len(runs)
    )
    return ExportState.DONE


def enqueue(export: Export) -> None:
    from django.db import transaction

    def send():
        from .tasks import build_export

        build_export.delay(str(export.pk))

    transaction.on_commit(send, robust=True)


def write_runs(archive: zipfile.ZipFile, runs, *, nested: bool) -> list[dict]:
    """Each run as ``_run`` writes it; ``nested``: under ``runs/<workspace>/<project>/<KEY-N>`` (runs of
    several projects). Returns the manifest's rows."""
    rows = []
    for run in runs:
        prefix = f"runs/{run.project.workspace.slug}/{run.project.slug}/{run.human_id}" if nested else ""
        row = _run(archive, run, prefix)
        rows.append({**row, "project": f"{run.project.workspace.slug}/{run.project.slug}"})
    return rows


def dump_json(archive: zipfile.ZipFile, name: str, data) -> None:
    _dump(archive, _entry(archive, name), data)

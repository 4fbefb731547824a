"""Writes of artifact versions and run links; called by the batch engine inside its transaction.

A batch's ``track`` operations (the client's ``track_files``) and its file and file-set uploads
(outputs of the run, keyed by their blobs) become :class:`ArtifactVersion` rows, created once per
workspace and content hash, and :class:`RunArtifact` links, one per ``(run, role, field)``: tracking
a field again replaces the field's link. Everything runs in the caller's transaction, so a batch that
fails applies no link, and a retried batch (already claimed) applies nothing twice.
"""

import hashlib
import json
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Q

from ..errors import BatchError
from ..models import AttributeType, FileEntry, Run
from .models import Artifact, ArtifactVersion, Kind, Role, RunArtifact

MAX_NAME = 200
MAX_LOCATION = 2048
MAX_HASH = 128
MAX_METADATA_KEYS = 100


@dataclass
class VersionSpec:
    """A version as a run recorded it under ``path``."""

    path: str
    hash: str
    role: str
    files: list = field(default_factory=list)  # [relpath, hash, size]
    size: int = 0
    name: str = ""
    location: str = ""
    metadata: dict = field(default_factory=dict)
    kind: str = Kind.TRACKED


def version_hash(rows) -> str:
    """The hash over a file list, as the client computes it: one file is its own hash, several are
    SHA-256 over ``relpath\\0hash\\0size\\n`` in path order (so uploaded and tracked copies agree)."""
    rows = sorted(rows)
    if len(rows) == 1:
        return rows[0][1]
    overall = hashlib.sha256()
    for relpath, digest, size in rows:
        overall.update(f"{relpath}\0{digest}\0{size}\n".encode())
    return overall.hexdigest()


def _fail(index, path, field_name, message, status=400, code="invalid"):
    return BatchError(status, code, message, op_index=index, path=path, field=field_name)


def _text(raw, index, path, name, limit, required=False) -> str:
    value = raw.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value) or len(value) > limit or "\x00" in value:
        raise _fail(
            index,
            path,
            name,
            f"must be a {'non-empty ' if required else ''}string of at most {limit} characters, no NUL",
        )
    return value


def _storable(value) -> bool:
    """JSON the databases store: no bytes (a MessagePack body may hold them), no NUL (PostgreSQL's jsonb)."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return "\\u0000" not in text


def parse_track(index: int, path: str, raw: dict) -> VersionSpec:
    """Check a ``track`` operation: ``hash``, ``files`` (``[{path, hash, size}]``), optional ``name``,
    ``role`` (input, the default, or output), ``location`` and ``metadata``. Raises BatchError."""
    digest = _text(raw, index, path, "hash", MAX_HASH, required=True)
    role = raw.get("role", Role.INPUT)
    if role not in Role.values:
        raise _fail(index, path, "role", f"must be one of {', '.join(Role.values)}, got {role!r}")
    files = raw.get("files", [])
    if not isinstance(files, list):
        raise _fail(index, path, "files", "must be a list of {path, hash, size}")
    limit = settings.RUNSTORE_MAX_ARTIFACT_FILES
    if len(files) > limit:
        raise _fail(
            index,
            path,
            "files",
            f"an artifact version lists at most {limit} files (RUNSTORE_MAX_ARTIFACT_FILES), got {len(files)}",
            status=413,
            code="too_many_files",
        )
    rows: list[list] = []
    total = 0
    for i, item in enumerate(files):
        if not isinstance(item, dict):
            raise _fail(index, path, f"files[{i}]", "must be an object with path, hash and size")
        relpath, file_hash, size = item.get("path"), item.get("hash"), item.get("size")
        if not isinstance(relpath, str) or not 0 < len(relpath) <= 1024 or "\x00" in relpath:
            raise _fail(index, path, f"files[{i}].path", "must be a string of 1-1024 characters, no NUL")
        if not isinstance(file_hash, str) or not 0 < len(file_hash) <= MAX_HASH or "\x00" in file_hash:
            raise _fail(index, path, f"files[{i}].hash", f"must be a string of 1-{MAX_HASH} characters")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _fail(index, path, f"files[{i}].size", "must be a non-negative integer")
        rows.append([relpath, file_hash, size])
        total += size
    metadata = raw.get("metadata", {})
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_KEYS or not _storable(metadata):
        raise _fail(
            index, path, "metadata", f"must be a JSON object of at most {MAX_METADATA_KEYS} keys (no bytes, no NUL)"
        )
    rows.sort()
    return VersionSpec(
        path=path,
        hash=digest,
        role=role,
        files=rows,
        size=total,
        name=_text(raw, index, path, "name", MAX_NAME),
        location=_text(raw, index, path, "location", MAX_LOCATION),
        metadata=metadata,
    )


def uploaded_versions(attributes) -> list[VersionSpec]:
    """Output versions of a batch's changed file and file-set fields (one query over their entries)."""
    wanted = {a.pk: a for a in attributes if a.type in (AttributeType.FILE, AttributeType.FILE_SET)}
    if not wanted:
        return []
    rows: dict[int, list] = {pk: [] for pk in wanted}
    entries = FileEntry.objects.filter(attribute_id__in=list(wanted), step__isnull=True)
    for attribute_id, relpath, name, blob_id, size in entries.values_list(
        "attribute_id", "relpath", "name", "blob_id", "size"
    ):
        rows[attribute_id].append([relpath or name or blob_id, blob_id, size])
    specs = []
    for pk, files in rows.items():
        if not files:
            continue
        files.sort()
        specs.append(
            VersionSpec(
                path=wanted[pk].path,
                hash=version_hash(files),
                role=Role.OUTPUT,
                files=files,
                size=sum(f[2] for f in files),
                kind=Kind.UPLOADED,
            )
        )
    return specs


def record(run: Run, specs: list[VersionSpec], now, *, cleared_paths=()) -> None:
    """Create the versions (once per workspace and hash), names and links of ``specs`` for ``run``.

    ``cleared_paths``: fields the batch deleted, whose links go too. A constant number of queries."""
    if cleared_paths:
        RunArtifact.objects.filter(run=run, path__in=list(cleared_paths)).delete()
    if not specs:
        return
    by_key = {(s.role, s.path): s for s in specs}  # the last write of a field wins
    specs = list(by_key.values())
    workspace_id = run.project.workspace_id
    names = {s.name for s in specs if s.name}
    artifacts: dict[str, Artifact] = {}
    if names:
        Artifact.objects.bulk_create(
            [Artifact(workspace_id=workspace_id, name=n, created_at=now) for n in sorted(names)],
            ignore_conflicts=True,
        )
        artifacts = {a.name: a for a in Artifact.objects.filter(workspace_id=workspace_id, name__in=names)}
    ArtifactVersion.objects.bulk_create(
        [
            ArtifactVersion(
                workspace_id=workspace_id,
                hash=s.hash,
                artifact=artifacts.get(s.name),
                kind=s.kind,
                size=s.size,
                file_count=len(s.files),
                files=s.files,
                location=s.location,
                metadata=s.metadata,
                first_seen=now,
                first_run=run,
            )
            for s in {s.hash: s for s in reversed(specs)}.values()
        ],
        ignore_conflicts=True,
    )
    versions = {
        v.hash: v
        for v in ArtifactVersion.objects.filter(workspace_id=workspace_id, hash__in={s.hash for s in specs}).only(
            "id", "hash", "artifact_id"
        )
    }
    # A version first seen without a name takes the first name it is tracked under.
    for name, artifact in artifacts.items():
        unnamed = [versions[s.hash].pk for s in specs if s.name == name and versions[s.hash].artifact_id is None]
        if unnamed:
            ArtifactVersion.objects.filter(pk__in=unnamed, artifact__isnull=True).update(artifact=artifact)
    replaced = Q()
    for s in specs:
        replaced |= Q(role=s.role, path=s.path)
    RunArtifact.objects.filter(replaced, run=run).delete()
    RunArtifact.objects.bulk_create(
        [
            RunArtifact(
                run=run,
                project_id=run.project_id,
                version=versions[s.hash],
                artifact_id=artifacts[s.name].pk if s.name else versions[s.hash].artifact_id,
                role=s.role,
                path=s.path,
                created_at=now,
            )
            for s in specs
        ]
    )

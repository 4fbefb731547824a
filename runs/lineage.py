"""Lineage: a run's artifact versions and the other runs of its project holding the same content.

This panel reads what a run records as fields; the workspace-wide versions, their consumers and
producers and the chain back to the data are ``runs.artifacts`` (models, queries, graph).

* ``track_files(path)`` in the client sets ``<field>/hash`` (over all files),
  ``<field>/size``, ``<field>/file_count`` and ``<field>/location``; runs
  whose ``*/hash`` string equals it recorded the same data set or model.
* an uploaded ``file`` or ``file_set`` field points at content-addressed
  blobs; runs whose file fields point at the same blobs hold the same bytes.

Every look-up is scoped by the permission module to the run's project (one
permission check, then the project key) and answered from indexes: the
``(project, path, string prefix, run)`` attribute index for hashes, the
``blob`` and ``attribute`` keys of file entries for uploads. The number of
queries does not grow with the number of artifacts or files.
"""

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count, Max, Min, Q, Sum

from projects import permissions

from .models import STRING_INDEX_CHARS, Attribute, AttributeType, FileEntry, ProjectField

MAX_ARTIFACTS = 50
MAX_MATCHES = 1000  # rows of "same content" across all artifacts of the run
RUNS_SHOWN = 20  # per artifact
TRACKED_PARTS = ("hash", "size", "file_count", "location")
FILE_TYPES = (AttributeType.FILE, AttributeType.FILE_SET)


@dataclass
class Artifact:
    path: str
    kind: str  # "tracked" or "uploaded"
    version: str  # the hash over all files, or the blob's sha256 (one file)
    size: int | None = None
    file_count: int | None = None
    location: str = ""
    attribute_id: int | None = None
    runs: list[dict] = field(default_factory=list)
    more: int = 0


def run_lineage(user, run) -> list[Artifact]:
    """The run's artifact versions, each with the other visible runs of its project holding the same content."""
    project = run.project
    attributes = permissions.require_in_project(Attribute.objects.filter(run__deleted_at__isnull=True), user, project)
    artifacts = tracked(attributes, run) + uploaded(attributes, run)
    by_hash = {a.version: a for a in artifacts if a.kind == "tracked"}
    if by_hash:
        _same_hash(attributes, project, run, by_hash)
    files = [a for a in artifacts if a.kind == "uploaded"]
    if files:
        entries = permissions.require_in_project(
            FileEntry.objects.filter(attribute__run__deleted_at__isnull=True), user, project, field="attribute__project"
        )
        _same_blobs(entries, run, files, project.key)
    return artifacts


def tracked(attributes, run) -> list[Artifact]:
    """``<field>/hash`` strings of the run, with their size, file count and location when recorded."""
    parts = Q()
    for part in TRACKED_PARTS:
        parts |= Q(path__endswith=f"/{part}")
    rows = attributes.filter(run=run).filter(parts).values_list("path", "type", "string_value", "int_value")
    fields: dict[str, dict] = defaultdict(dict)
    for path, type_, string_value, int_value in rows:
        name, _, part = path.rpartition("/")
        fields[name][part] = (type_, string_value, int_value)
    out = []
    for name in sorted(fields):
        values = fields[name]
        type_, digest, _ = values.get("hash", (None, None, None))
        if type_ != AttributeType.STRING or not digest or len(digest) >= STRING_INDEX_CHARS:
            continue
        out.append(
            Artifact(
                path=name,
                kind="tracked",
                version=digest,
                size=values.get("size", (None, None, None))[2],
                file_count=values.get("file_count", (None, None, None))[2],
                location=values.get("location", (None, "", None))[1] or "",
            )
        )
    return out[:MAX_ARTIFACTS]


def uploaded(attributes, run) -> list[Artifact]:
    """The run's file and file-set fields: their file count, size and (for one file) its blob."""
    rows = (
        FileEntry.objects.filter(attribute__in=attributes.filter(run=run, type__in=FILE_TYPES))
        .values("attribute_id", "attribute__path", "attribute__type")
        .annotate(n=Count("id"), size=Sum("size"), first=Min("blob_id"), last=Max("blob_id"))
        .order_by("attribute__path")[:MAX_ARTIFACTS]
    )
    out = []
    for row in rows:
        single = row["first"] == row["last"]
        out.append(
            Artifact(
                path=row["attribute__path"],
                kind="uploaded",
                version=row["first"] if single else "",
                size=row["size"],
                file_count=row["n"],
                attribute_id=row["attribute_id"],
            )
        )
    return out


def _run_link(row: dict, prefix: str, key: str) -> dict:
    return {
        "pk": row[f"{prefix}run_id"],
        "id": f"{key}-{row[f'{prefix}run__number']}",
        "name": row[f"{prefix}run__name"],
        "state": row[f"{prefix}run__state"],
    }


def _same_hash(attributes, project, run, by_hash: dict[str, Artifact]) -> None:
    """Other runs whose ``*/hash`` (any field name: a data set may be tracked under another one) is the same."""
    hash_paths = list(
        ProjectField.objects.filter(project=project, type=AttributeType.STRING, path__endswith="/hash").values_list(
            "path", flat=True
        )[:500]
    )
    rows = (
        attributes.filter(path__in=hash_paths, type=AttributeType.STRING, string_prefix__in=list(by_hash))
        .exclude(run=run)
        .values("string_prefix", "path", "run_id", "run__number", "run__name", "run__state")
        .order_by("-run_id")[:MAX_MATCHES]
    )
    for row in rows:
        field_name = row["path"].rpartition("/")[0]
        _add(by_hash[row["string_prefix"]], {**_run_link(row, "", project.key), "path": field_name})


def _same_blobs(entries, run, files: list[Artifact], key: str) -> None:
    """Other runs whose file fields hold blobs of this run's file fields: one grouped query over the blob key."""
    by_attribute = {a.attribute_id: a for a in files}
    rows = (
        entries.filter(
            attribute__type__in=FILE_TYPES,
            blob__entries__attribute_id__in=list(by_attribute),
        )
        .exclude(attribute__run=run)
        .values(
            "blob__entries__attribute_id",
            "attribute__path",
            "attribute__run_id",
            "attribute__run__number",
            "attribute__run__name",
            "attribute__run__state",
        )
        .annotate(shared=Count("blob_id", distinct=True))
        .order_by("-attribute__run_id", "attribute__path")[:MAX_MATCHES]
    )
    for row in rows:
        artifact = by_attribute[row["blob__entries__attribute_id"]]
        _add(artifact, {**_run_link(row, "attribute__", key), "path": row["attribute__path"], "shared": row["shared"]})


def _add(artifact: Artifact, link: dict) -> None:
    if any(r["pk"] == link["pk"] and r["path"] == link["path"] for r in artifact.runs):
        return
    if len(artifact.runs) < RUNS_SHOWN:
        artifact.runs.append(link)
    else:
        artifact.more += 1

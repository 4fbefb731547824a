"""A workspace's named artifacts as one list (the API's and the UI's): per name, how many versions,
the newest one, their total size and how many runs consumed and produced them.

Everything is counted over the links of runs the caller may view (``queries.visible_links``), so a
name used only in projects the caller cannot read is not listed, and the counts never include runs
they cannot see. A page costs a constant number of statements: the readable projects, the count,
the page of names with their counts, and the versions of those names.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, Q

from .models import ArtifactVersion, Role
from .queries import visible_links

MAX_NAME_FILTER = 200


@dataclass
class ArtifactSummary:
    id: int
    name: str
    versions: int
    consumers: int
    producers: int
    last_used: datetime | None
    size: int = 0  # the visible versions' sizes added up
    latest: dict | None = None  # the newest visible version: hash, size, file_count, first_seen


def workspace_links(user, workspace):
    """The links of ``workspace``'s versions from runs ``user`` may view (the readable projects are
    read once, here)."""
    return visible_links(user, resolved=True).filter(version__workspace=workspace)


def artifact_rows(links, name: str = ""):
    """Grouped rows of :func:`workspace_links` ``links``, one per artifact name, by name: a values
    queryset, so a paginator counts and slices it in the database."""
    links = links.filter(version__artifact__isnull=False)
    if name:
        links = links.filter(version__artifact__name__icontains=name)
    return (
        links.values("version__artifact_id", "version__artifact__name")
        .annotate(
            n_versions=Count("version_id", distinct=True),
            n_consumers=Count("run_id", distinct=True, filter=Q(role=Role.INPUT)),
            n_producers=Count("run_id", distinct=True, filter=Q(role=Role.OUTPUT)),
            last_used=Max("created_at"),
        )
        .order_by("version__artifact__name", "version__artifact_id")
    )


def summaries(links, rows) -> list[ArtifactSummary]:
    """The page ``rows`` of :func:`artifact_rows` with each name's newest visible version and total size
    (one query for the whole page)."""
    out = [
        ArtifactSummary(
            id=row["version__artifact_id"],
            name=row["version__artifact__name"],
            versions=row["n_versions"],
            consumers=row["n_consumers"],
            producers=row["n_producers"],
            last_used=row["last_used"],
        )
        for row in rows
    ]
    by_id = {s.id: s for s in out}
    if not by_id:
        return out
    seen = links.filter(version__artifact_id__in=list(by_id)).values("version_id")
    versions = (
        ArtifactVersion.objects.filter(artifact_id__in=list(by_id), pk__in=seen)
        .values_list("artifact_id", "hash", "size", "file_count", "first_seen")
        .order_by("artifact_id", "-first_seen", "-id")
    )
    for artifact_id, digest, size, file_count, first_seen in versions:
        summary = by_id[artifact_id]
        summary.size += size
        if summary.latest is None:
            summary.latest = {"hash": digest, "size": size, "file_count": file_count, "first_seen": first_seen}
    return out


def summary_json(summary: ArtifactSummary) -> dict:
    return {
        "name": summary.name,
        "versions": summary.versions,
        "size": summary.size,
        "latest": summary.latest,
        "consumers": summary.consumers,
        "producers": summary.producers,
        "last_used": summary.last_used,
    }

"""What runs tell about their project: storage usage (exact bytes, recomputed from the data,
never incremented) and activity (live runs, last change) for the project pages.

Recomputing makes a repeated or retried task harmless (it cannot count twice)
and keeps the number exact; reading it is one row (``projects.ProjectUsage``),
and a workspace's usage is the sum over its projects. ``projects`` knows nothing
of runs: the numbers are computed here and written into its table.
"""

from django.db import connection, transaction
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from projects import quotas
from projects.models import Project, ProjectUsage, WorkspaceUsage

from . import series as series_store
from .models import AttributeType, Blob, BlobPreview, Run, Upload

FLOAT_POINT_BYTES = 32  # series id, step, timestamp, value
STRING_POINT_BYTES = 24  # series id, step, timestamp; plus the UTF-8 length of the value


def batch_bytes(ops) -> int:
    """The bytes a parsed batch adds to its project's usage, counted as :func:`compute_usage` counts
    them: its series points (fields and file references cost nothing; files count when uploaded)."""
    total = 0
    for op in ops:
        if op.kind != "append":
            continue
        if op.type == AttributeType.FLOAT_SERIES:
            total += FLOAT_POINT_BYTES * len(op.values)
        elif op.type == AttributeType.STRING_SERIES:
            total += STRING_POINT_BYTES * len(op.values) + sum(len(v.encode("utf-8")) for v in op.values)
    return total


def compute_usage(project_id: int) -> dict:
    series = (
        "SELECT a.id FROM runs_attribute a JOIN runs_run r ON r.id = a.run_id WHERE r.project_id = %s AND a.type = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.type, COALESCE(SUM(a.count), 0) FROM runs_attribute a JOIN runs_run r ON r.id = a.run_id "
            "WHERE r.project_id = %s AND a.type IN (%s, %s) GROUP BY a.type",
            [project_id, AttributeType.FLOAT_SERIES, AttributeType.STRING_SERIES],
        )
        counts = dict(cursor.fetchall())
    string_bytes = series_store.string_bytes(series, [project_id, AttributeType.STRING_SERIES])
    float_points = int(counts.get(AttributeType.FLOAT_SERIES, 0))
    string_points = int(counts.get(AttributeType.STRING_SERIES, 0))
    blobs = Blob.objects.filter(uploads__run__project_id=project_id).distinct()
    blob_ids = blobs.values("pk")
    blob_total = Blob.objects.filter(pk__in=blob_ids).aggregate(n=Sum("size"))["n"] or 0
    blob_count = Blob.objects.filter(pk__in=blob_ids).count()
    preview_bytes = BlobPreview.objects.filter(blob_id__in=blob_ids).aggregate(n=Sum("size"))["n"] or 0
    series_bytes = FLOAT_POINT_BYTES * float_points + STRING_POINT_BYTES * string_points + int(string_bytes)
    return {
        "float_points": float_points,
        "string_points": string_points,
        "series_bytes": series_bytes,
        "blob_count": blob_count,
        "blob_bytes": int(blob_total),
        "preview_bytes": int(preview_bytes),
        "total_bytes": series_bytes + int(blob_total) + int(preview_bytes),
    }


def refresh_project_usage(project_id: int) -> ProjectUsage | None:
    if not Project.objects.filter(pk=project_id).exists():
        return None
    with transaction.atomic():
        values = compute_usage(project_id)
        usage, _ = ProjectUsage.objects.update_or_create(
            project_id=project_id, defaults={**values, "computed_at": timezone.now()}
        )
    return usage


def projects_needing_refresh():
    """Projects with no usage yet, or with runs, uploads or processed blobs newer than it."""
    counted = ProjectUsage.objects.filter(project=OuterRef("pk")).values("computed_at")[:1]
    changed_runs = Run.objects.filter(project=OuterRef("pk"), modified_at__gt=OuterRef("counted"))
    deleted_runs = Run.objects.filter(project=OuterRef("pk"), deleted_at__gt=OuterRef("counted"))
    new_uploads = Upload.objects.filter(run__project=OuterRef("pk"), created_at__gt=OuterRef("counted"))
    new_previews = BlobPreview.objects.filter(
        blob__uploads__run__project=OuterRef("pk"), created_at__gt=OuterRef("counted")
    )
    return (
        Project.objects.annotate(counted=Subquery(counted))
        .filter(
            Q(usage__isnull=True)
            | Exists(changed_runs)
            | Exists(deleted_runs)
            | Exists(new_uploads)
            | Exists(new_previews)
        )
        .values_list("pk", flat=True)
    )


def refresh_usage(project_ids: list[int] | None = None) -> int:
    """Recompute usage of the given projects, or of every project that changed since its last count,
    then write each of their workspaces' exact total into its quota accounting (``projects.quotas``).

    A workspace's bytes admitted by the storage quota are read before its projects are counted
    (what was admitted before is in the count; what is admitted during it stays counted), and every
    changed project of the workspace is counted, so the total is its projects' exact sum."""
    ids = list(project_ids) if project_ids is not None else list(projects_needing_refresh())
    workspaces = set(Project.objects.filter(pk__in=ids).values_list("workspace_id", flat=True))
    if project_ids is None:
        # Bytes admitted for writes that then failed (nothing changed) are forgiven here too.
        workspaces |= set(WorkspaceUsage.objects.filter(admitted__gt=0).values_list("workspace_id", flat=True))
    elif workspaces:
        ids += [pk for pk in projects_needing_refresh().filter(workspace_id__in=workspaces) if pk not in ids]
    admitted_before = {ws: quotas.admitted_snapshot(ws) for ws in workspaces}
    for project_id in ids:
        refresh_project_usage(project_id)
    for workspace_id in workspaces:
        quotas.recount(
            workspace_id, ProjectUsage.workspace_total(workspace_id), admitted_before=admitted_before[workspace_id]
        )
    return len(ids)


def annotate_project_activity(projects: QuerySet) -> QuerySet:
    """``live_runs`` (not in the trash) and ``last_activity`` (latest run change) on each project."""
    return projects.annotate(
        live_runs=Count("runs", filter=Q(runs__deleted_at__isnull=True)),
        last_activity=Max("runs__modified_at"),
    )

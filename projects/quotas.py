"""Workspace quotas: storage bytes, runs per project, projects per workspace, the largest upload.

Limits come from the workspace's :class:`~projects.models.WorkspaceQuota`, an empty field taking the
installation default (``RUNSTORE_QUOTA_*``; unset means unlimited). The services call the ``admit_*``
functions before they write; over a limit they raise :class:`QuotaExceeded`, a 403 that names the
workspace, the quota, what is used and the limit. Request rates are limited separately
(``projects.throttling``).

Storage admission is a single conditional ``UPDATE`` (``used < limit``), atomic on both databases,
so however many writers race, usage passes the limit by at most the one write admitted last.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from tracker import metrics
from tracker.api.errors import ApiError

from .models import Project, ProjectUsage, Workspace, WorkspaceQuota, WorkspaceUsage

QUOTAS = ("storage_bytes", "runs_per_project", "projects", "upload_bytes")
_LABELS = {
    "storage_bytes": "storage",
    "runs_per_project": "runs per project",
    "projects": "projects",
    "upload_bytes": "largest upload",
}


class QuotaExceeded(ApiError, PermissionDenied):
    """403 ``quota_exceeded``: the API renders it as JSON, the UI as a 403 page with its message."""

    def __init__(
        self,
        workspace: Workspace,
        quota: str,
        used: int,
        limit: int,
        message: str | None = None,
        *,
        requested: int | None = None,
    ):
        if message is None:

            def shown(n):
                return filesizeformat(n).replace("\xa0", " ") if quota in ("storage_bytes", "upload_bytes") else str(n)

            if quota == "upload_bytes":
                message = (
                    f"workspace {workspace.slug} is over its {_LABELS[quota]} quota: "
                    f"an upload of {shown(used)}, the limit is {shown(limit)}"
                )
            else:
                message = f"workspace {workspace.slug} is over its {_LABELS[quota]} quota: {shown(used)} used of {shown(limit)}"
                if requested:
                    message += f" (this write needs {shown(requested)} more)"
        super().__init__(
            403,
            "quota_exceeded",
            message,
            workspace=workspace.slug,
            quota=quota,
            used=used,
            limit=limit,
            requested=requested,
        )
        self.workspace, self.quota, self.used, self.limit = workspace, quota, used, limit
        metrics.QUOTA_REJECTIONS.labels(quota).inc()


@dataclass(frozen=True)
class Limits:
    requests_per_second: float | None
    burst: int | None
    workspace_requests_per_second: float | None
    storage_bytes: int | None
    runs_per_project: int | None
    projects: int | None
    upload_bytes: int | None


def _default(name: str):
    return getattr(settings, f"RUNSTORE_QUOTA_{name.upper()}", None)


def limits(workspace: Workspace | int) -> Limits:
    """The workspace's effective limits (its own where set, else the installation defaults).

    A workspace read with ``select_related("quota")`` (``"project__workspace__quota"`` from a run)
    costs no query: the per-request paths (every batch, every run created) read it that way."""
    if isinstance(workspace, Workspace) and Workspace.quota.is_cached(workspace):
        quota = getattr(workspace, "quota", None)  # None: selected, and the workspace has no quota row
    else:
        workspace_id = workspace.pk if isinstance(workspace, Workspace) else workspace
        quota = WorkspaceQuota.objects.filter(workspace_id=workspace_id).first()
    values = {}
    for name in Limits.__dataclass_fields__:
        own = getattr(quota, name, None) if quota is not None else None
        values[name] = own if own is not None else _default(name)
    return Limits(**values)


def rate_limits(*, workspace_id: int | None = None, slug: str | None = None) -> tuple[int | None, str | None, Limits]:
    """(workspace id, slug, effective limits) of the workspace given by id or slug, in one query;
    the installation defaults (and no workspace) when neither is given or it does not exist."""
    row = None
    if workspace_id is not None or slug:
        lookup = {"pk": workspace_id} if workspace_id is not None else {"slug": slug}
        names = [f"quota__{name}" for name in Limits.__dataclass_fields__]
        row = Workspace.objects.filter(**lookup).values_list("pk", "slug", *names).first()
    if row is None:
        return None, None, Limits(**{name: _default(name) for name in Limits.__dataclass_fields__})
    own = dict(zip(Limits.__dataclass_fields__, row[2:], strict=True))
    return row[0], row[1], Limits(**{n: v if v is not None else _default(n) for n, v in own.items()})


def _usage(workspace: Workspace) -> WorkspaceUsage:
    usage = WorkspaceUsage.objects.filter(workspace=workspace).first()
    if usage is None:
        usage, _ = WorkspaceUsage.objects.get_or_create(
            workspace=workspace,
            defaults={"bytes": ProjectUsage.workspace_total(workspace.pk), "recounted_at": timezone.now()},
        )
    return usage


def used_bytes(workspace: Workspace) -> int:
    """The last recount plus what was admitted since (read only: no usage row is made for it)."""
    row = WorkspaceUsage.objects.filter(workspace=workspace).values_list("bytes", "admitted").first()
    if row is None:
        return ProjectUsage.workspace_total(workspace.pk)
    return row[0] + row[1]


def admit_bytes(workspace: Workspace, nbytes: int, *, accepted: Callable[[], bool] | None = None) -> None:
    """Count ``nbytes`` about to be stored in ``workspace`` against its storage quota, or refuse.

    Call it outside (before) the write's transaction: the conditional UPDATE then holds its row lock
    only for itself, so writers to one workspace do not queue behind each other's batches. A write
    that fails after admission is forgiven by the next recount (:func:`recount`). ``accepted()``
    (asked only when there is a limit) says the write was accepted before (an idempotent retry): it
    is neither counted again nor refused, as a write already accepted is never lost.
    """
    limit = limits(workspace).storage_bytes
    if limit is None or nbytes <= 0:
        return
    if accepted is not None and accepted():
        return
    _usage(workspace)
    with transaction.atomic():
        admitted = WorkspaceUsage.objects.filter(workspace=workspace, bytes__lt=limit - F("admitted")).update(
            admitted=F("admitted") + nbytes
        )
    if not admitted:
        raise QuotaExceeded(workspace, "storage_bytes", used_bytes(workspace), limit, requested=nbytes)


def recount(workspace_id: int, exact_bytes: int, *, admitted_before: int) -> None:
    """Record an exact recount: ``exact_bytes`` includes what was admitted before it began
    (``admitted_before``, read with :func:`admitted_snapshot`); later admissions stay counted."""
    now = timezone.now()
    updated = WorkspaceUsage.objects.filter(workspace_id=workspace_id).update(
        bytes=exact_bytes, admitted=F("admitted") - admitted_before, recounted_at=now
    )
    if not updated:
        WorkspaceUsage.objects.get_or_create(
            workspace_id=workspace_id, defaults={"bytes": exact_bytes, "recounted_at": now}
        )


def admitted_snapshot(workspace_id: int) -> int:
    return WorkspaceUsage.objects.filter(workspace_id=workspace_id).values_list("admitted", flat=True).first() or 0


def admit_upload(workspace: Workspace, size: int, *, store: bool = True) -> None:
    """Refuse an upload larger than the workspace's largest-upload quota, then admit its bytes
    (``store=False``: bytes already admitted, or already stored in the workspace, are not counted again)."""
    limit = limits(workspace).upload_bytes
    if limit is not None and size > limit:
        raise QuotaExceeded(workspace, "upload_bytes", size, limit)
    if store:
        admit_bytes(workspace, size)


def admit_project(workspace: Workspace) -> None:
    limit = limits(workspace).projects
    if limit is None:
        return
    if transaction.get_connection().in_atomic_block:
        # Concurrent creations in the workspace count one after the other (PostgreSQL row lock).
        Workspace.objects.select_for_update().filter(pk=workspace.pk).values_list("pk", flat=True).first()
    used = Project.objects.filter(workspace=workspace).count()
    if used >= limit:
        raise QuotaExceeded(workspace, "projects", used, limit)


def admit_run(project: Project, runs_in_project: int | Callable[[], int]) -> None:
    """Refuse a new run when ``project`` already holds ``runs_in_project`` ≥ its workspace's limit
    (the caller, which owns runs, counts them; runs in the trash count until purged). A callable is
    called only when there is a limit, so an unlimited workspace costs no count."""
    workspace = project.workspace if Project.workspace.is_cached(project) else project.workspace_id
    limit = limits(workspace).runs_per_project
    if limit is None:
        return
    if callable(runs_in_project):
        runs_in_project = runs_in_project()
    if runs_in_project >= limit:
        raise QuotaExceeded(project.workspace, "runs_per_project", runs_in_project, limit)


def usage_report(workspace: Workspace) -> list[dict]:
    """Usage against each quota, for the workspace page and admin: name, used, limit, percent."""
    effective = limits(workspace)
    projects = list(Project.objects.filter(workspace=workspace).values_list("pk", flat=True))
    rows: list[dict] = [
        {"quota": "storage_bytes", "label": "Storage", "used": used_bytes(workspace), "limit": effective.storage_bytes},
        {"quota": "projects", "label": "Projects", "used": len(projects), "limit": effective.projects},
    ]
    for row in rows:
        row["percent"] = round(100 * row["used"] / row["limit"], 1) if row["limit"] else None
    return rows

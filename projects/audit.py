"""The audit log: who did what, when, from where. Services and signal receivers call :func:`record`;
nothing else writes it.

The request's address, user agent, request id and API token prefix come from the request context
(``tracker.context``), so a service needs only the actor and the target. Entries are never changed
(``AuditEvent.save`` and its queryset refuse); :func:`purge_expired` (a daily Celery beat task) drops
those older than ``RUNSTORE_AUDIT_RETENTION_DAYS``. Secrets never enter it: a token appears by its
prefix only, a failed login by the username tried.

Action names (``<subject>.<verb>``):

- ``login``, ``login.failed``, ``login.locked_out``, ``logout``
- ``token.issued``, ``token.revoked``, ``token.refused`` (an expired or revoked token was presented)
- ``workspace.created``, ``member.added``, ``member.role_changed``, ``member.removed``
- ``project_member.added``, ``project_member.role_changed``, ``project_member.removed``
- ``team.created``, ``team.members_changed``, ``team.deleted``
- ``custom_role.created``, ``custom_role.changed``, ``custom_role.deleted``
- ``service_account.created``, ``quota.changed``
- ``project.created``, ``project.settings_changed``, ``project.deleted``
- ``run.deleted`` (to the trash), ``run.restored``, ``run.purged``, ``run.erased`` (deleted for good, GDPR; with an ``Erasure`` record)
- ``export.requested``, ``export.downloaded``, ``export.table`` (the run table's view as CSV/Parquet), ``export.lineage`` (an artifact version's whole lineage as a ZIP)
- ``model.created``, ``model.renamed``, ``model.updated``, ``model.deleted`` (the model registry)
- ``model_version.registered``, ``model_version.stage_changed``, ``model_version.updated``,
  ``model_version.deleted``, ``model_alias.set``, ``model_alias.deleted``
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from accounts.models import ApiToken
from tracker import context

from .models import AuditEvent, Project, Workspace

# The workspace an entry belongs to when its writer cannot name it (see :func:`about`).
_about_workspace: ContextVar[Workspace | None] = ContextVar("runstore_audit_workspace", default=None)


@contextmanager
def about(*, workspace: Workspace | None):
    """Entries recorded inside the block without a workspace or project of their own belong to ``workspace``.

    For writes announced by a signal from an app that knows nothing of workspaces (a token bound to a
    workspace is announced by ``accounts`` before ``projects`` binds it).
    """
    reset = _about_workspace.set(workspace)
    try:
        yield
    finally:
        _about_workspace.reset(reset)


def _describe(target) -> tuple[str, str, str]:
    if target is None:
        return "", "", ""
    if isinstance(target, str):
        return "", "", target[:300]
    if isinstance(target, get_user_model()):
        return "user", str(target.pk), target.get_username()
    if isinstance(target, ApiToken):
        # By its visible prefix only: the secret is never stored, and never named here.
        owner = target.user.get_username()
        return "apitoken", str(target.pk), f"{target.prefix} ({owner}{': ' + target.name if target.name else ''})"[:300]
    name = type(target).__name__.lower()
    return name, str(getattr(target, "pk", "") or ""), str(target)[:300]


def record(
    action: str, *, actor=None, workspace=None, project=None, target=None, details: dict | None = None
) -> AuditEvent:
    """Write one audit entry. ``actor`` None (or anonymous) is the system or an unknown caller."""
    if project is not None and workspace is None:
        workspace = project.workspace
    if isinstance(target, Workspace) and workspace is None:
        workspace = target
    if isinstance(target, Project) and project is None:
        project, workspace = target, workspace or target.workspace
    if workspace is None:
        workspace = _about_workspace.get()
    ctx = context.current()
    known = actor is not None and getattr(actor, "is_authenticated", False)
    kind, pk, text = _describe(target)
    return AuditEvent.objects.create(
        action=action,
        actor=actor if known else None,
        actor_name=actor.get_username() if known else "",
        workspace=workspace,
        project=project,
        target_type=kind,
        target_id=pk,
        target=text,
        address=ctx.address or None,
        user_agent=ctx.user_agent,
        token_prefix=ctx.token_prefix,
        request_id=ctx.request_id,
        details=json.loads(json.dumps(details or {}, cls=DjangoJSONEncoder)),
    )


def purge_expired(now=None) -> int:
    """Delete entries older than the retention period (0: keep for ever); returns how many went."""
    days = settings.RUNSTORE_AUDIT_RETENTION_DAYS
    if not days:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    return AuditEvent.objects.purge_before(cutoff)


# ---- export ---------------------------------------------------------------------------------

EXPORT_FIELDS = (
    "id",
    "at",
    "action",
    "actor",
    "workspace",
    "project",
    "target_type",
    "target_id",
    "target",
    "address",
    "user_agent",
    "token_prefix",
    "request_id",
    "details",
)


def _row(event: AuditEvent) -> dict:
    return {
        "id": event.pk,
        "at": event.at.isoformat(),
        "action": event.action,
        "actor": event.actor_name,
        "workspace": event.workspace.slug if event.workspace is not None else "",
        "project": event.project.full_name if event.project is not None else "",
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target": event.target,
        "address": event.address or "",
        "user_agent": event.user_agent,
        "token_prefix": event.token_prefix,
        "request_id": event.request_id,
        "details": event.details,
    }


def _events(queryset) -> Iterator[dict]:
    for event in queryset.select_related("workspace", "project", "project__workspace").iterator(chunk_size=2000):
        yield _row(event)


def _csv_safe(value: str) -> str:
    # A cell a spreadsheet would run as a formula (=, +, -, @, tab, CR) is quoted as text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def export_csv(queryset) -> Iterable[str]:
    """The entries as CSV lines (a header first; ``details`` as compact JSON), for streaming."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(EXPORT_FIELDS)
    for row in _events(queryset):
        row["details"] = json.dumps(row["details"], sort_keys=True, separators=(",", ":"))
        yield line([_csv_safe(str(row[name])) for name in EXPORT_FIELDS])


def export_json(queryset) -> Iterable[str]:
    """The entries as one JSON array of objects, in chunks, for streaming."""
    yield "["
    for n, row in enumerate(_events(queryset)):
        yield ("," if n else "") + "\n" + json.dumps(row, cls=DjangoJSONEncoder)
    yield "\n]\n"

"""The audit log: who did what, when, from where. Services call :func:`record`; nothing else writes it.

The request's address, user agent, request id and API token prefix come from the request context
(``tracker.context``), so a service needs only the actor and the target. Entries are never changed;
:func:`purge_expired` drops those older than ``RUNSTORE_AUDIT_RETENTION_DAYS``.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from tracker import context

from .models import AuditEvent, Project, Workspace


def _describe(target) -> tuple[str, str, str]:
    if target is None:
        return "", "", ""
    if isinstance(target, str):
        return "", "", target[:300]
    if isinstance(target, get_user_model()):
        return "user", str(target.pk), target.get_username()
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
        details=details or {},
    )


def purge_expired(now=None) -> int:
    """Delete entries older than the retention period; returns how many went."""
    days = settings.RUNSTORE_AUDIT_RETENTION_DAYS
    if not days:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted, _ = AuditEvent.objects.filter(at__lt=cutoff).delete()
    return deleted

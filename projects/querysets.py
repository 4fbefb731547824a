from django.db import models


class WorkspaceQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view"):
        from .permissions import scope_workspaces

        return scope_workspaces(self, user, action)


class ProjectQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view"):
        from .permissions import scope_projects

        return scope_projects(self, user, action)


class AuditEventImmutable(ValueError):
    """The audit log is append-only: entries are never changed, and only the retention purge removes them."""


class AuditEventQuerySet(models.QuerySet):
    """Append-only: ``update()`` and ``delete()`` refuse; :meth:`purge_before` is the one way entries go."""

    def update(self, **kwargs):
        raise AuditEventImmutable("audit events are never changed")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AuditEventImmutable("audit events are never changed")

    def delete(self):
        raise AuditEventImmutable("audit events are removed only by the retention purge (projects.audit)")

    def purge_before(self, cutoff) -> int:
        """Delete the entries recorded before ``cutoff`` (the retention purge); returns how many went."""
        deleted, _ = models.QuerySet.delete(self.filter(at__lt=cutoff))
        return deleted

from django.db import models


class RunQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view", *, trashed: bool = False, deferred: bool = False):
        """Live runs (with ``trashed``, those in the trash) of projects where ``user`` may perform ``action``.

        ``deferred``: a look-up by key whose run is then checked by ``permissions.require_on_project``
        (the batch service), see ``projects.permissions.scope_by_project``.
        """
        from projects.permissions import scope_by_project

        return scope_by_project(self.filter(deleted_at__isnull=not trashed), user, action, deferred=deferred)

    def with_related(self):
        return self.select_related("project", "project__workspace", "owner")


class AttributeQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view"):
        from projects.permissions import scope_by_project

        return scope_by_project(self.filter(run__deleted_at__isnull=True), user, action, field="run__project")


class SavedViewQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view"):
        """Saved views ``user`` may see (``view``: theirs and shared ones) or change (``write``/``manage``: theirs)."""
        from projects.permissions import scope_owned

        return scope_owned(self, user, action)


class ExportQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view"):
        """Exports of projects where ``user`` may perform ``action``."""
        from projects.permissions import scope_by_project

        return scope_by_project(self, user, action)

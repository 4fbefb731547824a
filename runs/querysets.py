from django.db import models


class RunQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view"):
        """Live (not deleted) runs of projects where ``user`` may perform ``action``."""
        from projects.permissions import scope_by_project

        return scope_by_project(self.filter(deleted_at__isnull=True), user, action)

    def with_related(self):
        return self.select_related("project", "project__workspace", "owner")


class AttributeQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view"):
        from projects.permissions import scope_by_project

        return scope_by_project(self.filter(run__deleted_at__isnull=True), user, action, field="run__project")

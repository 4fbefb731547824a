from django.db import models


class RegisteredModelQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view"):
        """Models whose home project lets ``user`` perform ``action``."""
        from projects.permissions import scope_by_project

        return scope_by_project(self, user, action)

    def with_related(self):
        return self.select_related("project", "workspace", "project__workspace", "created_by")


class ModelVersionQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view"):
        from projects.permissions import scope_by_project

        return scope_by_project(self, user, action, field="model__project")

    def with_related(self):
        return self.select_related(
            "model",
            "model__project",
            "model__project__workspace",
            "run",
            "run__project",
            "created_by",
            "stage_changed_by",
        )

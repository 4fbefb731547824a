from django.db import models


class WorkspaceQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view"):
        from .permissions import scope_workspaces

        return scope_workspaces(self, user, action)


class ProjectQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view"):
        from .permissions import scope_projects

        return scope_projects(self, user, action)

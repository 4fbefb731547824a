"""Shared pieces of the workspace, project and token pages."""

from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from tracker.ui import ScopedUIViewMixin

from .. import permissions
from ..models import Project, Workspace


class WorkspaceMixin(ScopedUIViewMixin):
    """A page of one workspace the user may view (404 otherwise); ``can(action)`` asks the permission module.

    With ``members_only``, a page for the workspace's members: someone who reaches the workspace only
    through one of its projects gets 403 (they see it exists, not who is in it).
    """

    members_only = False

    def dispatch(self, request, *args, **kwargs):
        if self.members_only and request.user.is_authenticated:
            self.require("member")
        return super().dispatch(request, *args, **kwargs)

    def get_workspace(self) -> Workspace:
        if not hasattr(self, "_workspace"):
            self._workspace = get_object_or_404(
                Workspace.objects.for_user(self.request.user, "view"), slug=self.kwargs["workspace"]
            )
        return self._workspace

    def can(self, action: str) -> bool:
        cache = self.__dict__.setdefault("_can", {})
        if action not in cache:
            cache[action] = permissions.can(self.request.user, action, self.get_workspace())
        return cache[action]

    def require(self, action: str) -> None:
        permissions.require(self.request.user, action, self.get_workspace())

    def base_context(self) -> dict:
        return {
            "workspace": self.get_workspace(),
            "is_workspace_member": self.can("member"),
            "can_write_workspace": self.can("write"),
            "can_manage_workspace": self.can("manage"),
        }

    def render(self, template: str, context: dict, status: int = 200) -> TemplateResponse:
        return TemplateResponse(self.request, template, {**self.base_context(), **context}, status=status)


class ProjectMixin(ScopedUIViewMixin):
    """A page of one project the user may view (404 otherwise)."""

    def get_project(self) -> Project:
        if not hasattr(self, "_project"):
            self._project = get_object_or_404(
                Project.objects.for_user(self.request.user, "view").select_related("workspace"),
                workspace__slug=self.kwargs["workspace"],
                slug=self.kwargs["project"],
            )
        return self._project

    def can(self, action: str) -> bool:
        cache = self.__dict__.setdefault("_can", {})
        if action not in cache:
            cache[action] = permissions.can(self.request.user, action, self.get_project())
        return cache[action]

    def require(self, action: str) -> None:
        permissions.require(self.request.user, action, self.get_project())

    def base_context(self) -> dict:
        project = self.get_project()
        return {
            "project": project,
            "workspace": project.workspace,
            "can_manage_project": self.can("manage"),
            "can_delete_project": permissions.can(self.request.user, "manage", project.workspace),
        }

    def render(self, template: str, context: dict, status: int = 200) -> TemplateResponse:
        return TemplateResponse(self.request, template, {**self.base_context(), **context}, status=status)


def no_store(response):
    """A page that shows (or may show) a token's secret: no cache, no back-button copy, keeps it."""
    add_never_cache_headers(response)
    response["Cache-Control"] = "no-store, no-cache, must-revalidate, private, max-age=0"
    return response

from django.shortcuts import get_object_or_404
from django.views.generic import ListView

from tracker.ui import ScopedUIViewMixin

from . import activity
from .models import Project, Workspace


class WorkspaceListView(ScopedUIViewMixin, ListView):
    template_name = "projects/workspace_list.html"
    context_object_name = "workspaces"

    def scoped_queryset(self):
        return Workspace.objects.for_user(self.request.user, "view")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        projects = activity.annotate(Project.objects.for_user(self.request.user, "view").select_related("workspace"))
        by_workspace: dict = {}
        for project in projects:
            by_workspace.setdefault(project.workspace_id, []).append(project)
        for workspace in context["workspaces"]:
            workspace.visible_projects = by_workspace.get(workspace.pk, [])
        # projects shared directly, in workspaces the user cannot list
        listed = {w.pk for w in context["workspaces"]}
        context["shared_projects"] = [p for p in projects if p.workspace_id not in listed]
        return context


class ProjectListView(ScopedUIViewMixin, ListView):
    template_name = "projects/project_list.html"
    context_object_name = "projects"

    def scoped_queryset(self):
        self.workspace = get_object_or_404(
            Workspace.objects.for_user(self.request.user, "view"), slug=self.kwargs["workspace"]
        )
        return activity.annotate(
            Project.objects.for_user(self.request.user, "view")
            .filter(workspace=self.workspace)
            .select_related("workspace")
        )

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["workspace"] = self.workspace
        context["members"] = self.workspace.memberships.select_related("user").order_by("user__username")
        return context

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.views import View
from django.views.generic import ListView

from tracker.ui import ScopedUIViewMixin

from .. import activity, permissions, quotas, services
from ..forms import ProjectCreateForm, apply_service_error
from ..models import Project, Workspace
from .base import WorkspaceMixin


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
        # who is in the workspace and what it uses are for its members, not for a guest of one project
        context["is_workspace_member"] = permissions.can(self.request.user, "member", self.workspace)
        if context["is_workspace_member"]:
            members = self.workspace.memberships.select_related("user", "team__workspace")
            context["members"] = sorted(members, key=lambda m: (m.team_id is not None, str(m.principal).lower()))
            context["usage"] = quotas.usage_report(self.workspace)
        context["can_write_workspace"] = permissions.can(self.request.user, "write", self.workspace)
        context["can_manage_workspace"] = permissions.can(self.request.user, "manage", self.workspace)
        if context["can_write_workspace"]:
            context["project_form"] = ProjectCreateForm()
        return context


class ProjectCreateView(WorkspaceMixin, View):
    """A new project in the workspace (needs ``write`` there); its creator becomes its owner."""

    template_name = "projects/project_create.html"

    def scoped_queryset(self):
        return Project.objects.for_user(self.request.user, "view").filter(workspace=self.get_workspace())

    def get(self, request, workspace):
        self.require("write")
        return self.render(self.template_name, {"form": ProjectCreateForm()})

    def post(self, request, workspace):
        self.require("write")
        form = ProjectCreateForm(request.POST)
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            try:
                project = services.create_project(
                    request.user,
                    self.get_workspace(),
                    data["slug"],
                    key=data["key"] or None,
                    description=data["description"],
                    visibility=data["visibility"],
                )
            except ValidationError as exc:
                apply_service_error(form, exc)
            except quotas.QuotaExceeded as exc:
                form.add_error(None, exc.message)
                status = 403
            else:
                messages.success(request, f"Created the project {project.full_name}.")
                return redirect("runs:run_list", workspace, project.slug)
        return self.render(self.template_name, {"form": form}, status=status)

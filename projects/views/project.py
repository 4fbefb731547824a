"""Project members (users and teams, built-in or custom roles, allow or deny) and project settings."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views import View

from .. import services
from ..forms import (
    GrantChangeForm,
    ProjectDeleteForm,
    ProjectGrantForm,
    ProjectSettingsForm,
    apply_service_error,
    project_role_choices,
)
from ..models import Membership, ProjectGrant, WorkspaceRole
from .base import ProjectMixin


def _grant(project, principal, data, *, deny: bool, by):
    if data["custom_role"] is not None:
        return services.grant_custom_role(project, principal, data["custom_role"], deny=deny, by=by)
    return services.set_project_role(project, principal, data["builtin"], by=by)


class ProjectMembersView(ProjectMixin, View):
    """Who holds which role on a project; POST (project managers) adds a user or team."""

    template_name = "projects/project_members.html"

    def scoped_queryset(self):
        return ProjectGrant.objects.filter(project=self.get_project()).select_related(
            "user", "team__workspace", "custom_role"
        )

    def page(self, form=None, *, error=None, status=200):
        project = self.get_project()
        grants = sorted(self.get_queryset(), key=lambda g: (g.team_id is not None, str(g.principal).lower(), g.deny))
        choices = project_role_choices(project)
        for grant in grants:
            role = f"custom:{grant.custom_role_id}" if grant.custom_role_id else f"role:{grant.role}"
            grant.form = GrantChangeForm(
                initial={"role": role}, project=project, deny=grant.deny, prefix=f"g{grant.pk}", choices=choices
            )
        admins = (
            Membership.objects.filter(workspace=project.workspace, role__in=[WorkspaceRole.OWNER, WorkspaceRole.ADMIN])
            .select_related("user", "team__workspace")
            .order_by("role")
        )
        context = {
            "grants": grants,
            "workspace_admins": admins,
            "form": form or ProjectGrantForm(project=project),
            "error": error,
        }
        return self.render(self.template_name, context, status=status)

    def get(self, request, workspace, project):
        return self.page()

    def post(self, request, workspace, project):
        self.require("manage")
        project_obj = self.get_project()
        form = ProjectGrantForm(request.POST, project=project_obj)
        if form.is_valid():
            data = form.cleaned_data
            try:
                _grant(project_obj, data["principal"], data, deny=data["deny"], by=request.user)
            except ValidationError as exc:
                apply_service_error(form, exc, {"custom_role": "role"})
            else:
                messages.success(request, f"Gave {data['principal']} a role on {project_obj.full_name}.")
                return redirect("projects:project_members", workspace, project)
        return self.page(form, status=400)


class ProjectMemberView(ProjectMembersView):
    """POST: change the role of one grant (it keeps allowing or denying)."""

    http_method_names = ["post"]

    def post(self, request, workspace, project, grant_id):
        grant = get_object_or_404(self.get_queryset(), pk=grant_id)
        self.require("manage")
        project_obj = self.get_project()
        form = GrantChangeForm(request.POST, project=project_obj, deny=grant.deny, prefix=f"g{grant.pk}")
        if not form.is_valid():
            form = GrantChangeForm(request.POST, project=project_obj, deny=grant.deny)
        if not form.is_valid():
            return self.page(error="; ".join(f"{k}: {v[0]}" for k, v in form.errors.items()), status=400)
        try:
            _grant(project_obj, grant.principal, form.cleaned_data, deny=grant.deny, by=request.user)
        except ValidationError as exc:
            return self.page(error=" ".join(exc.messages), status=400)
        messages.success(request, f"Changed the role of {grant.principal}.")
        return redirect("projects:project_members", workspace, project)


class ProjectMemberRemoveView(ProjectMembersView):
    """Confirm (GET) and remove (POST) one grant; never the project's last owner."""

    def get(self, request, workspace, project, grant_id):
        grant = get_object_or_404(self.get_queryset(), pk=grant_id)
        self.require("manage")
        what = "denial" if grant.deny else "role"
        return self.render(
            "projects/confirm.html",
            {
                "title": f"Remove the {what} of {grant.principal} on {self.get_project().full_name}?",
                "explain": "Access through the workspace (its owners and admins, workspace-readable projects) stays.",
                "action": "Remove",
                "cancel_url": reverse("projects:project_members", args=[workspace, project]),
            },
        )

    def post(self, request, workspace, project, grant_id):
        grant = get_object_or_404(self.get_queryset(), pk=grant_id)
        try:
            services.remove_project_grant(self.get_project(), grant.principal, deny=grant.deny, by=request.user)
        except ValidationError as exc:
            return self.page(error=" ".join(exc.messages), status=400)
        messages.success(request, f"Removed {grant.principal} from {self.get_project().full_name}.")
        return redirect("projects:project_members", workspace, project)


class ProjectSettingsView(ProjectMixin, View):
    """Description and visibility (project managers), and deletion (workspace managers)."""

    template_name = "projects/project_settings.html"

    def scoped_queryset(self):
        from ..models import Project

        return Project.objects.for_user(self.request.user, "view").filter(pk=self.get_project().pk)

    def page(self, form=None, delete_form=None, status=200):
        project = self.get_project()
        context = {
            "form": form
            or ProjectSettingsForm(initial={"description": project.description, "visibility": project.visibility}),
            "delete_form": delete_form or ProjectDeleteForm(project=project),
        }
        return self.render(self.template_name, context, status=status)

    def get(self, request, workspace, project):
        self.require("manage")
        return self.page()

    def post(self, request, workspace, project):
        self.require("manage")
        form = ProjectSettingsForm(request.POST)
        if form.is_valid():
            try:
                services.update_project(self.get_project(), by=request.user, **form.cleaned_data)
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, "Saved the project's settings.")
                return redirect("projects:project_settings", workspace, project)
        return self.page(form, status=400)


class ProjectDeleteView(ProjectSettingsView):
    """POST: delete the project and everything in it, once its name is typed (workspace managers)."""

    http_method_names = ["post"]

    def post(self, request, workspace, project):
        project_obj = self.get_project()
        self.require("manage")
        form = ProjectDeleteForm(request.POST, project=project_obj)
        if not form.is_valid():
            return self.page(delete_form=form, status=400)
        name = project_obj.full_name
        services.delete_project(project_obj, by=request.user)
        messages.success(request, f"Deleted the project {name}.")
        return redirect("projects:project_list", workspace)

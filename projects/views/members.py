"""Workspace administration pages: members, teams, custom roles, service accounts.

Visible to whoever may view the workspace; every change goes through ``projects.services``, which
checks the ``manage`` action (403 for a member without it, 404 for whoever cannot see the workspace).
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views import View

from accounts.models import ApiToken

from .. import services
from ..forms import (
    CustomRoleForm,
    MemberForm,
    ServiceAccountForm,
    TeamForm,
    TeamMemberForm,
    TokenForm,
    WorkspaceRoleForm,
    apply_service_error,
)
from ..models import CustomRole, Membership, ServiceAccount, Team
from .base import WorkspaceMixin, no_store
from .tokens import TOKEN_ALIASES, token_rows


def _error_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


class WorkspaceMembersView(WorkspaceMixin, View):
    """Members (users and teams) of a workspace with their roles; POST adds (invites) one."""

    members_only = True

    template_name = "projects/workspace_members.html"

    def scoped_queryset(self):
        return Membership.objects.filter(workspace=self.get_workspace()).select_related("user", "team__workspace")

    def page(self, form=None, *, error=None, status=200):
        workspace = self.get_workspace()
        memberships = sorted(
            self.get_queryset(), key=lambda m: (m.team_id is not None, (m.user or m.team).__str__().lower())
        )
        for membership in memberships:
            membership.form = WorkspaceRoleForm(initial={"role": membership.role}, prefix=f"m{membership.pk}")
        context = {
            "memberships": memberships,
            "form": form or MemberForm(workspace=workspace),
            "error": error,
            "service_usernames": set(
                ServiceAccount.objects.filter(workspace=workspace).values_list("user__username", flat=True)
            ),
        }
        return self.render(self.template_name, context, status=status)

    def get(self, request, workspace):
        return self.page()

    def post(self, request, workspace):
        self.require("manage")
        form = MemberForm(request.POST, workspace=self.get_workspace())
        if form.is_valid():
            principal = form.cleaned_data["principal"]
            try:
                services.set_membership(self.get_workspace(), principal, form.cleaned_data["role"], by=request.user)
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, f"{principal} is now {form.cleaned_data['role']} of {workspace}.")
                return redirect("projects:workspace_members", workspace)
        return self.page(form, status=400)


class WorkspaceMemberView(WorkspaceMembersView):
    """POST: change one member's role; the last owner keeps theirs (the service says why)."""

    http_method_names = ["post"]

    def post(self, request, workspace, membership_id):
        membership = get_object_or_404(self.get_queryset(), pk=membership_id)
        self.require("manage")
        form = WorkspaceRoleForm(request.POST, prefix=f"m{membership.pk}")
        if not form.is_valid():
            form = WorkspaceRoleForm(request.POST)
        if not form.is_valid():
            return self.page(error=f"role: {form.errors['role'][0]}", status=400)
        try:
            services.set_membership(
                self.get_workspace(), membership.principal, form.cleaned_data["role"], by=request.user
            )
        except ValidationError as exc:
            return self.page(error=_error_text(exc), status=400)
        messages.success(request, f"{membership.principal} is now {form.cleaned_data['role']}.")
        return redirect("projects:workspace_members", workspace)


class WorkspaceMemberRemoveView(WorkspaceMembersView):
    """Confirm (GET) and remove (POST) a member; never the last owner."""

    def get(self, request, workspace, membership_id):
        membership = get_object_or_404(self.get_queryset(), pk=membership_id)
        leaving = membership.user_id == request.user.pk
        if not leaving:
            self.require("manage")  # anyone may leave; removing others needs manage (as the service says)
        return self.render(
            "projects/confirm.html",
            {
                "title": f"Leave {workspace}?" if leaving else f"Remove {membership.principal} from {workspace}?",
                "explain": "They lose their workspace role and every role they hold on its projects.",
                "action": "Remove",
                "cancel_url": reverse("projects:workspace_members", args=[workspace]),
            },
        )

    def post(self, request, workspace, membership_id):
        membership = get_object_or_404(self.get_queryset(), pk=membership_id)
        try:
            services.remove_membership(self.get_workspace(), membership.principal, by=request.user)
        except ValidationError as exc:
            return self.page(error=_error_text(exc), status=400)
        messages.success(request, f"Removed {membership.principal} from {workspace}.")
        if membership.user_id == request.user.pk:
            return redirect("projects:workspace_list")
        return redirect("projects:workspace_members", workspace)


class TeamListView(WorkspaceMixin, View):
    """The workspace's teams; POST creates one."""

    members_only = True

    template_name = "projects/team_list.html"

    def scoped_queryset(self):
        return Team.objects.filter(workspace=self.get_workspace())

    def page(self, form=None, status=200):
        workspace = self.get_workspace()
        teams = self.get_queryset().annotate(member_count=Count("group__user", distinct=True))
        roles = dict(Membership.objects.filter(workspace=workspace, team__isnull=False).values_list("team_id", "role"))
        for team in teams:
            team.workspace_role = roles.get(team.pk)
        return self.render(self.template_name, {"teams": teams, "form": form or TeamForm()}, status=status)

    def get(self, request, workspace):
        return self.page()

    def post(self, request, workspace):
        self.require("manage")
        form = TeamForm(request.POST)
        if form.is_valid():
            try:
                team = services.create_team(
                    self.get_workspace(),
                    form.cleaned_data["name"],
                    description=form.cleaned_data["description"],
                    by=request.user,
                )
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, f"Created the team {team.name}.")
                return redirect("projects:team_detail", workspace, team.name)
        return self.page(form, status=400)


class TeamDetailView(WorkspaceMixin, View):
    """A team's members; POST adds a member, or removes the one named by ``remove``."""

    members_only = True

    template_name = "projects/team_detail.html"

    def scoped_queryset(self):
        return Team.objects.filter(workspace=self.get_workspace()).select_related("group")

    def get_team(self) -> Team:
        return get_object_or_404(self.get_queryset(), name=self.kwargs["team"])

    def page(self, team, form=None, status=200):
        context = {"team": team, "members": team.members.order_by("username"), "form": form or TeamMemberForm()}
        return self.render(self.template_name, context, status=status)

    def get(self, request, workspace, team):
        return self.page(self.get_team())

    def post(self, request, workspace, team):
        team_obj = self.get_team()
        self.require("manage")
        members = list(team_obj.members)
        if "remove" in request.POST:
            gone = [u for u in members if str(u.pk) == request.POST["remove"]]
            services.set_team_members(team_obj, [u for u in members if u not in gone], by=request.user)
            if gone:
                messages.success(request, f"Removed {gone[0].username} from the team {team_obj.name}.")
            return redirect("projects:team_detail", workspace, team_obj.name)
        form = TeamMemberForm(request.POST)
        if not form.is_valid():
            return self.page(team_obj, form, status=400)
        user = form.cleaned_data["member"]
        services.set_team_members(team_obj, [*members, user], by=request.user)
        messages.success(request, f"Added {user.username} to the team {team_obj.name}.")
        return redirect("projects:team_detail", workspace, team_obj.name)


class TeamDeleteView(TeamDetailView):
    def get(self, request, workspace, team):
        team_obj = self.get_team()
        self.require("manage")
        return self.render(
            "projects/confirm.html",
            {
                "title": f"Delete the team {team_obj.name}?",
                "explain": "Its members lose every role the team gave them; their accounts stay.",
                "action": "Delete team",
                "cancel_url": reverse("projects:team_detail", args=[workspace, team_obj.name]),
            },
        )

    def post(self, request, workspace, team):
        team_obj = self.get_team()
        services.delete_team(team_obj, by=request.user)
        messages.success(request, f"Deleted the team {team_obj.name}.")
        return redirect("projects:team_list", workspace)


class CustomRoleListView(WorkspaceMixin, View):
    """The workspace's custom roles (named sets of project actions); POST creates one."""

    members_only = True

    template_name = "projects/custom_role_list.html"

    def scoped_queryset(self):
        return CustomRole.objects.filter(workspace=self.get_workspace())

    def page(self, form=None, status=200):
        roles = self.get_queryset().annotate(grant_count=Count("grants"))
        return self.render(self.template_name, {"roles": roles, "form": form or CustomRoleForm()}, status=status)

    def get(self, request, workspace):
        return self.page()

    def save(self, form, role=None):
        data = form.cleaned_data
        return services.save_custom_role(
            self.get_workspace(),
            data["name"],
            data["actions"],
            description=data["description"],
            role=role,
            by=self.request.user,
        )

    def post(self, request, workspace):
        self.require("manage")
        form = CustomRoleForm(request.POST)
        if form.is_valid():
            try:
                role = self.save(form)
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, f"Created the role {role.name}.")
                return redirect("projects:custom_role_list", workspace)
        return self.page(form, status=400)


class CustomRoleEditView(CustomRoleListView):
    template_name = "projects/custom_role_edit.html"

    def get_role(self) -> CustomRole:
        return get_object_or_404(self.get_queryset(), pk=self.kwargs["role_id"])

    def get(self, request, workspace, role_id):
        role = self.get_role()
        self.require("manage")
        form = CustomRoleForm(initial={"name": role.name, "description": role.description, "actions": role.actions})
        return self.render(self.template_name, {"role": role, "form": form})

    def post(self, request, workspace, role_id):
        role = self.get_role()
        self.require("manage")
        form = CustomRoleForm(request.POST)
        if form.is_valid():
            try:
                self.save(form, role)
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, f"Saved the role {role.name}.")
                return redirect("projects:custom_role_list", workspace)
        return self.render(self.template_name, {"role": role, "form": form}, status=400)


class CustomRoleDeleteView(CustomRoleEditView):
    def get(self, request, workspace, role_id):
        role = self.get_role()
        self.require("manage")
        return self.render(
            "projects/confirm.html",
            {
                "title": f"Delete the role {role.name}?",
                "explain": "Every grant of it on a project goes with it.",
                "action": "Delete role",
                "cancel_url": reverse("projects:custom_role_list", args=[workspace]),
            },
        )

    def post(self, request, workspace, role_id):
        role = self.get_role()
        services.delete_custom_role(role, by=request.user)
        messages.success(request, f"Deleted the role {role.name}.")
        return redirect("projects:custom_role_list", workspace)


class ServiceAccountListView(WorkspaceMixin, View):
    """The workspace's service accounts (bot users for CI); POST creates one."""

    members_only = True

    template_name = "projects/service_account_list.html"

    def scoped_queryset(self):
        return ServiceAccount.objects.filter(workspace=self.get_workspace()).select_related("user")

    def page(self, form=None, status=200):
        workspace = self.get_workspace()
        now = timezone.now()
        active = Q(user__api_tokens__revoked_at__isnull=True) & (
            Q(user__api_tokens__expires_at__isnull=True) | Q(user__api_tokens__expires_at__gt=now)
        )
        accounts = self.get_queryset().annotate(active_tokens=Count("user__api_tokens", filter=active))
        roles = dict(Membership.objects.filter(workspace=workspace, user__isnull=False).values_list("user_id", "role"))
        for account in accounts:
            account.role = roles.get(account.user_id)
        context = {"accounts": accounts, "form": form or ServiceAccountForm()}
        return self.render(self.template_name, context, status=status)

    def get(self, request, workspace):
        return self.page()

    def post(self, request, workspace):
        self.require("manage")
        form = ServiceAccountForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                account = services.create_service_account(
                    self.get_workspace(),
                    data["username"],
                    role=data["role"],
                    description=data["description"],
                    by=request.user,
                )
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, f"Created the service account {account.user.username}.")
                return redirect("projects:service_account_detail", workspace, account.user.username)
        return self.page(form, status=400)


class ServiceAccountDetailView(ServiceAccountListView):
    """A service account's tokens; POST (workspace admins) issues one and shows its secret once."""

    template_name = "projects/service_account_detail.html"

    def get_account(self) -> ServiceAccount:
        return get_object_or_404(self.get_queryset(), user__username=self.kwargs["username"])

    def detail(self, account, form=None, *, secret=None, created=None, status=200):
        context = {
            "account": account,
            "tokens": token_rows(ApiToken.objects.filter(user=account.user)),
            "form": form or TokenForm(bindable=False),
            "secret": secret,
            "created": created,
        }
        return no_store(self.render(self.template_name, context, status=status))

    def get(self, request, workspace, username):
        return self.detail(self.get_account())

    def post(self, request, workspace, username):
        account = self.get_account()
        self.require("manage")
        form = TokenForm(request.POST, bindable=False)
        if form.is_valid():
            data = form.cleaned_data
            try:
                token, raw = services.issue_token(
                    account.user,
                    name=data["name"],
                    scope=data["scope"],
                    expires_at=data["expires_at"],
                    by=request.user,
                )
            except ValidationError as exc:
                apply_service_error(form, exc, TOKEN_ALIASES)
            else:
                return self.detail(account, secret=raw, created=token)
        return self.detail(account, form, status=400)


class ServiceAccountTokenRevokeView(ServiceAccountDetailView):
    def get_token(self, account) -> ApiToken:
        return get_object_or_404(ApiToken.objects.filter(user=account.user), pk=self.kwargs["token_id"])

    def get(self, request, workspace, username, token_id):
        account = self.get_account()
        token = self.get_token(account)
        self.require("manage")
        cancel = reverse("projects:service_account_detail", args=[workspace, username])
        return TemplateResponse(request, "projects/token_revoke.html", {"token": token, "cancel_url": cancel})

    def post(self, request, workspace, username, token_id):
        account = self.get_account()
        token = self.get_token(account)
        services.revoke_token(token, by=request.user)
        messages.success(request, f"Revoked the token {token.prefix} of {username}.")
        return redirect("projects:service_account_detail", workspace, username)

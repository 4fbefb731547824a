"""The projects app in Django admin, for an operator running an installation.

Every change of who may do what goes through ``projects.services`` with ``by=`` the operator, so the
admin assigns no object permission by hand and every change is checked and audited in one place. A
service's refusal (the last owner, a team of another workspace, a missing right) rolls the whole
form back and shows as an error message, never a 500. Guardian's object-permission tables are
derived from the roles: listed, never added, changed or deleted here.
"""

import re
from decimal import Decimal, InvalidOperation

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from accounts.admin import ApiTokenAdmin, UserAdmin, count_of
from accounts.models import ApiToken

from . import activity, permissions, quotas, services
from .models import (
    CustomRole,
    Membership,
    Project,
    ProjectGrant,
    ProjectGroupObjectPermission,
    ProjectRole,
    ProjectUsage,
    ProjectUserObjectPermission,
    ServiceAccount,
    Team,
    TokenWorkspace,
    Workspace,
    WorkspaceGroupObjectPermission,
    WorkspaceQuota,
    WorkspaceRole,
    WorkspaceUsage,
    WorkspaceUserObjectPermission,
    slug_validator,
)

User = get_user_model()
QUOTA_FIELDS = (
    "storage_bytes",
    "projects",
    "runs_per_project",
    "upload_bytes",
    "requests_per_second",
    "burst",
    "workspace_requests_per_second",
)


def _become(obj, created) -> None:
    """Make the admin's unsaved ``obj`` the row a service created, so inlines attach to it."""
    obj.__dict__.update({k: v for k, v in created.__dict__.items() if k != "_state"})
    obj._state.adding = False
    obj._state.db = created._state.db


def _link(obj, text=None):
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text if text is not None else obj)


# ---- services' refusals as messages -------------------------------------------------------

REFUSED = (ValidationError, PermissionDenied, Http404)


def refusal(exc) -> str:
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(texts)}" for field, texts in exc.message_dict.items())
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc) or "You may not do this."


class ServiceAdmin(admin.ModelAdmin):
    """Writes go through the services; a refusal rolls back everything the submit did (the form,
    its inlines, an action on several rows) and is shown as an error message on the same page."""

    def _refused(self, request, exc, url):
        self.message_user(request, f"Nothing was changed: {refusal(exc)}", messages.ERROR)
        return HttpResponseRedirect(url)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if object_id is None and not self.has_add_permission(request):
            return super().changeform_view(request, object_id, form_url, extra_context)  # the admin's 403
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except REFUSED as exc:
            if request.method != "POST":
                raise
            return self._refused(request, exc, request.get_full_path())

    def delete_view(self, request, object_id, extra_context=None):
        if not self.has_delete_permission(request):
            return super().delete_view(request, object_id, extra_context)  # the admin's 403
        try:
            return super().delete_view(request, object_id, extra_context)
        except REFUSED as exc:
            if request.method != "POST":
                raise
            opts = self.opts
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[object_id])
            return self._refused(request, exc, url)

    def changelist_view(self, request, extra_context=None):
        if request.method != "POST":
            return super().changelist_view(request, extra_context)
        try:
            with transaction.atomic():
                return super().changelist_view(request, extra_context)
        except REFUSED as exc:
            return self._refused(request, exc, request.get_full_path())


class ReadOnlyAdmin(admin.ModelAdmin):
    """Derived or internal rows: listed and viewed, never added, changed or deleted by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class WorkspaceScopedAdmin(ServiceAdmin):
    """Staff who are not superusers see only rows of workspaces they manage (the permission module)."""

    workspace_field = "workspace"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        managed = Workspace.objects.for_user(request.user, "manage").values("pk")
        return queryset.filter(**{f"{self.workspace_field}__in": managed})


# ---- sizes and usage ---------------------------------------------------------------------

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def exact_size(value: int) -> str:
    """``value`` bytes in the largest unit that divides it exactly (what a size field shows)."""
    for unit, factor in (("PB", 1024**5), ("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if value and value % factor == 0:
            return f"{value // factor} {unit}"
    return str(value)


class SizeField(forms.CharField):
    """A number of bytes entered and shown as a size: "500 MB", "2 GB", "1.5 TB" or plain bytes.

    Units are binary (1 KB = 1024 bytes), as Django's ``filesizeformat`` shows them; KiB/MiB/… too.
    """

    def to_python(self, value):
        text = (super().to_python(value) or "").strip().replace(",", "")
        if not text:
            return None
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", text)
        unit = match.group(2).lower().removesuffix("ib").removesuffix("b") if match else None
        if unit is None or unit not in _UNITS:
            raise ValidationError("Enter a size such as 500 MB, 2 GB, 1.5 TB or a number of bytes.")
        try:
            return int(Decimal(match.group(1)) * _UNITS[unit])
        except InvalidOperation:
            raise ValidationError("Enter a size such as 500 MB, 2 GB, 1.5 TB or a number of bytes.") from None

    def prepare_value(self, value):
        return exact_size(value) if isinstance(value, int) else value


def _default_limit(name: str):
    return getattr(settings, f"RUNSTORE_QUOTA_{name.upper()}", None)


def _limit(quota, name: str):
    own = getattr(quota, name, None) if quota is not None else None
    return own if own is not None else _default_limit(name)


def used_of(used, limit, *, size: bool) -> str:
    """ "1.5 GB of 10.0 GB (15.0%)", "3 of 10 (30.0%)" or "1.5 GB (no limit)"."""
    shown = filesizeformat if size else str
    if limit is None:
        return f"{shown(used)} (no limit)"
    percent = round(100 * used / limit, 1) if limit else (100.0 if used else 0.0)
    return f"{shown(used)} of {shown(limit)} ({percent}%)"


class WorkspaceQuotaForm(forms.ModelForm):
    storage_bytes = SizeField(required=False, label="Storage")
    upload_bytes = SizeField(required=False, label="Largest upload")

    class Meta:
        model = WorkspaceQuota
        fields = ("workspace", *QUOTA_FIELDS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in QUOTA_FIELDS:
            if name in self.fields:
                default = _default_limit(name)
                if default is not None and name.endswith("_bytes"):
                    default = exact_size(default)
                own = WorkspaceQuota._meta.get_field(name).help_text
                self.fields[name].help_text = (
                    f"{own} Empty: the installation default ({'unlimited' if default is None else default})."
                ).strip()


def _quota_values(form) -> dict:
    return {name: form.cleaned_data.get(name) for name in QUOTA_FIELDS if name in form.cleaned_data}


class UsageColumns:
    """Read-only "used of limit (percent)" next to the storage and project limits (``quotas.usage_report``)."""

    def _report(self, obj, quota: str) -> str:
        if not getattr(obj, "workspace_id", None):
            return "—"
        row = next(r for r in quotas.usage_report(Workspace(pk=obj.workspace_id)) if r["quota"] == quota)
        return used_of(row["used"], row["limit"], size=quota == "storage_bytes")

    @admin.display(description="storage used")
    def storage_usage(self, obj):
        return self._report(obj, "storage_bytes")

    @admin.display(description="projects")
    def projects_usage(self, obj):
        return self._report(obj, "projects")


# ---- users and groups --------------------------------------------------------------------


class ServiceAccountFilter(admin.SimpleListFilter):
    title = "service account"
    parameter_name = "service"

    def lookups(self, request, model_admin):
        return [("yes", "service accounts"), ("no", "people")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(service_account__isnull=self.value() == "no")
        return queryset


class TeamFilter(admin.SimpleListFilter):
    title = "team"
    parameter_name = "team"

    def lookups(self, request, model_admin):
        return [(team.pk, str(team)) for team in Team.objects.select_related("workspace")]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(groups__team__pk=self.value())
        return queryset


class WorkspaceUserAdmin(UserAdmin):
    """Users with their workspaces, teams and tokens. A service account has no password: the admin
    never sets one (its tokens are issued on the service account's page)."""

    list_display = (
        "username",
        "email",
        "service_account_of",
        "workspaces",
        "teams",
        "active_tokens",
        "is_active",
        "is_staff",
        "last_login",
    )
    list_select_related = ("service_account__workspace",)
    list_filter = (ServiceAccountFilter, TeamFilter, "is_staff", "is_superuser", "is_active")
    readonly_fields = ("service_account_of", "workspace_roles", "team_list", "active_tokens")

    def get_queryset(self, request):
        team_members = User.groups.through.objects.filter(group__team__isnull=False)
        return (
            super()
            .get_queryset(request)
            .annotate(
                _workspaces=count_of(Membership.objects.all(), "user"),
                _teams=count_of(team_members, "user"),
            )
        )

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        if self._service_account(obj) is not None:
            # no password at all: not even the "set password" link
            fieldsets = [
                (name, {**options, "fields": tuple(f for f in options["fields"] if f != "password")})
                for name, options in fieldsets
            ]
        return [*fieldsets, ("Runstore", {"fields": self.readonly_fields})]

    @staticmethod
    def _service_account(user):
        try:
            return user.service_account
        except ObjectDoesNotExist:
            return None

    @admin.display(description="service account of", ordering="service_account__workspace__slug")
    def service_account_of(self, obj):
        account = self._service_account(obj)
        return _link(account.workspace) if account else "—"

    @admin.display(description="workspaces", ordering="_workspaces")
    def workspaces(self, obj):
        return obj._workspaces

    @admin.display(description="teams", ordering="_teams")
    def teams(self, obj):
        return obj._teams

    @admin.display(description="workspaces (role)")
    def workspace_roles(self, obj):
        rows = Membership.objects.filter(user=obj).select_related("workspace").order_by("workspace__slug")
        return format_html_join(", ", "{} ({})", ((_link(m.workspace), m.role) for m in rows)) or "—"

    @admin.display(description="teams")
    def team_list(self, obj):
        rows = Team.objects.filter(group__user=obj).select_related("workspace")
        return format_html_join(", ", "{}", ((_link(team),) for team in rows)) or "—"

    @admin.display(description="active tokens")
    def active_tokens(self, obj):
        if not hasattr(obj, "_active_tokens"):
            obj._active_tokens = ApiToken.objects.active().filter(user=obj).count()
        return super().active_tokens(obj)

    def formfield_for_manytomany(self, db_field, request=None, **kwargs):
        if db_field.name == "groups":
            # a team's group is edited as the team, through the service
            kwargs["queryset"] = Group.objects.filter(team__isnull=True)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_related(self, request, form, formsets, change):
        # the groups field lists no team: saving it must not take the user out of their teams
        teams = list(form.instance.groups.filter(team__isnull=False)) if change else []
        super().save_related(request, form, formsets, change)
        if teams:
            form.instance.groups.add(*teams)

    def user_change_password(self, request, id, form_url=""):
        user = self.get_object(request, unquote(id))
        if user is not None and self._service_account(user) is not None:
            self.message_user(
                request, "A service account has no password: it signs in with its API tokens only.", messages.ERROR
            )
            return HttpResponseRedirect(reverse("admin:auth_user_change", args=[user.pk]))
        return super().user_change_password(request, id, form_url)


admin.site.unregister(User)
admin.site.register(User, WorkspaceUserAdmin)


class StaffGroupAdmin(GroupAdmin):
    """Groups for staff's model permissions. A team's group is not listed: it is edited as the team."""

    def get_queryset(self, request):
        return super().get_queryset(request).filter(team__isnull=True)


admin.site.unregister(Group)
admin.site.register(Group, StaffGroupAdmin)


# ---- tokens ------------------------------------------------------------------------------


class WorkspaceApiTokenAdmin(ApiTokenAdmin):
    """Tokens with the workspace they are bound to; a service account's token is issued through
    ``projects.services`` (bound to its workspace)."""

    list_display = (*ApiTokenAdmin.list_display[:4], "workspace", *ApiTokenAdmin.list_display[4:])
    list_select_related = ("user", "workspace_binding__workspace")
    list_filter = (*ApiTokenAdmin.list_filter, ("workspace_binding__workspace", admin.RelatedOnlyFieldListFilter))
    search_fields = (*ApiTokenAdmin.search_fields, "workspace_binding__workspace__slug")
    readonly_fields = (*ApiTokenAdmin.readonly_fields, "workspace")
    change_fields = (*ApiTokenAdmin.change_fields[:4], "workspace", *ApiTokenAdmin.change_fields[4:])

    @admin.display(description="workspace", ordering="workspace_binding__workspace__slug")
    def workspace(self, obj):
        try:
            return obj.workspace_binding.workspace
        except ObjectDoesNotExist:
            return "—"

    def save_model(self, request, obj, form, change):
        if change or not ServiceAccount.objects.filter(user=obj.user).exists():
            return super().save_model(request, obj, form, change)
        token, raw = services.issue_token(
            obj.user, name=obj.name, scope=obj.scope, expires_at=obj.expires_at, by=request.user
        )
        obj.pk, obj.lookup = token.pk, token.lookup
        messages.warning(request, f"New API token (copy it now, it is not shown again): {raw}")

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except REFUSED as exc:
            if request.method != "POST":
                raise
            self.message_user(request, f"Nothing was changed: {refusal(exc)}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


admin.site.unregister(ApiToken)
admin.site.register(ApiToken, WorkspaceApiTokenAdmin)


@admin.register(TokenWorkspace)
class TokenWorkspaceAdmin(ReadOnlyAdmin):
    """Which workspace a token is bound to: set when the token is issued, never changed."""

    list_display = ("prefix", "user", "workspace")
    list_select_related = ("token__user", "workspace")
    list_filter = (("workspace", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("token__lookup", "token__user__username", "workspace__slug")

    @admin.display(description="token", ordering="token__lookup")
    def prefix(self, obj):
        return _link(obj.token, obj.token.prefix)

    @admin.display(description="user", ordering="token__user__username")
    def user(self, obj):
        return obj.token.user


# ---- teams -------------------------------------------------------------------------------


class TeamForm(forms.ModelForm):
    members = forms.ModelMultipleChoiceField(
        queryset=User.objects.filter(is_active=True).order_by("username"),
        required=False,
        widget=FilteredSelectMultiple("members", is_stacked=False),
    )

    class Meta:
        model = Team
        fields = ("workspace", "name", "description")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and "members" in self.fields:
            self.fields["members"].initial = list(self.instance.group.user_set.values_list("pk", flat=True))


@admin.register(Team)
class TeamAdmin(WorkspaceScopedAdmin):
    """Teams: created by ``services.create_team``, members set by ``services.set_team_members``."""

    form = TeamForm
    list_display = ("name", "workspace", "member_count", "description", "created_at")
    list_select_related = ("workspace",)
    list_filter = (("workspace", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("name", "workspace__slug", "description")
    fields = ("workspace", "name", "description", "members", "created_at")
    readonly_fields = ("created_at",)

    def get_queryset(self, request):
        members = User.groups.through.objects.all()
        return super().get_queryset(request).annotate(_members=count_of(members, "group", outer="group_id"))

    def get_readonly_fields(self, request, obj=None):
        # no service renames a team or moves it; delete and create another
        return (*self.readonly_fields, "workspace", "name", "description") if obj else self.readonly_fields

    @admin.display(description="members", ordering="_members")
    def member_count(self, obj):
        return obj._members

    def save_model(self, request, obj, form, change):
        members = form.cleaned_data.get("members") or []
        if change:
            services.set_team_members(obj, members, by=request.user)
            return
        team = services.create_team(
            obj.workspace, obj.name, by=request.user, description=obj.description, members=members
        )
        _become(obj, team)

    def delete_model(self, request, obj):
        services.delete_team(obj, by=request.user)

    def delete_queryset(self, request, queryset):
        for team in queryset.select_related("workspace", "group"):
            services.delete_team(team, by=request.user)


# ---- workspaces --------------------------------------------------------------------------


def _restrict(formset, obj, **querysets) -> None:
    """Limit the inline's team/custom-role choices to the parent's workspace."""
    for name, queryset in querysets.items():
        if name in formset.form.base_fields:
            formset.form.base_fields[name].queryset = queryset if obj is not None else queryset.none()


class MembershipInline(admin.TabularInline):
    """Members (a user or a team) and their role, saved by ``services.set_membership`` / ``remove_membership``."""

    model = Membership
    extra = 0
    fields = ("user", "team", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ["user"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "team__workspace")

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        _restrict(formset, obj, team=Team.objects.filter(workspace=obj).select_related("workspace"))
        return formset


class WorkspaceQuotaInline(UsageColumns, admin.StackedInline):
    """The workspace's limits, saved by ``services.set_quota``, with the usage next to them."""

    model = WorkspaceQuota
    form = WorkspaceQuotaForm
    can_delete = False
    max_num = 1
    fields = (
        ("storage_bytes", "storage_usage"),
        ("projects", "projects_usage"),
        "runs_per_project",
        "upload_bytes",
        "requests_per_second",
        "burst",
        "workspace_requests_per_second",
    )
    readonly_fields = ("storage_usage", "projects_usage")
    verbose_name_plural = "quota (an empty limit takes the installation default)"


class ServiceAccountInline(admin.TabularInline):
    """The workspace's bots (created on the service accounts page)."""

    model = ServiceAccount
    fk_name = "workspace"
    fields = ("account", "role", "description", "created_by", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "created_by")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="service account")
    def account(self, obj):
        return _link(obj, obj.user.username)

    @admin.display(description="role")
    def role(self, obj):
        return (
            Membership.objects.filter(workspace_id=obj.workspace_id, user_id=obj.user_id)
            .values_list("role", flat=True)
            .first()
            or "—"
        )


class WorkspaceKindFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [("personal", "personal"), ("shared", "shared")]

    def queryset(self, request, queryset):
        if self.value() in ("personal", "shared"):
            return queryset.filter(personal_owner__isnull=self.value() == "shared")
        return queryset


def _project_bytes():
    summed = (
        ProjectUsage.objects.filter(project__workspace=OuterRef("pk"))
        .order_by()
        .values("project__workspace")
        .annotate(total=Sum("total_bytes"))
        .values("total")
    )
    return Coalesce(Subquery(summed), 0)


@admin.register(Workspace)
class WorkspaceAdmin(WorkspaceScopedAdmin):
    """Workspaces: created by ``services.create_workspace`` (the operator becomes the owner); members,
    quota and service accounts on the change page. No delete: no service deletes a workspace."""

    workspace_field = "pk"
    list_display = ("slug", "name", "personal_owner", "members", "storage", "created_at")
    list_select_related = ("personal_owner", "usage", "quota")
    list_filter = (WorkspaceKindFilter,)
    search_fields = ("slug", "name", "personal_owner__username")
    fields = ("slug", "name", "personal_owner", "created_at")
    readonly_fields = ("personal_owner", "created_at")
    inlines = [MembershipInline, WorkspaceQuotaInline, ServiceAccountInline]

    def get_queryset(self, request):
        members = Membership.objects.all()
        return super().get_queryset(request).annotate(_members=count_of(members, "workspace"), _bytes=_project_bytes())

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "slug") if obj else self.readonly_fields

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # the creator is its owner; add members after

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="members", ordering="_members")
    def members(self, obj):
        return obj._members

    @admin.display(description="storage used of quota")
    def storage(self, obj):
        try:
            used = obj.usage.bytes + obj.usage.admitted
        except ObjectDoesNotExist:
            used = obj._bytes  # never admitted nor recounted yet: the projects' exact usage
        try:
            quota = obj.quota
        except ObjectDoesNotExist:
            quota = None
        return used_of(used, _limit(quota, "storage_bytes"), size=True)

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)  # only the display name changes here
        _become(obj, services.create_workspace(request.user, obj.slug, obj.name))

    def save_formset(self, request, form, formset, change):
        workspace = form.instance
        formset.save(commit=False)  # what changed, for the admin's history; the services write
        if formset.model is Membership:
            self._save_members(request, workspace, formset)
        elif formset.model is WorkspaceQuota:
            for quota_form in formset.forms:
                if quota_form.has_changed():
                    services.set_quota(workspace, by=request.user, **_quota_values(quota_form))

    def _save_members(self, request, workspace, formset):
        moved = [obj.pk for obj, fields in formset.changed_objects if {"user", "team"} & set(fields)]
        gone = Membership.objects.filter(pk__in=[obj.pk for obj in formset.deleted_objects] + moved)
        gone = [m.principal for m in gone.select_related("user", "team")]
        wanted = formset.new_objects + [obj for obj, _ in formset.changed_objects]
        # owners first, so that handing ownership over in one submit never leaves the workspace without one
        for membership in sorted(wanted, key=lambda m: m.role != WorkspaceRole.OWNER):
            services.set_membership(workspace, membership.principal, membership.role, by=request.user)
        kept = {(type(m.principal), m.principal.pk) for m in wanted}
        for principal in gone:
            if (type(principal), principal.pk) not in kept:
                services.remove_membership(workspace, principal, by=request.user)


@admin.register(Membership)
class MembershipAdmin(WorkspaceScopedAdmin):
    """Every membership in one list; changes go through ``services.set_membership``/``remove_membership``."""

    list_display = ("workspace", "principal", "role", "created_at")
    list_select_related = ("workspace", "user", "team__workspace")
    list_filter = ("role", ("workspace", admin.RelatedOnlyFieldListFilter))
    search_fields = ("workspace__slug", "user__username", "user__email", "team__name")
    autocomplete_fields = ["user", "workspace"]
    fields = ("workspace", "user", "team", "role", "created_at")
    readonly_fields = ("created_at",)

    @admin.display(description="member")
    def principal(self, obj):
        return f"team {obj.team}" if obj.team_id else obj.user

    def get_readonly_fields(self, request, obj=None):
        # a membership keeps its member: remove it and add another
        return (*self.readonly_fields, "workspace", "user", "team") if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        membership = services.set_membership(obj.workspace, obj.principal, obj.role, by=request.user)
        _become(obj, membership)

    def delete_model(self, request, obj):
        services.remove_membership(obj.workspace, obj.principal, by=request.user)

    def delete_queryset(self, request, queryset):
        for obj in queryset.select_related("workspace", "user", "team"):
            services.remove_membership(obj.workspace, obj.principal, by=request.user)


# ---- projects ----------------------------------------------------------------------------


class ProjectUsageInline(admin.StackedInline):
    model = ProjectUsage
    can_delete = False
    fields = ("total", "series", "blobs", "previews", "float_points", "string_points", "blob_count", "computed_at")
    readonly_fields = fields
    max_num = 0
    verbose_name_plural = "storage used (recomputed every minute by runs.tasks.refresh_usage)"

    @admin.display(description="total")
    def total(self, obj):
        return filesizeformat(obj.total_bytes)

    @admin.display(description="series points")
    def series(self, obj):
        return filesizeformat(obj.series_bytes)

    @admin.display(description="files")
    def blobs(self, obj):
        return filesizeformat(obj.blob_bytes)

    @admin.display(description="previews")
    def previews(self, obj):
        return filesizeformat(obj.preview_bytes)


class ProjectGrantInline(admin.TabularInline):
    """Roles on the project (a built-in role, or a custom role allowed or denied), saved by
    ``services.set_project_role`` / ``grant_custom_role`` / ``remove_project_grant``."""

    model = ProjectGrant
    extra = 0
    fields = ("user", "team", "role", "custom_role", "deny", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ["user"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "team__workspace", "custom_role")

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        workspace = obj.workspace_id if obj is not None else None
        _restrict(
            formset,
            obj,
            team=Team.objects.filter(workspace_id=workspace).select_related("workspace"),
            custom_role=CustomRole.objects.filter(workspace_id=workspace),
        )
        return formset


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ("workspace", "slug", "key", "visibility", "description")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance.pk and "key" in self.fields:
            self.fields["key"].required = False  # create_project derives one from the slug
            self.fields["key"].help_text = "Leave empty to derive one from the slug."


@admin.register(Project)
class ProjectAdmin(WorkspaceScopedAdmin):
    """Projects: created by ``services.create_project``, settings changed by ``update_project``,
    deleted by ``delete_project``; grants inline. Deleting a project deletes its runs' rows; stored
    files no other project uses are removed by the orphan clean-up (``runs.tasks.clean_orphans``)."""

    form = ProjectForm
    list_display = ("__str__", "workspace", "key", "visibility", "runs", "storage_used", "created_at")
    list_select_related = ("workspace", "usage")
    list_filter = ("visibility", ("workspace", admin.RelatedOnlyFieldListFilter))
    search_fields = ("slug", "key", "workspace__slug", "description")
    fields = ("workspace", "slug", "key", "visibility", "description", "created_by", "created_at")
    readonly_fields = ("created_by", "created_at")
    inlines = [ProjectGrantInline, ProjectUsageInline]
    settings_fields = ("description", "visibility")

    def get_queryset(self, request):
        # staff who are not superusers see the projects they may view (as in the runs admin)
        queryset = super(WorkspaceScopedAdmin, self).get_queryset(request)
        if not request.user.is_superuser:
            queryset = queryset.filter(pk__in=permissions.visible_project_ids(request.user))
        return queryset

    def get_changelist(self, request, **kwargs):
        changelist = super().get_changelist(request, **kwargs)

        class WithActivity(changelist):
            def get_queryset(self, request, exclude_parameters=None):
                # run counts come from the app that owns runs (projects.activity), when it registered
                return activity.annotate(super().get_queryset(request, exclude_parameters))

        return WithActivity

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "workspace", "slug", "key") if obj else self.readonly_fields

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # its creator becomes its owner; add grants after

    def get_deleted_objects(self, objs, request):
        # The service deletes everything in the project; do not load its runs' rows to list them.
        summary = [format_html("{} and every run in it", project) for project in objs]
        return summary, {"projects": len(objs)}, set(), []

    @admin.display(description="runs")
    def runs(self, obj):
        return getattr(obj, "live_runs", "—")

    @admin.display(description="storage used", ordering="usage__total_bytes")
    def storage_used(self, obj):
        try:
            return filesizeformat(obj.usage.total_bytes)
        except ObjectDoesNotExist:
            return "—"

    def save_model(self, request, obj, form, change):
        if change:
            changes = {name: form.cleaned_data[name] for name in form.changed_data if name in self.settings_fields}
            if changes:
                services.update_project(
                    Project.objects.select_related("workspace").get(pk=obj.pk), by=request.user, **changes
                )
            return
        created = services.create_project(
            request.user,
            obj.workspace,
            obj.slug,
            key=obj.key or None,
            description=obj.description,
            visibility=obj.visibility,
        )
        _become(obj, created)

    def delete_model(self, request, obj):
        services.delete_project(obj, by=request.user)

    def delete_queryset(self, request, queryset):
        for project in queryset.select_related("workspace"):
            services.delete_project(project, by=request.user)

    def save_formset(self, request, form, formset, change):
        formset.save(commit=False)  # what changed, for the admin's history; the services write
        if formset.model is ProjectGrant:
            self._save_grants(request, form.instance, formset)

    def _save_grants(self, request, project, formset):
        moved = [obj.pk for obj, fields in formset.changed_objects if {"user", "team", "deny"} & set(fields)]
        gone = ProjectGrant.objects.filter(pk__in=[obj.pk for obj in formset.deleted_objects] + moved)
        gone = list(gone.select_related("user", "team"))
        wanted = formset.new_objects + [obj for obj, _ in formset.changed_objects]
        for grant in sorted(wanted, key=lambda g: g.role != ProjectRole.OWNER):
            if grant.custom_role_id:
                services.grant_custom_role(
                    project, grant.principal, grant.custom_role, deny=grant.deny, by=request.user
                )
            else:
                services.set_project_role(project, grant.principal, grant.role, by=request.user)
        kept = {(type(g.principal), g.principal.pk, g.deny) for g in wanted}
        for grant in gone:
            if (type(grant.principal), grant.principal.pk, grant.deny) not in kept:
                services.remove_project_grant(project, grant.principal, deny=grant.deny, by=request.user)


@admin.register(ProjectGrant)
class ProjectGrantAdmin(WorkspaceScopedAdmin):
    """Every project grant in one list (edited on the project's page); removal through the service."""

    workspace_field = "project__workspace"
    list_display = ("project", "principal", "what", "deny", "created_at")
    list_select_related = ("project__workspace", "user", "team__workspace", "custom_role")
    list_filter = ("deny", "role", ("project__workspace", admin.RelatedOnlyFieldListFilter))
    search_fields = ("project__slug", "project__workspace__slug", "user__username", "team__name", "custom_role__name")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="member")
    def principal(self, obj):
        return f"team {obj.team}" if obj.team_id else obj.user

    @admin.display(description="role")
    def what(self, obj):
        if obj.custom_role_id:
            return f"{obj.custom_role.name} ({', '.join(obj.custom_role.actions)})"
        return obj.role

    def delete_model(self, request, obj):
        services.remove_project_grant(obj.project, obj.principal, deny=obj.deny, by=request.user)

    def delete_queryset(self, request, queryset):
        for grant in queryset.select_related("project__workspace", "user", "team"):
            services.remove_project_grant(grant.project, grant.principal, deny=grant.deny, by=request.user)


# ---- custom roles ------------------------------------------------------------------------


class CustomRoleForm(forms.ModelForm):
    actions = forms.MultipleChoiceField(
        choices=[(action, action) for action in permissions.PROJECT_ACTIONS],
        widget=forms.CheckboxSelectMultiple,
        help_text="view: read runs and files; export: bulk exports; write: log runs; "
        "delete: trash, restore and purge runs; manage: members and settings.",
    )

    class Meta:
        model = CustomRole
        fields = ("workspace", "name", "description", "actions")


@admin.register(CustomRole)
class CustomRoleAdmin(WorkspaceScopedAdmin):
    """Custom roles: saved by ``services.save_custom_role`` (their grants follow), deleted by ``delete_custom_role``."""

    form = CustomRoleForm
    list_display = ("name", "workspace", "action_list", "grants", "created_at")
    list_select_related = ("workspace",)
    list_filter = (("workspace", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("name", "workspace__slug", "description")
    fields = ("workspace", "name", "description", "actions", "created_at")
    readonly_fields = ("created_at",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_grants=count_of(ProjectGrant.objects.all(), "custom_role"))

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "workspace") if obj else self.readonly_fields

    @admin.display(description="actions")
    def action_list(self, obj):
        return ", ".join(obj.actions)

    @admin.display(description="grants", ordering="_grants")
    def grants(self, obj):
        return obj._grants

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        role = services.save_custom_role(
            obj.workspace,
            data["name"],
            data["actions"],
            by=request.user,
            description=data.get("description", ""),
            role=CustomRole.objects.get(pk=obj.pk) if change else None,
        )
        _become(obj, role)

    def delete_model(self, request, obj):
        services.delete_custom_role(obj, by=request.user)

    def delete_queryset(self, request, queryset):
        for role in queryset.select_related("workspace"):
            services.delete_custom_role(role, by=request.user)


# ---- service accounts ----------------------------------------------------------------------


class ServiceAccountForm(forms.ModelForm):
    username = forms.CharField(max_length=100, validators=[slug_validator])
    role = forms.ChoiceField(choices=WorkspaceRole.choices, initial=WorkspaceRole.MEMBER)

    class Meta:
        model = ServiceAccount
        fields = ("workspace", "description")

    def clean_username(self):
        username = self.cleaned_data["username"]
        if User.objects.filter(username=username).exists():
            raise forms.ValidationError(f"User {username!r} already exists.")
        return username


@admin.register(ServiceAccount)
class ServiceAccountAdmin(WorkspaceScopedAdmin):
    """Bots of a workspace: created by ``services.create_service_account``; "issue a token" shows the
    new secret once, in a message. Their role is changed on the workspace's page; they are not
    deleted here (revoke their tokens, or deactivate the user)."""

    form = ServiceAccountForm
    list_display = ("username", "workspace", "workspace_role", "tokens", "created_by", "created_at")
    list_select_related = ("user", "workspace", "created_by")
    list_filter = (("workspace", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("user__username", "workspace__slug", "description")
    actions = ["issue_token"]
    add_fields = ("workspace", "username", "role", "description")
    change_fields = ("user", "workspace", "workspace_role", "description", "tokens", "created_by", "created_at")

    def get_queryset(self, request):
        role = Membership.objects.filter(workspace=OuterRef("workspace"), user=OuterRef("user")).values("role")[:1]
        return (
            super()
            .get_queryset(request)
            .annotate(
                _role=Subquery(role),
                _tokens=count_of(ApiToken.objects.active(), "user", outer="user_id"),
            )
        )

    def get_fields(self, request, obj=None):
        return self.change_fields if obj else self.add_fields

    def get_readonly_fields(self, request, obj=None):
        return self.change_fields if obj else ()

    def has_change_permission(self, request, obj=None):
        return False  # nothing of a service account is edited here (the page is read-only)

    def has_delete_permission(self, request, obj=None):
        return False

    def has_issue_token_permission(self, request):
        return self.has_view_permission(request)  # the service checks the right on each workspace

    @admin.display(description="service account", ordering="user__username")
    def username(self, obj):
        return obj.user.username

    @admin.display(description="role", ordering="_role")
    def workspace_role(self, obj):
        return getattr(obj, "_role", None) or "—"

    @admin.display(description="active tokens", ordering="_tokens")
    def tokens(self, obj):
        url = reverse("admin:accounts_apitoken_changelist") + f"?user__id__exact={obj.user_id}"
        return format_html('<a href="{}">{}</a>', url, getattr(obj, "_tokens", "tokens"))

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        account = services.create_service_account(
            data["workspace"], data["username"], by=request.user, role=data["role"], description=data["description"]
        )
        _become(obj, account)

    @admin.action(
        description="Issue a token (write scope) for each selected service account", permissions=["issue_token"]
    )
    def issue_token(self, request, queryset):
        for account in queryset.select_related("user", "workspace"):
            token, raw = services.issue_token(account.user, name="issued in admin", scope="write", by=request.user)
            self.message_user(
                request,
                f"New API token {token.prefix} for {account.user.username}, bound to {account.workspace.slug} "
                f"(copy it now, it is not shown again): {raw}",
                messages.WARNING,
            )


# ---- quotas and usage ----------------------------------------------------------------------


@admin.register(WorkspaceQuota)
class WorkspaceQuotaAdmin(UsageColumns, WorkspaceScopedAdmin):
    """Limits per workspace, saved by ``services.set_quota`` (staff only); usage against them.
    Clearing a limit restores the installation default, so a quota is never deleted."""

    form = WorkspaceQuotaForm
    list_display = (
        "workspace",
        "storage",
        "project_count",
        "runs_per_project",
        "largest_upload",
        "rates",
        "updated_at",
    )
    list_select_related = ("workspace", "workspace__usage")
    search_fields = ("workspace__slug", "workspace__name")
    fields = ("workspace", *WorkspaceQuotaInline.fields)
    readonly_fields = ("storage_usage", "projects_usage")

    def get_queryset(self, request):
        projects = Project.objects.all()
        return (
            super()
            .get_queryset(request)
            .annotate(
                _projects=count_of(projects, "workspace", outer="workspace_id"),
                _bytes=Subquery(
                    ProjectUsage.objects.filter(project__workspace=OuterRef("workspace_id"))
                    .order_by()
                    .values("project__workspace")
                    .annotate(total=Sum("total_bytes"))
                    .values("total")
                ),
            )
        )

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "workspace") if obj else self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="storage used of limit")
    def storage(self, obj):
        try:
            used = obj.workspace.usage.bytes + obj.workspace.usage.admitted
        except ObjectDoesNotExist:
            used = obj._bytes or 0
        return used_of(used, _limit(obj, "storage_bytes"), size=True)

    @admin.display(description="projects of limit")
    def project_count(self, obj):
        return used_of(obj._projects, _limit(obj, "projects"), size=False)

    @admin.display(description="largest upload")
    def largest_upload(self, obj):
        limit = _limit(obj, "upload_bytes")
        return "no limit" if limit is None else filesizeformat(limit)

    @admin.display(description="requests/s per token · burst · per workspace")
    def rates(self, obj):
        shown = [_limit(obj, name) for name in ("requests_per_second", "burst", "workspace_requests_per_second")]
        return " · ".join("—" if value is None else f"{value:g}" for value in shown)

    def save_model(self, request, obj, form, change):
        _become(obj, services.set_quota(obj.workspace, by=request.user, **_quota_values(form)))


@admin.register(WorkspaceUsage)
class WorkspaceUsageAdmin(ReadOnlyAdmin):
    """Bytes per workspace as the storage quota counts them: the last exact recount plus what was
    admitted since (``projects.quotas``)."""

    list_display = ("workspace", "used", "recounted", "admitted_since", "recounted_at")
    list_select_related = ("workspace",)
    search_fields = ("workspace__slug",)
    fields = ("workspace", "used", "recounted", "admitted_since", "recounted_at")
    readonly_fields = fields

    @admin.display(description="used")
    def used(self, obj):
        return filesizeformat(obj.bytes + obj.admitted)

    @admin.display(description="last recount", ordering="bytes")
    def recounted(self, obj):
        return filesizeformat(obj.bytes)

    @admin.display(description="admitted since", ordering="admitted")
    def admitted_since(self, obj):
        return filesizeformat(obj.admitted)


@admin.register(ProjectUsage)
class ProjectUsageAdmin(ReadOnlyAdmin):
    """Bytes per project, kept exact by runs/usage.py (read-only here)."""

    list_display = ("project", "total", "series", "files", "previews", "computed_at")
    list_select_related = ("project", "project__workspace")
    search_fields = ("project__slug", "project__workspace__slug")
    fields = (
        "project",
        "total",
        "series",
        "files",
        "previews",
        "float_points",
        "string_points",
        "blob_count",
        "computed_at",
    )
    readonly_fields = fields

    @admin.display(description="total", ordering="total_bytes")
    def total(self, obj):
        return filesizeformat(obj.total_bytes)

    @admin.display(description="series points", ordering="series_bytes")
    def series(self, obj):
        return filesizeformat(obj.series_bytes)

    @admin.display(description="files", ordering="blob_bytes")
    def files(self, obj):
        return filesizeformat(obj.blob_bytes)

    @admin.display(description="previews", ordering="preview_bytes")
    def previews(self, obj):
        return filesizeformat(obj.preview_bytes)


# ---- guardian's object permissions (derived from the roles) ----------------------------------


class ObjectPermissionAdmin(ReadOnlyAdmin):
    """Derived from memberships and grants by the services: shown to explain a decision, never edited."""

    list_display = ("content_object", "permission_name", "holder")

    @admin.display(description="permission", ordering="permission__codename")
    def permission_name(self, obj):
        return obj.permission.codename

    @admin.display(description="user or team")
    def holder(self, obj):
        if hasattr(obj, "user_id"):
            return obj.user
        team = getattr(obj.group, "team", None)
        return f"team {team}" if team else obj.group


for model, related, search in (
    (WorkspaceUserObjectPermission, ("content_object", "permission", "user"), "user__username"),
    (WorkspaceGroupObjectPermission, ("content_object", "permission", "group__team__workspace"), "group__name"),
    (
        ProjectUserObjectPermission,
        ("content_object__workspace", "permission", "user"),
        "user__username",
    ),
    (
        ProjectGroupObjectPermission,
        ("content_object__workspace", "permission", "group__team__workspace"),
        "group__name",
    ),
):
    admin.site.register(
        model,
        ObjectPermissionAdmin,
        list_select_related=related,
        list_filter=("permission__codename",),
        search_fields=(search, "content_object__slug"),
    )

from . import admin_audit  # noqa: E402, F401  (the audit log's admin)

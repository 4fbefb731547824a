from django.contrib import admin
from django.template.defaultfilters import filesizeformat
from guardian.admin import GuardedModelAdmin

from . import services
from .models import (
    Membership,
    Project,
    ProjectGroupObjectPermission,
    ProjectUsage,
    ProjectUserObjectPermission,
    Workspace,
    WorkspaceGroupObjectPermission,
    WorkspaceUserObjectPermission,
)


def _become(obj, created) -> None:
    """Make the admin's unsaved ``obj`` the row a service created, so inlines attach to it."""
    obj.__dict__.update({k: v for k, v in created.__dict__.items() if k != "_state"})
    obj._state.adding = False
    obj._state.db = created._state.db


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Workspace)
class WorkspaceAdmin(GuardedModelAdmin):
    list_display = ("slug", "name", "personal_owner", "storage_used", "created_at")
    search_fields = ("slug", "name")
    inlines = [MembershipInline]

    def get_queryset(self, request):
        from django.db.models import Sum

        return super().get_queryset(request).annotate(_storage=Sum("projects__usage__total_bytes"))

    @admin.display(description="storage used", ordering="_storage")
    def storage_used(self, obj):
        return filesizeformat(obj._storage or 0)

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        _become(obj, services.create_workspace(request.user, obj.slug, obj.name))

    def save_formset(self, request, form, formset, change):
        # Roles become object permissions through the service, never by hand.
        instances = formset.save(commit=False)
        for obj in formset.deleted_objects:
            services.remove_membership(obj.workspace, obj.user)
        for obj in instances:
            services.set_membership(obj.workspace, obj.user, obj.role)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("workspace", "user", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("workspace__slug", "user__username")
    autocomplete_fields = ["user", "workspace"]

    def save_model(self, request, obj, form, change):
        services.set_membership(obj.workspace, obj.user, obj.role)

    def delete_model(self, request, obj):
        services.remove_membership(obj.workspace, obj.user)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            services.remove_membership(obj.workspace, obj.user)


class ProjectUsageInline(admin.StackedInline):
    model = ProjectUsage
    can_delete = False
    readonly_fields = (
        "total_bytes",
        "series_bytes",
        "blob_bytes",
        "preview_bytes",
        "float_points",
        "string_points",
        "blob_count",
        "computed_at",
    )
    fields = readonly_fields
    max_num = 0
    verbose_name_plural = "storage used (bytes; recomputed every minute by runs.tasks.refresh_usage)"


@admin.register(Project)
class ProjectAdmin(GuardedModelAdmin):
    list_display = ("__str__", "key", "run_counter", "storage_used", "created_at")
    list_select_related = ("workspace", "usage")
    inlines = [ProjectUsageInline]
    search_fields = ("slug", "key", "workspace__slug")
    list_filter = ("workspace",)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if obj is None and "key" in form.base_fields:
            form.base_fields["key"].required = False  # create_project derives one from the slug
            form.base_fields["key"].help_text = "Leave empty to derive one from the slug."
        return form

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        created = services.create_project(
            request.user, obj.workspace, obj.slug, key=obj.key or None, description=obj.description
        )
        _become(obj, created)

    @admin.display(description="storage used", ordering="usage__total_bytes")
    def storage_used(self, obj):
        usage = getattr(obj, "usage", None)
        return filesizeformat(usage.total_bytes) if usage else "—"


for model in (
    WorkspaceUserObjectPermission,
    WorkspaceGroupObjectPermission,
    ProjectUserObjectPermission,
    ProjectGroupObjectPermission,
):
    admin.site.register(
        model, list_display=("content_object", "permission", getattr(model, "user", None) and "user" or "group")
    )


@admin.register(ProjectUsage)
class ProjectUsageAdmin(admin.ModelAdmin):
    """Bytes per project, kept exact by runs/usage.py (read-only here)."""

    list_select_related = ("project", "project__workspace")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False
from . import admin_audit  # noqa: E402, F401  (the audit log's admin)

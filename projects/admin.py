from django.contrib import admin
from guardian.admin import GuardedModelAdmin

from . import services
from .models import (
    Membership,
    Project,
    ProjectGroupObjectPermission,
    ProjectUserObjectPermission,
    Workspace,
    WorkspaceGroupObjectPermission,
    WorkspaceUserObjectPermission,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Workspace)
class WorkspaceAdmin(GuardedModelAdmin):
    list_display = ("slug", "name", "personal_owner", "created_at")
    search_fields = ("slug", "name")
    inlines = [MembershipInline]

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


@admin.register(Project)
class ProjectAdmin(GuardedModelAdmin):
    list_display = ("__str__", "key", "run_counter", "created_at")
    list_select_related = ("workspace",)
    search_fields = ("slug", "key", "workspace__slug")
    list_filter = ("workspace",)


for model in (
    WorkspaceUserObjectPermission,
    WorkspaceGroupObjectPermission,
    ProjectUserObjectPermission,
    ProjectGroupObjectPermission,
):
    admin.site.register(model, list_display=("content_object", "permission", getattr(model, "user", None) and "user" or "group"))

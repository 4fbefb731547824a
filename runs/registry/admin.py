"""The model registry in the Django admin: the models of every workspace with their versions, a
description to edit and stage changes as actions. Writes go through ``services``; staff who are not
superusers see the models of projects they may view."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404

from projects import permissions
from projects.admin import ServiceAdmin

from ..errors import ApiError
from . import services
from .models import ModelAlias, ModelVersion, RegisteredModel, Stage


def _visible(queryset, request, field: str):
    if request.user.is_superuser:
        return queryset
    return permissions.scope_by_project(queryset, request.user, "view", field=field)


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "version",
        "stage",
        "run_label",
        "field_path",
        "file_count",
        "size",
        "created_by",
        "created_at",
        "stage_changed_by",
        "stage_changed_at",
    )

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(RegisteredModel)
class RegisteredModelAdmin(ServiceAdmin):
    list_display = ["name", "workspace", "project", "version_counter", "created_by", "updated_at"]
    list_filter = ["workspace"]
    search_fields = ["name", "description", "workspace__slug", "project__slug"]
    list_select_related = ["workspace", "project__workspace", "created_by"]
    fields = ["name", "workspace", "project", "description", "version_counter", "created_by", "created_at"]
    readonly_fields = ["name", "workspace", "project", "version_counter", "created_by", "created_at"]
    inlines = [ModelVersionInline]

    def get_queryset(self, request):
        return _visible(super().get_queryset(request), request, "project")

    def has_add_permission(self, request):
        return False  # models come from registering a run's field (UI, API, client)

    def save_model(self, request, obj, form, change):
        services.update_model(request.user, obj, description=form.cleaned_data["description"])

    def delete_model(self, request, obj):
        services.delete_model(request.user, obj)

    def delete_queryset(self, request, queryset):
        for model in queryset.select_related("project"):
            services.delete_model(request.user, model)


def _stage_action(stage: str):
    def action(modeladmin, request, queryset):
        changed = 0
        for version in queryset.select_related("model__project__workspace", "run"):
            try:
                services.transition_stage(request.user, version, stage)
                changed += 1
            except (ApiError, PermissionDenied, Http404) as exc:
                modeladmin.message_user(request, f"{version}: {exc}", messages.ERROR)
        if changed:
            modeladmin.message_user(request, f"{changed} version(s) moved to {stage}.", messages.SUCCESS)

    action.__name__ = f"move_to_{stage}"
    return admin.action(description=f"Move to {Stage(stage).label}")(action)


VERSION_FIELDS = (
    "model",
    "version",
    "stage",
    "run",
    "run_label",
    "field_path",
    "field_type",
    "description",
    "file_count",
    "size",
    "created_by",
    "created_at",
    "stage_changed_by",
    "stage_changed_at",
)


@admin.register(ModelVersion)
class ModelVersionAdmin(ServiceAdmin):
    list_display = ["__str__", "stage", "run_label", "field_path", "created_by", "created_at", "stage_changed_at"]
    list_filter = ["stage"]
    search_fields = ["model__name", "run_label", "field_path"]
    list_select_related = ["model__workspace", "created_by"]
    fields = VERSION_FIELDS
    readonly_fields = [f for f in VERSION_FIELDS if f != "description"]
    actions = [_stage_action(stage) for stage in Stage.values]

    def get_queryset(self, request):
        return _visible(super().get_queryset(request), request, "model__project")

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        services.update_version(request.user, obj, description=form.cleaned_data["description"])

    def delete_model(self, request, obj):
        services.delete_version(request.user, obj)

    def delete_queryset(self, request, queryset):
        for version in queryset.select_related("model__project"):
            services.delete_version(request.user, version)


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    list_display = ["alias", "model", "version", "created_by", "created_at"]
    list_select_related = ["model__workspace", "version__model__workspace", "created_by"]
    search_fields = ["alias", "model__name"]

    def get_queryset(self, request):
        return _visible(super().get_queryset(request), request, "model__project")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

from django.contrib import admin, messages
from django.utils.html import format_html_join

from . import series as series_store
from . import services
from .models import (
    Attribute,
    AttributeType,
    Blob,
    BlobInfo,
    BlobPreview,
    Export,
    FileEntry,
    PendingUpload,
    ProjectField,
    RollupCursor,
    Run,
    RunBatch,
    SavedView,
    Upload,
)


class AttributeInline(admin.TabularInline):
    model = Attribute
    extra = 0
    fields = (
        "path",
        "type",
        "int_value",
        "float_value",
        "bool_value",
        "string_value",
        "datetime_value",
        "json_value",
        "count",
    )
    readonly_fields = fields
    show_change_link = True
    max_num = 0


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    """Runs change through ``runs.services`` as everywhere else: an edit is ``update_run`` (a final
    state sets ``finished_at``), a delete moves the run to the trash, and "purge now" removes it."""

    list_display = ("__str__", "name", "project", "owner", "state", "created_at", "deleted_at")
    list_filter = ("state", "project")
    list_select_related = ("project", "project__workspace", "owner")
    search_fields = ("name", "custom_run_id", "project__key")
    fields = (
        "uuid",
        "project",
        "number",
        "name",
        "description",
        "state",
        "owner",
        "custom_run_id",
        "created_at",
        "modified_at",
        "ping_at",
        "finished_at",
        "deleted_at",
    )
    editable = ("name", "description", "state")
    readonly_fields = (
        "uuid",
        "project",
        "number",
        "owner",
        "custom_run_id",
        "created_at",
        "modified_at",
        "ping_at",
        "finished_at",
        "deleted_at",
    )
    inlines = [AttributeInline]
    actions = ["purge_now"]

    def has_add_permission(self, request):
        return False  # runs are made by clients through the API (services.create_run)

    def save_model(self, request, obj, form, change):
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in self.editable}
        if changes:
            services.update_run(request.user, obj, **changes)

    def delete_model(self, request, obj):
        services.delete_run(request.user, obj)

    def delete_queryset(self, request, queryset):
        for run in queryset.select_related("project"):
            services.delete_run(request.user, run)

    @admin.action(description="Purge now (remove the runs and their data; no undo)")
    def purge_now(self, request, queryset):
        purged = sum(services.purge_run(request.user, run) for run in queryset.select_related("project"))
        self.message_user(request, f"Purged {purged} run(s).", messages.SUCCESS)


@admin.register(Attribute)
class AttributeAdmin(admin.ModelAdmin):
    """Series points are shown here (the point tables have composite keys, which the admin cannot list)."""

    list_display = ("path", "type", "run", "count", "updated_at")
    list_filter = ("type",)
    list_select_related = ("run", "run__project")
    search_fields = ("path",)
    raw_id_fields = ("run",)
    readonly_fields = ("first_points", "last_points")

    def _points(self, obj, newest: bool):
        if obj.type not in (AttributeType.FLOAT_SERIES, AttributeType.STRING_SERIES) or not obj.count:
            return "—"
        table = series_store.FLOAT_TABLE if obj.type == AttributeType.FLOAT_SERIES else series_store.STRING_TABLE
        start = max((obj.last_step or 0) - 20, 0) if newest else None
        data = series_store.read_points(obj.pk, table, from_step=start, limit=20)
        rows = zip(data["steps"], data["values"], strict=True)
        return format_html_join("", "<div>step {}: {}</div>", rows)

    @admin.display(description="first 20 points")
    def first_points(self, obj):
        return self._points(obj, newest=False)

    @admin.display(description="last points")
    def last_points(self, obj):
        return self._points(obj, newest=True)


@admin.register(Blob)
class BlobAdmin(admin.ModelAdmin):
    list_display = ("sha256", "size", "mime_type", "created_at")
    search_fields = ("sha256",)


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ("run", "blob", "name", "created_at")
    raw_id_fields = ("run", "blob")


@admin.register(FileEntry)
class FileEntryAdmin(admin.ModelAdmin):
    list_display = ("attribute", "relpath", "step", "name", "size", "mime_type")
    raw_id_fields = ("attribute", "blob")


@admin.register(RunBatch)
class RunBatchAdmin(admin.ModelAdmin):
    list_display = ("run", "stream", "seq", "op_count", "applied_at")
    raw_id_fields = ("run",)


@admin.register(ProjectField)
class ProjectFieldAdmin(admin.ModelAdmin):
    list_display = ("path", "type", "project", "first_seen")
    list_filter = ("type",)
    list_select_related = ("project", "project__workspace")
    search_fields = ("path",)
    raw_id_fields = ("project",)


@admin.register(SavedView)
class SavedViewAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "owner", "shared")
    list_select_related = ("project", "project__workspace", "owner")
    raw_id_fields = ("project", "owner")


@admin.register(RollupCursor)
class RollupCursorAdmin(admin.ModelAdmin):
    """Roll-up progress per series (the roll-up rows themselves have composite keys, which the admin cannot list)."""

    list_display = ("series", "rolled_until", "queued", "updated_at")
    raw_id_fields = ("series",)


@admin.register(BlobInfo)
class BlobInfoAdmin(admin.ModelAdmin):
    list_display = ("blob", "state", "detected_mime_type", "processed_at")
    list_filter = ("state",)
    raw_id_fields = ("blob",)


@admin.register(BlobPreview)
class BlobPreviewAdmin(admin.ModelAdmin):
    list_display = ("blob", "kind", "mime_type", "size", "created_at")
    list_filter = ("kind",)
    raw_id_fields = ("blob",)


@admin.register(PendingUpload)
class PendingUploadAdmin(admin.ModelAdmin):
    list_display = ("id", "run", "name", "size", "created_at")
    raw_id_fields = ("run",)


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "run", "requested_by", "state")
    list_filter = ("state",)
    raw_id_fields = ("project", "run", "requested_by")

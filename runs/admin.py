"""The runs app in Django admin, for an operator running an installation.

Runs change only through ``runs.services`` (edit, move to trash, restore, purge). Every other
table here is written by ingestion and background work: it is shown read-only, with no "Add",
no change form and no delete (a row removed by hand would leave points, blobs or stored objects
behind that nothing cleans up in order). Tables that grow with every batch or point list newest
first by primary key, count at most ``BoundedCountPaginator.CAP`` rows and sort by nothing else.
"""

import re

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList as BaseChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Sum
from django.http import Http404
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from projects import permissions

from . import series as series_store
from . import services
from .models import (
    Attribute,
    AttributeType,
    Blob,
    BlobInfo,
    BlobPreview,
    Erasure,
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
from .usage import FLOAT_POINT_BYTES, STRING_POINT_BYTES


class BoundedCountPaginator(Paginator):
    """Counts at most ``CAP`` rows (``SELECT COUNT(*) FROM (... LIMIT CAP)``), so a list page of a
    table with millions of rows never counts all of them; past the cap, narrow with search or filters."""

    CAP = 10_000

    @cached_property
    def count(self):
        return self.object_list.order_by()[: self.CAP].count()


class ChangeList(BaseChangeList):
    """Honours ``sortable_by`` for ``?o=`` too (Django only hides the other columns' sort links)."""

    def get_ordering_field(self, field_name):
        if self.sortable_by is not None and field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)


class RunsModelAdmin(admin.ModelAdmin):
    """Staff who are not superusers see only rows of projects they may view (the one permission module)."""

    project_field: str | None = None  # the path from the row to its project; None: not scoped

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self.project_field is None:
            return queryset
        return permissions.scope_by_project(queryset, request.user, "view", field=self.project_field)

    def get_changelist(self, request, **kwargs):
        return ChangeList


def human_size(value) -> str:
    return "—" if value is None else filesizeformat(value)


class ReadOnlyAdmin(RunsModelAdmin):
    """Viewable, never added, changed or deleted by hand: the rows belong to ingestion and background work."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class LargeTableAdmin(ReadOnlyAdmin):
    """A table that grows with every batch: newest first by primary key, a bounded count, no other sort."""

    ordering = ("-pk",)
    sortable_by = ()
    show_full_result_count = False
    paginator = BoundedCountPaginator
    list_per_page = 50


class TrashFilter(admin.SimpleListFilter):
    title = "trash"
    parameter_name = "trash"

    def lookups(self, request, model_admin):
        return [("live", "Live"), ("trashed", "In the trash")]

    def queryset(self, request, queryset):
        if self.value() == "live":
            return queryset.filter(deleted_at__isnull=True)
        if self.value() == "trashed":
            return queryset.filter(deleted_at__isnull=False)
        return queryset


HUMAN_ID = re.compile(r"^([A-Za-z][A-Za-z0-9]{1,9})-(\d{1,18})$")


@admin.register(Run)
class RunAdmin(RunsModelAdmin):
    """Runs change through ``runs.services`` as everywhere else: an edit is ``update_run`` (a final
    state sets ``finished_at``), delete and "move to trash" put runs in the trash (``delete_run``),
    "restore" takes them out, and "purge" removes runs already in the trash (``purge_run``)."""

    project_field = "project"
    list_display = (
        "human_id",
        "project",
        "name",
        "state",
        "owner",
        "created_at",
        "modified_at",
        "in_trash",
    )
    list_display_links = ("human_id", "name")
    list_filter = ("state", TrashFilter, "project__workspace")
    list_select_related = ("project", "project__workspace", "owner")
    search_fields = ("name", "owner__username", "project__slug", "=project__key", "=custom_run_id")
    search_help_text = "A human id (VIS-42), a run name, owner username, project slug or key, or custom run id."
    ordering = ("-id",)
    sortable_by = ("created_at", "modified_at")
    show_full_result_count = False
    list_per_page = 50
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
        "storage",
        "attributes",
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
        "storage",
        "attributes",
    )
    actions = ["move_to_trash", "restore_from_trash", "purge_now"]

    @admin.display(description="id")
    def human_id(self, obj):
        return obj.human_id

    @admin.display(description="in trash since")
    def in_trash(self, obj):
        return obj.deleted_at or "—"

    @admin.display(description="storage")
    def storage(self, obj):
        """What this run holds (its project's usage, shared blobs counted once, is on the project)."""
        counts = dict(
            Attribute.objects.filter(run=obj, type__in=[AttributeType.FLOAT_SERIES, AttributeType.STRING_SERIES])
            .values_list("type")
            .annotate(points=Sum("count"))
        )
        floats = counts.get(AttributeType.FLOAT_SERIES) or 0
        strings = counts.get(AttributeType.STRING_SERIES) or 0
        files = Blob.objects.filter(uploads__run=obj).aggregate(n=Sum("size"))["n"] or 0
        series = FLOAT_POINT_BYTES * floats + STRING_POINT_BYTES * strings
        return (
            f"{filesizeformat(files)} of files; {floats + strings} series points "
            f"(about {filesizeformat(series)} without string contents)"
        )

    @admin.display(description="fields")
    def attributes(self, obj):
        url = reverse("admin:runs_attribute_changelist") + f"?run__id__exact={obj.pk}"
        return format_html('<a href="{}">{} fields</a>', url, obj.attributes.count())

    def get_search_results(self, request, queryset, search_term):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        match = HUMAN_ID.match(search_term.strip())
        if match:
            key, number = match.groups()
            found |= queryset.filter(project__key__iexact=key, number=int(number))
        return found, may_have_duplicates

    def has_add_permission(self, request):
        return False  # runs are made by clients through the API (services.create_run)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # "move to trash" says what a delete does
        return actions

    def get_deleted_objects(self, objs, request):
        # A delete moves the run to the trash: nothing cascades, so nothing is collected (a run
        # may hold millions of rows the default confirmation page would load).
        summary = [format_html("{} moves to the trash; it is purged later or with “purge”.", run) for run in objs]
        return summary, {"runs": len(objs)}, set(), []

    def save_model(self, request, obj, form, change):
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in self.editable}
        if changes:
            services.update_run(request.user, obj, **changes)

    def delete_model(self, request, obj):
        services.delete_run(request.user, obj)

    def delete_queryset(self, request, queryset):
        for run in queryset.select_related("project"):
            services.delete_run(request.user, run)

    def _each(self, request, runs, service, done: str):
        count = 0
        for run in runs:
            try:
                result = service(request.user, run)
            except (PermissionDenied, Http404):
                self.message_user(request, f"{run}: you may not do this in its project.", messages.ERROR)
                continue
            count += result is not False
        self.message_user(request, done.format(count=count), messages.SUCCESS)

    @admin.action(description="Move to the trash")
    def move_to_trash(self, request, queryset):
        live = queryset.filter(deleted_at__isnull=True).select_related("project", "project__workspace")
        self._each(request, live, services.delete_run, "Moved {count} run(s) to the trash.")

    @admin.action(description="Restore from the trash")
    def restore_from_trash(self, request, queryset):
        trashed = queryset.filter(deleted_at__isnull=False).select_related("project", "project__workspace")
        self._each(request, trashed, services.restore_run, "Restored {count} run(s).")

    @admin.action(description="Purge runs in the trash now (remove them and their data; no undo)")
    def purge_now(self, request, queryset):
        runs = list(queryset.select_related("project", "project__workspace"))
        live = [run for run in runs if run.deleted_at is None]
        if live:
            names = ", ".join(str(run) for run in live)
            self.message_user(
                request, f"Not purged, not in the trash: {names}. Move them there first.", messages.WARNING
            )
        trashed = [run for run in runs if run.deleted_at is not None]
        self._each(request, trashed, services.purge_run, "Purged {count} run(s).")


@admin.register(Attribute)
class AttributeAdmin(LargeTableAdmin):
    """Series points are shown here (the point tables have composite keys, which the admin cannot list)."""

    project_field = "project"
    list_display = ("path", "type", "run", "count", "updated_at")
    list_filter = ("type",)
    list_select_related = ("run", "run__project")
    search_fields = ("^path",)
    exclude = ("project",)
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
class BlobAdmin(LargeTableAdmin):
    list_display = ("sha256", "human_size", "mime_type", "created_at")
    search_fields = ("=sha256",)
    fields = ("sha256", "human_size", "mime_type", "created_at")
    readonly_fields = ("human_size",)

    @admin.display(description="size")
    def human_size(self, obj):
        return human_size(obj.size)


@admin.register(Upload)
class UploadAdmin(LargeTableAdmin):
    project_field = "run__project"
    list_display = ("run", "blob", "name", "mime_type", "created_at")
    list_select_related = ("run", "run__project")


@admin.register(FileEntry)
class FileEntryAdmin(LargeTableAdmin):
    project_field = "attribute__project"
    list_display = ("attribute", "relpath", "step", "name", "human_size", "mime_type")
    exclude = ("size",)
    readonly_fields = ("human_size",)

    @admin.display(description="size")
    def human_size(self, obj):
        return human_size(obj.size)


@admin.register(RunBatch)
class RunBatchAdmin(LargeTableAdmin):
    project_field = "run__project"
    list_display = ("run", "stream", "seq", "op_count", "applied_at")
    list_select_related = ("run", "run__project")


@admin.register(ProjectField)
class ProjectFieldAdmin(LargeTableAdmin):
    project_field = "project"
    list_display = ("path", "type", "project", "first_seen")
    list_filter = ("type",)
    list_select_related = ("project", "project__workspace")
    search_fields = ("^path",)


@admin.register(SavedView)
class SavedViewAdmin(ReadOnlyAdmin):
    """Saved views are their owners' to change (in the UI); an operator may only remove one,
    which touches nothing else."""

    project_field = "project"
    list_display = ("name", "project", "owner", "shared", "updated_at")
    list_filter = ("shared",)
    list_select_related = ("project", "project__workspace", "owner")
    search_fields = ("name", "owner__username", "project__slug")

    def has_delete_permission(self, request, obj=None):
        return super(ReadOnlyAdmin, self).has_delete_permission(request, obj)


@admin.register(RollupCursor)
class RollupCursorAdmin(LargeTableAdmin):
    """Roll-up progress per series (the roll-up rows themselves have composite keys, which the admin cannot list)."""

    project_field = "series__project"
    list_display = ("series", "rolled_until", "queued", "updated_at")
    list_filter = ("queued",)


@admin.register(BlobInfo)
class BlobInfoAdmin(LargeTableAdmin):
    list_display = ("blob", "state", "detected_mime_type", "processed_at")
    list_filter = ("state",)


@admin.register(BlobPreview)
class BlobPreviewAdmin(LargeTableAdmin):
    list_display = ("blob", "kind", "mime_type", "human_size", "created_at")
    list_filter = ("kind",)
    exclude = ("size",)
    readonly_fields = ("human_size",)

    @admin.display(description="size")
    def human_size(self, obj):
        return human_size(obj.size)


@admin.register(PendingUpload)
class PendingUploadAdmin(ReadOnlyAdmin):
    """Direct uploads in progress; ``cleanup.clean_orphans`` sweeps the abandoned ones with their staged objects."""

    project_field = "run__project"
    list_display = ("id", "run", "name", "human_size", "created_at")
    list_select_related = ("run", "run__project")
    exclude = ("size",)
    readonly_fields = ("human_size",)
    ordering = ("-created_at",)

    @admin.display(description="size")
    def human_size(self, obj):
        return human_size(obj.size)


@admin.register(Export)
class ExportAdmin(ReadOnlyAdmin):
    """Export archives; ``cleanup.clean_orphans`` removes them with their stored objects after a week."""

    project_field = "project"
    list_display = ("id", "project", "run", "requested_by", "state", "human_size", "created_at")
    list_filter = ("state",)
    list_select_related = ("project", "project__workspace", "run", "run__project", "requested_by")
    exclude = ("size",)
    readonly_fields = ("human_size",)
    show_full_result_count = False
    paginator = BoundedCountPaginator

    @admin.display(description="size")
    def human_size(self, obj):
        return human_size(obj.size)


@admin.register(Erasure)
class ErasureAdmin(ReadOnlyAdmin):
    """Runs deleted for good (GDPR erasure): what went, by whom, when and why. Kept for good, never changed."""

    project_field = "project"
    list_display = ("at", "subject", "project_label", "actor_name", "reason")
    list_select_related = ("project", "project__workspace")
    search_fields = ("subject", "project_label", "actor_name", "reason")
    readonly_fields = ("at", "actor", "actor_name", "project", "project_label", "subject", "reason", "runs", "counts")

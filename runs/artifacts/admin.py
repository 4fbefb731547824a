"""Artifact names, versions and run links in Django admin, for an operator: read-only (they are written
by the batch engine with the runs that track or upload them, and go with those runs), searchable by
name, hash and field, filtered by kind, role and workspace. A version's hash and file list are shown,
never edited. Staff who are not superusers see only what the runs of projects they may view link."""

from django.contrib import admin
from django.db.models import Exists, OuterRef
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join

from projects import permissions

from ..admin import BoundedCountPaginator, ReadOnlyAdmin
from .models import Artifact, ArtifactVersion, RunArtifact

FILES_SHOWN = 200


def _linked_by_visible_runs(queryset, request, field: str):
    """Rows a visible run links (``field``: the path from a link to the row), for staff who are not superusers."""
    if request.user.is_superuser:
        return queryset
    links = permissions.scope_by_project(RunArtifact.objects.filter(**{field: OuterRef("pk")}), request.user, "view")
    return queryset.filter(Exists(links))


@admin.register(Artifact)
class ArtifactAdmin(ReadOnlyAdmin):
    list_display = ("name", "workspace", "created_at")
    list_select_related = ("workspace",)
    list_filter = ("workspace",)
    search_fields = ("name",)
    fields = ("name", "workspace", "created_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return _linked_by_visible_runs(super().get_queryset(request), request, "version__artifact")


class LinkInline(admin.TabularInline):
    model = RunArtifact
    fk_name = "version"
    fields = ("run", "role", "path", "created_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request):
        links = super().get_queryset(request).select_related("run", "run__project")
        if request.user.is_superuser:
            return links
        return permissions.scope_by_project(links, request.user, "view")


@admin.register(ArtifactVersion)
class ArtifactVersionAdmin(ReadOnlyAdmin):
    list_display = ("short_hash", "artifact", "kind", "human_size", "file_count", "workspace", "first_seen")
    list_select_related = ("artifact", "workspace")
    list_filter = ("kind", "workspace")
    search_fields = ("=hash", "artifact__name")
    show_full_result_count = False
    paginator = BoundedCountPaginator
    fields = (
        "hash",
        "artifact",
        "workspace",
        "kind",
        "human_size",
        "file_count",
        "location",
        "metadata",
        "first_seen",
        "first_run",
        "file_list",
    )
    readonly_fields = fields
    inlines = [LinkInline]

    def get_queryset(self, request):
        # the list never loads a version's file list; the change page does (file_list)
        versions = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name.endswith("_changelist"):
            versions = versions.defer("files", "metadata")
        return _linked_by_visible_runs(versions, request, "version")

    @admin.display(description="hash", ordering="hash")
    def short_hash(self, obj):
        return format_html('<code title="{}">{}</code>', obj.hash, obj.hash[:12])

    @admin.display(description="size", ordering="size")
    def human_size(self, obj):
        return filesizeformat(obj.size)

    @admin.display(description="files")
    def file_list(self, obj):
        rows = obj.files[:FILES_SHOWN]
        table = format_html_join(
            "", "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>", ((p, h, n) for p, h, n in rows)
        )
        more = len(obj.files) - len(rows)
        tail = format_html("<p>… and {} more files</p>", more) if more > 0 else ""
        return format_html(
            '<table class="artifact-files"><thead><tr><th>path</th><th>hash</th><th>bytes</th></tr></thead>'
            "<tbody>{}</tbody></table>{}",
            table,
            tail,
        )


@admin.register(RunArtifact)
class RunArtifactAdmin(ReadOnlyAdmin):
    project_field = "project"
    list_display = ("run", "role", "path", "version", "artifact", "project", "created_at")
    list_select_related = ("run", "run__project", "version", "artifact", "project", "project__workspace")
    list_filter = ("role",)
    search_fields = ("=version__hash", "path", "artifact__name")
    show_full_result_count = False
    paginator = BoundedCountPaginator
    ordering = ("-pk",)
    fields = ("run", "role", "path", "version", "artifact", "project", "created_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("version__files", "version__metadata")

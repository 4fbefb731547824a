"""The audit log in the admin: read-only (no add, change or delete), filtered, searched and exported.

"Export CSV" / "Export JSON" on the list download every entry the list's current filters and search
select (streamed, not just one page); the two actions of the same names export the rows ticked.
Staff who are not superusers see only entries of workspaces they manage.
"""

import json

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html

from . import audit
from .models import AuditEvent, Workspace

_FORMATS = {"csv": ("text/csv; charset=utf-8", audit.export_csv), "json": ("application/json", audit.export_json)}


def _download(queryset, fmt: str) -> StreamingHttpResponse:
    content_type, render = _FORMATS[fmt]
    response = StreamingHttpResponse(render(queryset), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="audit-{timezone.now():%Y%m%d-%H%M%S}.{fmt}"'
    return response


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("at", "actor_name", "action", "target", "workspace", "project", "address", "token_prefix")
    list_display_links = ("at",)
    list_select_related = ("workspace", "project", "project__workspace")
    list_filter = ("action", ("workspace", admin.RelatedOnlyFieldListFilter), "at")
    date_hierarchy = "at"
    search_fields = ("actor_name", "target", "address", "token_prefix", "request_id")
    show_full_result_count = False  # the log only grows: no second COUNT(*) of the whole table
    actions = ["export_selected_csv", "export_selected_json"]
    change_list_template = "admin/projects/auditevent/change_list.html"
    fields = (
        "at",
        "action",
        "actor",
        "actor_name",
        "workspace",
        "project",
        "target_type",
        "target_id",
        "target",
        "address",
        "user_agent",
        "token_prefix",
        "request_id",
        "details_json",
    )
    readonly_fields = fields

    @admin.display(description="details")
    def details_json(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.details, indent=2, sort_keys=True))

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(workspace__in=Workspace.objects.for_user(request.user, "manage"))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        export = path(
            "export/<str:fmt>/",
            self.admin_site.admin_view(self.export_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_export",
        )
        return [export, *super().get_urls()]

    def export_view(self, request, fmt):
        """Every entry the list with this query string shows (all pages), as CSV or JSON."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if fmt not in _FORMATS:
            return HttpResponseBadRequest(f"format: {fmt!r} is not one of csv, json")
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters as exc:
            return HttpResponseBadRequest(f"filters: {exc}")
        return _download(changelist.queryset, fmt)

    @admin.action(description="Export selected entries as CSV", permissions=["view"])
    def export_selected_csv(self, request, queryset):
        return _download(queryset, "csv")

    @admin.action(description="Export selected entries as JSON", permissions=["view"])
    def export_selected_json(self, request, queryset):
        return _download(queryset, "json")

"""Exports of projects and runs to ZIP archives."""

from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from projects.services import resolve_project
from tracker.api.views import ScopedGenericAPIView

from ... import services, storage
from ...downloads import ranged_response
from ...errors import ApiError
from ...models import Export, Run
from ...refs import parse_run_ref
from ..serializers import (
    ExportListSerializer,
    ExportRequestSerializer,
    ExportSerializer,
)


def export_json(request, export: Export) -> dict:
    body = {
        "id": str(export.pk),
        "project": export.project.full_name,
        "run": export.run.human_id if export.run_id else None,
        "state": export.state,
        "progress": export.progress,
        "total": export.total,
        "size": export.size or None,
        "error": export.error or None,
        "created_at": export.created_at,
        "finished_at": export.finished_at,
        "download_url": None,
    }
    if export.state == "done":
        body["download_url"] = request.build_absolute_uri(reverse("export-download", kwargs={"export_id": export.pk}))
    return body


class ExportScopedView(ScopedGenericAPIView):
    def scoped_queryset(self):
        return Export.objects.for_user(self.request.user, "export").select_related(
            "project", "project__workspace", "run", "run__project"
        )

    def get_export(self, export_id) -> Export:
        export = self.get_queryset().filter(pk=export_id).first()
        if export is None:
            raise Http404("no such export")
        return export


class ExportListView(ExportScopedView):
    """Export a project (or one of its runs) to a ZIP archive, built in the background."""

    @extend_schema(request=ExportRequestSerializer, responses={202: ExportSerializer})
    def post(self, request):
        data = ExportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = resolve_project(request.user, data.validated_data["project"])
        run = None
        if data.validated_data.get("run"):
            ref = data.validated_data["run"]
            parsed = parse_run_ref(ref, project=project, param="run")
            runs = Run.objects.for_user(request.user, "view").filter(project=project)
            run = runs.filter(parsed.q()).first() if parsed else None
            if run is None:
                raise ApiError(404, "not_found", f"run {ref!r} not found in {project.full_name}", field="run")
        export = services.request_export(request.user, project, run)
        export = self.get_export(export.pk)
        return Response(export_json(request, export), status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[OpenApiParameter("project", str, required=True)],
        responses=ExportListSerializer,
        operation_id="exports_list",
    )
    def get(self, request):
        project = resolve_project(request.user, request.query_params.get("project") or "")
        rows = self.get_queryset().filter(project=project)[:100]
        return Response({"results": [export_json(request, e) for e in rows]})


class ExportDetailView(ExportScopedView):
    @extend_schema(responses=ExportSerializer)
    def get(self, request, export_id):
        return Response(export_json(request, self.get_export(export_id)))


class ExportDownloadView(ExportScopedView):
    @extend_schema(responses={(200, "application/zip"): bytes})
    def get(self, request, export_id):
        export = self.get_export(export_id)
        if export.state != "done":
            raise ApiError(409, "export_not_ready", f"the export is {export.state}", field="state")
        services.record_export_download(request.user, export, range_header=request.headers.get("Range", ""))
        name = f"{export.project.full_name.replace('/', '-')}{'-' + export.run.human_id if export.run_id else ''}.zip"
        if storage.is_s3() and request.query_params.get("redirect") == "1":
            from django.http import HttpResponseRedirect

            return HttpResponseRedirect(
                storage.presigned_get(export.storage_key, filename=name, content_type="application/zip")
            )
        return ranged_response(
            request,
            storage.open_blob(export.storage_key),
            size=export.size,
            content_type="application/zip",
            filename=name,
        )

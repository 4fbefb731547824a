import itertools

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import timezone
from django.views import View

from projects import permissions

from .. import services, table_export
from ..models import Run, SavedView
from ..query import QueryError, QueryTimeout
from ..query.budget import retry_after_seconds
from .base import ProjectScopedMixin
from .table import TableState


def _error(status: int, code: str, message: str, field: str, **details) -> JsonResponse:
    body = {"status": status, "code": code, "message": message, "field": field}
    body.update({k: v for k, v in details.items() if v is not None})
    return JsonResponse({"error": body}, status=status)


class RunTableExportView(ProjectScopedMixin, View):
    """The run table's current view (``q``, ``c``, ``sort`` as the table reads them, or a saved
    ``view``) as ``format=csv`` or ``format=parquet``, streamed a page of runs at a time."""

    def scoped_queryset(self):
        return Run.objects.for_user(self.request.user, "export").filter(project=self.get_project())

    def get(self, request, workspace, project):
        project_obj = self.get_project()
        permissions.require(request.user, "export", project_obj)
        fmt = request.GET.get("format", "csv")
        if fmt not in table_export.FORMATS:
            return _error(400, "invalid", f"format: must be one of {', '.join(table_export.FORMATS)}", "format")
        saved = None
        view_id = request.GET.get("view", "")
        if view_id.isdigit():
            saved = (
                SavedView.objects.for_user(request.user, "view").filter(project=project_obj, pk=int(view_id)).first()
            )
        state = TableState(request.GET, saved)
        try:
            rq = table_export.build_query(request.user, project_obj, state.query, state.paths, state.sort_param)
            export = table_export.Export(rq, project_obj)
            pages = export.pages()
            # the first page is read before the response starts, so a query the database refuses or
            # one past the time budget is still an error status, not a truncated file
            first = list(itertools.islice(pages, 1))
        except table_export.ExportQueryError as exc:
            return _error(400, "invalid_query", f"{exc.field}: {exc.message}", exc.field, position=exc.position)
        except QueryError as exc:
            field = getattr(exc, "field", None) or ("sort" if state.sort_param else "q")
            return _error(400, "invalid_query", f"{field}: {exc.message}", field, position=exc.position)
        except QueryTimeout as exc:
            response = HttpResponse(exc.message, status=503, content_type="text/plain")
            response["Retry-After"] = str(retry_after_seconds())
            return response
        services.record_table_export(
            request.user, project_obj, fmt=fmt, query=state.query, columns=state.paths, sort=state.sort_param
        )
        content_type, extension = table_export.FORMATS[fmt]
        body = getattr(export, fmt)(itertools.chain(first, pages))
        response = StreamingHttpResponse(body, content_type=content_type)
        name = f"{project_obj.workspace.slug}-{project_obj.slug}-runs-{timezone.localdate():%Y-%m-%d}.{extension}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["Cache-Control"] = "no-store"
        return response

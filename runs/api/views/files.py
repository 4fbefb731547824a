"""File endpoints: uploads (through Runstore or straight to S3), file lists and downloads, presigned
URLs, processing results and previews."""

from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.clickjacking import xframe_options_sameorigin
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from ... import processing, services, storage
from ...downloads import ranged_response
from ...errors import ApiError
from ...models import (
    AttributeType,
    BlobInfo,
    BlobPreview,
    FileEntry,
)
from ...paths import entry_file_name, safe_file_name, safe_relpath
from ...storage import open_blob
from ...uploads import read_body_from_socket
from ..serializers import (
    CompleteUploadSerializer,
    DirectUploadSerializer,
    DirectUploadStartSerializer,
    FileInfoSerializer,
    FileListSerializer,
    FileQuerySerializer,
    FileUrlSerializer,
    UploadResultSerializer,
)
from .base import RunScopedView

# HTML previews (notebooks, highlighted source) run no script, load nothing from elsewhere, and are
# framed by Runstore's own pages only (the run page's sandboxed iframe).
PREVIEW_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; frame-ancestors 'self'"
)


class UploadView(RunScopedView):
    """Upload a file (multipart field ``file``); returns its SHA-256 to use in ``upload`` operations."""

    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}, "sha256": {"type": "string"}},
            }
        },
        responses={201: UploadResultSerializer},
    )
    def post(self, request, run_ref):
        run = self.get_run()
        services.permissions.require(request.user, "write", run.project)
        read_body_from_socket(request._request)  # nothing has read the body yet (DRF parses it lazily)
        uploaded = request.FILES.get("file")
        if uploaded is None:
            raise ApiError(400, "invalid", "file: a multipart field named 'file' is required", field="file")
        expected = request.data.get("sha256")
        if expected:
            uploaded.expected_sha256 = expected
        blob = services.store_upload(request.user, run, uploaded)
        # What this caller sent, never what the shared blob row says (another project may have made it).
        body = {
            "sha256": blob.sha256,
            "size": uploaded.size,
            "name": services.upload_name(uploaded),
            "mime_type": services.upload_mime_type(uploaded),
        }
        return Response(body, status=status.HTTP_201_CREATED)


class FileListView(RunScopedView):
    @extend_schema(parameters=[OpenApiParameter("path", str, required=True)], responses=FileListSerializer)
    def get(self, request, run_ref):
        path = request.query_params.get("path") or ""
        run = self.get_run()
        attr = self.get_attribute(run, path, {AttributeType.FILE, AttributeType.FILE_SET, AttributeType.FILE_SERIES})
        entries = FileEntry.objects.filter(attribute=attr).order_by("step", "relpath")[:10_000]
        return Response(
            {
                "path": attr.path,
                "type": attr.type,
                "files": [
                    # Names and relpaths are safe to write into a folder, also those stored before the rules.
                    {
                        "relpath": safe_relpath(e.relpath),
                        "step": e.step,
                        "name": safe_file_name(e.name, fallback=""),
                        "size": e.size,
                        "sha256": e.blob_id,
                        "mime_type": e.mime_type,
                    }
                    for e in entries
                ],
            }
        )


class FileDownloadView(RunScopedView):
    """Stream a file of a field; supports HTTP Range requests."""

    @extend_schema(parameters=[FileQuerySerializer], responses={(200, "application/octet-stream"): bytes})
    def get(self, request, run_ref):
        run, attr, entry = self.get_file_entry()
        return ranged_response(
            request,
            open_blob(entry.blob.storage_key),
            size=entry.size,
            content_type=entry.mime_type,
            filename=entry_file_name(entry, attr.path),
        )


class FileEntryView(RunScopedView):
    """Views of one file of a field, addressed like the download endpoint (path + relpath/step)."""

    def get_entry(self):
        return self.get_file_entry()

    @staticmethod
    def filename(attr, entry) -> str:
        return entry_file_name(entry, attr.path)


class FileUrlView(FileEntryView):
    """A URL to fetch a file from: presigned and short-lived on S3 (the bytes bypass Runstore)."""

    @extend_schema(parameters=[FileQuerySerializer], responses=FileUrlSerializer)
    def get(self, request, run_ref):
        run, attr, entry = self.get_entry()
        if storage.is_s3():
            url = storage.presigned_get(
                entry.blob.storage_key, filename=self.filename(attr, entry), content_type=entry.mime_type
            )
            return Response({"url": url, "expires_in": storage.url_expiry(), "direct": True, "size": entry.size})
        url = request.build_absolute_uri(reverse("run-file-download", kwargs={"run_ref": run_ref}))
        return Response(
            {"url": f"{url}?{request.GET.urlencode()}", "expires_in": None, "direct": False, "size": entry.size}
        )


class FileInfoView(FileEntryView):
    """What processing found out about a file: verified hash, sniffed type, metadata, previews."""

    @extend_schema(parameters=[FileQuerySerializer], responses=FileInfoSerializer)
    def get(self, request, run_ref):
        run, attr, entry = self.get_entry()
        return Response(
            {
                "path": attr.path,
                "sha256": entry.blob_id,
                "size": entry.size,
                "mime_type": entry.mime_type,
                "processing": processing.blob_summary(entry.blob, run.project_id),
            }
        )


# Preview kinds made by runs.processing, and the file extension each is served with.
PREVIEW_KINDS = {"thumbnail": "png", "html": "html", "poster": "jpg"}


@method_decorator(xframe_options_sameorigin, name="dispatch")
class FilePreviewView(FileEntryView):
    """A preview of a file: ``kind=thumbnail`` (PNG of an image), ``kind=html`` (rendered notebook or
    source, framed by the run page: ``X-Frame-Options: SAMEORIGIN``) or ``kind=poster`` (JPEG frame of a video)."""

    @extend_schema(
        parameters=[FileQuerySerializer, OpenApiParameter("kind", str, enum=list(PREVIEW_KINDS), default="thumbnail")],
        responses={(200, "application/octet-stream"): bytes},
    )
    def get(self, request, run_ref):
        kind = request.query_params.get("kind", "thumbnail")
        if kind not in PREVIEW_KINDS:
            raise ApiError(400, "invalid", f"kind: must be one of {', '.join(PREVIEW_KINDS)}", field="kind")
        run, attr, entry = self.get_entry()
        visible = processing.processed_for(entry.blob_id, run.project_id)
        preview = BlobPreview.objects.filter(blob=entry.blob, kind=kind).first() if visible else None
        if preview is None and not visible:
            raise ApiError(404, "preview_not_ready", f"no {kind} preview for this file (yet)", field="kind")
        if preview is None:
            failure = BlobInfo.objects.filter(blob_id=entry.blob_id).values_list("preview_error", flat=True).first()
            if failure:
                raise ApiError(
                    404,
                    "preview_failed",
                    f"preview failed: {failure} (the file itself can be downloaded)",
                    field="kind",
                )
            raise ApiError(404, "preview_not_ready", f"no {kind} preview for this file (yet)", field="kind")
        name = f"{self.filename(attr, entry)}.{PREVIEW_KINDS[kind]}"
        return ranged_response(
            request,
            storage.open_blob(preview.storage_key),
            size=preview.size,
            content_type=preview.mime_type,
            filename=name,
            inline=True,
            csp=PREVIEW_CSP,
        )


class DirectUploadView(RunScopedView):
    """Start an upload that goes straight to the S3 store: one presigned PUT, or presigned parts above
    RUNSTORE_MULTIPART_THRESHOLD. Content this project already holds needs no upload."""

    @extend_schema(
        request=DirectUploadSerializer, responses={200: DirectUploadStartSerializer, 201: DirectUploadStartSerializer}
    )
    def post(self, request, run_ref):
        run = self.get_run()
        data = DirectUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body, started = services.start_direct_upload(request.user, run, **data.validated_data)
        return Response(body, status=status.HTTP_201_CREATED if started else status.HTTP_200_OK)


class DirectUploadCompleteView(RunScopedView):
    """Finish a direct upload: Runstore reads the object back (streamed), checks its SHA-256 and size,
    and moves it to its content address."""

    @extend_schema(request=CompleteUploadSerializer, responses={201: UploadResultSerializer})
    def post(self, request, run_ref, upload_id):
        run = self.get_run()
        data = CompleteUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = services.complete_upload(request.user, run, upload_id, parts=data.validated_data.get("parts"))
        return Response(body, status=status.HTTP_201_CREATED)

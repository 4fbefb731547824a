import uuid as uuid_module

from django.db.models import Prefetch
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from projects.services import resolve_project
from tracker.api.views import ScopedGenericAPIView

from .. import series as series_store
from .. import services
from ..attributes import run_fields
from ..downloads import ranged_response
from ..errors import ApiError
from ..models import Attribute, AttributeType, FileEntry, Run
from ..paths import PathError, validate_path
from ..storage import open_blob
from .serializers import (
    BatchResultSerializer,
    BatchSerializer,
    FileQuerySerializer,
    PointsQuerySerializer,
    RunCreateSerializer,
    RunSerializer,
    RunUpdateSerializer,
    SeriesQuerySerializer,
)


class RunPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 1000


def _tags_prefetch():
    return Prefetch("attributes", queryset=Attribute.objects.filter(path="sys/tags"), to_attr="tag_attributes")


class RunScopedView(ScopedGenericAPIView):
    """Views of one run, addressed by UUID or ``workspace/project/KEY-N``."""

    def scoped_queryset(self):
        return Run.objects.for_user(self.request.user, "view").with_related()

    def get_run(self) -> Run:
        ref = self.kwargs["run_ref"]
        queryset = self.get_queryset()
        if "/" in ref:
            workspace, project, human = ref.split("/")
            key, number = human.rsplit("-", 1)
            queryset = queryset.filter(
                project__workspace__slug=workspace, project__slug=project, project__key=key, number=int(number)
            )
        else:
            queryset = queryset.filter(uuid=uuid_module.UUID(ref))
        run = queryset.first()
        if run is None:
            raise Http404(f"run {ref!r} not found")
        return run

    def get_attribute(self, run: Run, path: str, types=None) -> Attribute:
        try:
            validate_path(path)
        except PathError as exc:
            raise ValidationError({"path": f"invalid path: {exc}"}) from None
        attr = Attribute.objects.filter(run=run, path=path).first()
        if attr is None:
            raise Http404(f"run {run.human_id} has no field {path!r}")
        if types and attr.type not in types:
            raise ApiError(
                409, "wrong_type", f"field {path!r} is a {attr.type}, not a {' or '.join(sorted(types))}",
                field="path", path=path, stored_type=attr.type,
            )
        return attr

    def query(self, serializer_class):
        data = serializer_class(data=self.request.query_params)
        data.is_valid(raise_exception=True)
        return data.validated_data


class RunListView(ScopedGenericAPIView):
    serializer_class = RunSerializer
    pagination_class = RunPagination

    def scoped_queryset(self):
        queryset = Run.objects.for_user(self.request.user, "view").with_related().prefetch_related(_tags_prefetch())
        project = self.request.query_params.get("project")
        if project:
            resolved = resolve_project(self.request.user, project)
            queryset = queryset.filter(project=resolved)
        state = self.request.query_params.get("state")
        if state:
            queryset = queryset.filter(state=state)
        return queryset.order_by("-created_at", "-id")

    @extend_schema(
        parameters=[
            OpenApiParameter("project", str, description="'workspace/project'"),
            OpenApiParameter("state", str, enum=["running", "finished", "failed", "aborted"]),
        ]
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(RunSerializer(page, many=True).data)

    @extend_schema(request=RunCreateSerializer, responses={201: RunSerializer, 200: RunSerializer})
    def post(self, request):
        data = RunCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        project = resolve_project(request.user, values.pop("project"), create=True)
        run, created = services.create_run(request.user, project, **values)
        run = Run.objects.with_related().get(pk=run.pk)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class RunDetailView(RunScopedView):
    serializer_class = RunSerializer

    def get(self, request, run_ref):
        return Response(RunSerializer(self.get_run()).data)

    @extend_schema(request=RunUpdateSerializer, responses=RunSerializer)
    def patch(self, request, run_ref):
        run = self.get_run()
        data = RunUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.update_run(request.user, run, **data.validated_data)
        return Response(RunSerializer(run).data)

    def delete(self, request, run_ref):
        services.delete_run(request.user, self.get_run())
        return Response(status=status.HTTP_204_NO_CONTENT)


class RunPingView(RunScopedView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request, run_ref):
        services.ping_run(request.user, self.get_run())
        return Response(status=status.HTTP_204_NO_CONTENT)


class RunBatchView(RunScopedView):
    @extend_schema(request=BatchSerializer, responses=BatchResultSerializer)
    def post(self, request, run_ref):
        run = self.get_run()
        services.permissions.require(request.user, "write", run.project)
        body = request.data
        if not isinstance(body, dict):
            raise ApiError(400, "invalid", "the body must be an object with stream, seq and ops")
        stream, seq = body.get("stream"), body.get("seq")
        if not isinstance(stream, str) or not 1 <= len(stream) <= 64:
            raise ApiError(400, "invalid", "stream: must be a string of 1-64 characters", field="stream")
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63:
            raise ApiError(400, "invalid", "seq: must be an integer from 0 to 2**63-1", field="seq")
        if "ops" not in body:
            raise ApiError(400, "invalid", "ops: is required", field="ops")
        result = services.apply_batch(run, stream=stream, seq=seq, raw_ops=body["ops"])
        return Response(result)


class RunAttributesView(RunScopedView):
    @extend_schema(parameters=[OpenApiParameter("prefix", str, description="only paths under this namespace")])
    def get(self, request, run_ref):
        run = self.get_run()
        attributes = Attribute.objects.filter(run=run)
        prefix = request.query_params.get("prefix")
        if prefix:
            attributes = attributes.filter(path__startswith=prefix.rstrip("/") + "/")
        fields = run_fields(run, attributes.order_by("path"))
        if prefix:
            fields = [f for f in fields if f["path"].startswith(prefix.rstrip("/") + "/")]
        return Response({"id": run.human_id, "fields": fields})


class SeriesView(RunScopedView):
    """Downsampled float series: at most ``buckets`` buckets over a step range."""

    @extend_schema(parameters=[SeriesQuerySerializer])
    def get(self, request, run_ref):
        query = self.query(SeriesQuerySerializer)
        run = self.get_run()
        attr = self.get_attribute(run, query["path"], {AttributeType.FLOAT_SERIES})
        data = series_store.downsample(
            attr.pk, attr.first_step, attr.last_step, query["buckets"], query.get("from_step"), query.get("to_step")
        )
        return Response({"path": attr.path, "count": attr.count, **data})


class SeriesPointsView(RunScopedView):
    """Raw points of a float or string series, paged by step."""

    @extend_schema(parameters=[PointsQuerySerializer])
    def get(self, request, run_ref):
        query = self.query(PointsQuerySerializer)
        run = self.get_run()
        attr = self.get_attribute(run, query["path"], {AttributeType.FLOAT_SERIES, AttributeType.STRING_SERIES})
        table = series_store.FLOAT_TABLE if attr.type == AttributeType.FLOAT_SERIES else series_store.STRING_TABLE
        data = series_store.read_points(
            attr.pk, table, after_step=query.get("after_step"), from_step=query.get("from_step"),
            to_step=query.get("to_step"), limit=query["limit"],
        )
        return Response({"path": attr.path, "type": attr.type, **data})


class UploadView(RunScopedView):
    """Upload a file (multipart field ``file``); returns its SHA-256 to use in ``upload`` operations."""

    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}, "sha256": {"type": "string"}}}},
        responses={201: dict},
    )
    def post(self, request, run_ref):
        run = self.get_run()
        services.permissions.require(request.user, "write", run.project)
        uploaded = request.FILES.get("file")
        if uploaded is None:
            raise ApiError(400, "invalid", "file: a multipart field named 'file' is required", field="file")
        expected = request.data.get("sha256")
        if expected:
            uploaded.expected_sha256 = expected
        blob = services.store_upload(request.user, run, uploaded)
        return Response({"sha256": blob.sha256, "size": blob.size, "mime_type": blob.mime_type}, status=status.HTTP_201_CREATED)


class FileListView(RunScopedView):
    @extend_schema(parameters=[OpenApiParameter("path", str, required=True)])
    def get(self, request, run_ref):
        path = request.query_params.get("path") or ""
        run = self.get_run()
        attr = self.get_attribute(run, path, {AttributeType.FILE, AttributeType.FILE_SET, AttributeType.FILE_SERIES})
        entries = FileEntry.objects.filter(attribute=attr).order_by("step", "relpath")[:10_000]
        return Response({
            "path": attr.path,
            "type": attr.type,
            "files": [
                {"relpath": e.relpath, "step": e.step, "name": e.name, "size": e.size, "sha256": e.blob_id, "mime_type": e.mime_type}
                for e in entries
            ],
        })


class FileDownloadView(RunScopedView):
    """Stream a file of a field; supports HTTP Range requests."""

    @extend_schema(parameters=[FileQuerySerializer], responses={(200, "application/octet-stream"): bytes})
    def get(self, request, run_ref):
        query = self.query(FileQuerySerializer)
        run = self.get_run()
        attr = self.get_attribute(run, query["path"], {AttributeType.FILE, AttributeType.FILE_SET, AttributeType.FILE_SERIES})
        entries = FileEntry.objects.filter(attribute=attr).select_related("blob")
        if attr.type == AttributeType.FILE_SET:
            if not query.get("relpath"):
                raise ApiError(400, "invalid", "relpath: required for a file set", field="relpath")
            entries = entries.filter(relpath=query["relpath"])
        elif attr.type == AttributeType.FILE_SERIES:
            if "step" not in query:
                raise ApiError(400, "invalid", "step: required for a file series", field="step")
            entries = entries.filter(step=query["step"])
        entry = entries.first()
        if entry is None:
            raise Http404("no such file in this field")
        return ranged_response(
            request, open_blob(entry.blob.storage_key), size=entry.size, content_type=entry.mime_type,
            filename=entry.name or entry.relpath.rsplit("/", 1)[-1] or attr.path.rsplit("/", 1)[-1],
        )

import json
import uuid as uuid_module

from django.db.models import Prefetch
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from projects.services import resolve_project
from tracker.api.views import ScopedGenericAPIView

from .. import series as series_store
from .. import services
from ..attributes import run_fields
from ..downloads import ranged_response
from ..errors import ApiError
from ..models import Attribute, AttributeType, FileEntry, Run
from ..paths import PathError, safe_file_name, safe_relpath, validate_path
from ..query import (
    QueryError,
    QuerySyntaxError,
    QueryTimeout,
    RunQuery,
    parse_list,
    project_fields,
    query_budget,
    suggest,
)
from ..query.budget import retry_after_seconds
from ..storage import open_blob
from .serializers import (
    SUGGESTIONS_SCHEMA,
    BatchResultSerializer,
    BatchSerializer,
    FileListSerializer,
    FileQuerySerializer,
    PointsQuerySerializer,
    RunAttributesSerializer,
    RunCreateSerializer,
    RunFieldsRequestSerializer,
    RunFieldsSerializer,
    RunGroupsRequestSerializer,
    RunGroupsSerializer,
    RunPageSerializer,
    RunQueryRequestSerializer,
    RunSerializer,
    RunSuggestRequestSerializer,
    RunUpdateSerializer,
    SeriesBucketsSerializer,
    SeriesPointsSerializer,
    SeriesQuerySerializer,
    UploadResultSerializer,
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

    def get_file_entry(self):
        """The file a request names: ``path``, plus ``relpath`` for a file set or ``step`` for a file series."""
        query = self.query(FileQuerySerializer)
        run = self.get_run()
        attr = self.get_attribute(run, query["path"], {AttributeType.FILE, AttributeType.FILE_SET, AttributeType.FILE_SERIES})
        entries = FileEntry.objects.filter(attribute=attr).select_related("blob")
        if attr.type == AttributeType.FILE_SET:
            if not query.get("relpath"):
                raise ApiError(400, "invalid", "relpath: required for a file set", field="relpath")
            wanted = query["relpath"]
            if not entries.filter(relpath=wanted).exists():
                # A file set stored before relpaths were checked is listed under its sanitised relpath.
                legacy = [pk for pk, relpath in entries.values_list("pk", "relpath") if safe_relpath(relpath) == wanted]
                entries = entries.filter(pk__in=legacy[:1])
            else:
                entries = entries.filter(relpath=wanted)
        elif attr.type == AttributeType.FILE_SERIES:
            if "step" not in query:
                raise ApiError(400, "invalid", "step: required for a file series", field="step")
            entries = entries.filter(step=query["step"])
        entry = entries.first()
        if entry is None:
            raise Http404("no such file in this field")
        return run, attr, entry

    def query(self, serializer_class):
        data = serializer_class(data=self.request.query_params)
        data.is_valid(raise_exception=True)
        return data.validated_data


def _query_error(exc, field="query"):
    return ApiError(
        400, "invalid_query", str(exc), field=getattr(exc, "field", None) or field, position=exc.position,
        expected=getattr(exc, "expected", None),
    )


def _query_answer(fn, field="query"):
    """Run the query engine's reads within RUNSTORE_QUERY_TIMEOUT_MS: a query error is a 400 naming
    the parameter, a read past the budget a 503 with Retry-After."""
    try:
        with query_budget():
            return fn()
    except (QueryError, QuerySyntaxError) as exc:
        raise _query_error(exc, field) from None
    except QueryTimeout as exc:
        raise ApiError(
            503, "query_timeout", exc.message, field="query", timeout_ms=exc.budget_ms,
            headers={"Retry-After": str(retry_after_seconds())},
        ) from None


def _query_params(request, serializer_class=None):
    """The query parameters: the URL's for GET; for POST the JSON body (checked by ``serializer_class``),
    where ``limit``/``offset`` in the URL (the ``next`` link of a page) override the body's."""
    if request.method != "POST":
        return request.query_params
    if not isinstance(request.data, dict):
        raise ApiError(400, "invalid", "the body must be a JSON object of query parameters", field="body")
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    params = dict(data.validated_data)
    for name in ("limit", "offset"):
        if name in request.query_params:
            params[name] = request.query_params[name]
    return params


def _run_query(user, params, project, **extra) -> RunQuery:
    return RunQuery(
        user, project,
        query=params.get("query", "") or "",
        sort=parse_list(params.get("sort")) or ["-sys/creation_time"],
        columns=parse_list(params.get("columns")),
        group_by=parse_list(params.get("group_by")),
        group=_group_key(params.get("group")),
        aggregates=parse_list(params.get("aggregates")),
        **extra,
    )


def _group_key(raw):
    if raw in (None, ""):
        return None
    if isinstance(raw, list):
        return raw
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, ValueError):
        raise ApiError(400, "invalid", "group: must be a JSON list with one value per group_by field", field="group") from None
    if not isinstance(value, list):
        raise ApiError(400, "invalid", "group: must be a JSON list", field="group")
    return value


MAX_OFFSET = 2**62


def _int_param(params, name, default, minimum=0, maximum=None):
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        if isinstance(raw, (bool, float)):
            raise ValueError
        value = int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, "invalid", f"{name}: must be an integer", field=name) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ApiError(400, "invalid", f"{name}: must be between {minimum} and {maximum}", field=name)
    return value


class RunListView(ScopedGenericAPIView):
    """Runs, newest first; with ``project``, the query engine filters, sorts and picks columns."""

    serializer_class = RunSerializer
    pagination_class = RunPagination

    def scoped_queryset(self):
        queryset = Run.objects.for_user(self.request.user, "view").with_related().prefetch_related(_tags_prefetch())
        state = self.request.query_params.get("state")
        if state:
            queryset = queryset.filter(state=state)
        return queryset.order_by("-created_at", "-id")

    @extend_schema(
        parameters=[
            OpenApiParameter("project", str, description="'workspace/project'; enables query, sort and columns"),
            OpenApiParameter("query", str, description="filter in the query language (README)"),
            OpenApiParameter("sort", str, description="comma-separated fields, '-' for descending (default -sys/creation_time)"),
            OpenApiParameter("columns", str, description="comma-separated fields (or a JSON list) returned in 'fields'"),
            OpenApiParameter("group_by", str, description="with 'group': list the runs of one group"),
            OpenApiParameter("group", str, description="JSON list: the group key"),
            OpenApiParameter("state", str, enum=["running", "finished", "failed", "aborted"]),
            OpenApiParameter("limit", int),
            OpenApiParameter("offset", int),
        ],
        responses=RunPageSerializer,
        operation_id="runs_list",
    )
    def get(self, request):
        if not request.query_params.get("project"):
            page = self.paginate_queryset(self.get_queryset())
            return self.get_paginated_response(RunSerializer(page, many=True).data)
        return run_query_page(request, request.query_params)

    @extend_schema(request=RunCreateSerializer, responses={201: RunSerializer, 200: RunSerializer})
    def post(self, request):
        data = RunCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        project = resolve_project(request.user, values.pop("project"), create=True)
        run, created = services.create_run(request.user, project, **values)
        run = Run.objects.with_related().get(pk=run.pk)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


def run_query_page(request, params):
    """One page of the query engine's runs (``GET /runs/?project=`` and ``POST /runs/query``)."""
    project = resolve_project(request.user, params.get("project"))
    limit = _int_param(params, "limit", 50, 1, 1000)
    offset = _int_param(params, "offset", 0, 0, MAX_OFFSET)
    state = params.get("state")

    def fetch():
        engine = _run_query(request.user, params, project)
        queryset = engine.ordered()
        if state:
            queryset = queryset.filter(state=state)
        runs = list(queryset.select_related("owner", "project", "project__workspace").prefetch_related(_tags_prefetch())[offset : offset + limit])
        count = queryset.count() if len(runs) == limit or offset else offset + len(runs)
        rows = engine.rows(runs) if engine.columns else None
        return engine, runs, count, rows

    engine, runs, count, rows = _query_answer(fetch)
    results = RunSerializer(runs, many=True).data
    if rows is not None:
        for item, row in zip(results, rows, strict=True):
            item["fields"] = row["fields"]
    # a POSTed query pages by POSTing the same body to "next" (its limit/offset override the body's)
    base = request.build_absolute_uri()
    if request.method == "POST":
        base = replace_query_param(base, "limit", limit)
    return Response({
        "count": count,
        "next": replace_query_param(base, "offset", offset + limit) if offset + limit < count else None,
        "previous": replace_query_param(base, "offset", max(0, offset - limit)) if offset else None,
        "query": engine.query,
        "columns": engine.column_types() if engine.columns else [],
        "warnings": engine.warnings,
        "results": results,
    })


class RunQueryView(ScopedGenericAPIView):
    """The run list's query (``GET /runs/?project=...``) as a POST with a JSON body, for queries
    longer than a URL may be."""

    def scoped_queryset(self):
        return Run.objects.for_user(self.request.user, "view")

    @extend_schema(request=RunQueryRequestSerializer, responses=RunPageSerializer, operation_id="runs_query")
    def post(self, request):
        return run_query_page(request, _query_params(request, RunQueryRequestSerializer))


class _ProjectQueryView(ScopedGenericAPIView):
    def scoped_queryset(self):
        return Run.objects.for_user(self.request.user, "view")

    def project(self, params=None):
        params = self.request.query_params if params is None else params
        name = params.get("project")
        if not name:
            raise ApiError(400, "invalid", "project: required ('workspace/project')", field="project")
        return resolve_project(self.request.user, name)


class RunGroupsView(_ProjectQueryView):
    """Groups of runs by one or more fields, with counts and aggregates (GET, or POST with a JSON body)."""

    @extend_schema(parameters=[
        OpenApiParameter("project", str, required=True), OpenApiParameter("query", str),
        OpenApiParameter("group_by", str, required=True), OpenApiParameter("aggregates", str),
        OpenApiParameter("limit", int),
    ], responses=RunGroupsSerializer)
    def get(self, request):
        return self.answer(request.query_params)

    @extend_schema(request=RunGroupsRequestSerializer, responses=RunGroupsSerializer, operation_id="runs_groups_query")
    def post(self, request):
        return self.answer(_query_params(request, RunGroupsRequestSerializer))

    def answer(self, params):
        project = self.project(params)
        if not parse_list(params.get("group_by")):
            raise ApiError(400, "invalid", "group_by: required", field="group_by")
        limit = _int_param(params, "limit", 100, 1, 1000)

        def fetch():
            engine = _run_query(self.request.user, params, project)
            try:
                return engine, engine.groups(limit)
            except QueryError as exc:
                raise _query_error(exc, "group_by") from None

        engine, groups = _query_answer(fetch)
        return Response({"group_by": engine.group_by, "groups": groups, "warnings": engine.warnings})


class RunSuggestView(_ProjectQueryView):
    """What the query editor can offer at the cursor: paths, operators or values (GET, or POST with a JSON body)."""

    @extend_schema(parameters=[OpenApiParameter("project", str, required=True), OpenApiParameter("text", str), OpenApiParameter("cursor", int)], responses={200: SUGGESTIONS_SCHEMA})
    def get(self, request):
        return self.answer(request.query_params)

    @extend_schema(request=RunSuggestRequestSerializer, responses={200: SUGGESTIONS_SCHEMA}, operation_id="runs_suggest_query")
    def post(self, request):
        return self.answer(_query_params(request, RunSuggestRequestSerializer))

    def answer(self, params):
        project = self.project(params)
        text = params.get("text", "") or ""
        if len(text) > 10_000:
            raise ApiError(400, "invalid", "text: longer than 10000 characters", field="text")
        cursor = _int_param(params, "cursor", len(text), 0, len(text))
        return Response(_query_answer(lambda: suggest(project, text, cursor), field="text"))


class RunFieldsView(_ProjectQueryView):
    """The project's field paths with their types (sys fields first), for column pickers (GET, or POST with a JSON body)."""

    @extend_schema(parameters=[OpenApiParameter("project", str, required=True), OpenApiParameter("search", str), OpenApiParameter("limit", int)], responses=RunFieldsSerializer)
    def get(self, request):
        return self.answer(request.query_params)

    @extend_schema(request=RunFieldsRequestSerializer, responses=RunFieldsSerializer, operation_id="runs_fields_query")
    def post(self, request):
        return self.answer(_query_params(request, RunFieldsRequestSerializer))

    def answer(self, params):
        project = self.project(params)
        limit = _int_param(params, "limit", 200, 1, 5000)
        search = params.get("search", "") or ""
        return Response({"fields": _query_answer(lambda: project_fields(project, search, limit), field="search")})


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
    """One ingestion batch. Called for every batch a client sends, so the run is found by key and
    the caller's rights on its project are checked in one more query (404 unless visible, 403
    unless writable) instead of a scoped look-up plus a second permission query."""

    def scoped_queryset(self):
        # Scoped by get_run() right after the look-up: see require_on_project.
        return Run.objects.filter(deleted_at__isnull=True)

    def get_run(self) -> Run:
        run = super().get_run()
        services.permissions.require_on_project(
            self.request.user, "write", run.project_id, not_found=f"run {self.kwargs['run_ref']!r} not found"
        )
        return run

    @extend_schema(request=BatchSerializer, responses=BatchResultSerializer)
    def post(self, request, run_ref):
        run = self.get_run()
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
    @extend_schema(parameters=[OpenApiParameter("prefix", str, description="only paths under this namespace")], responses=RunAttributesSerializer)
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

    @extend_schema(parameters=[SeriesQuerySerializer], responses=SeriesBucketsSerializer)
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

    @extend_schema(parameters=[PointsQuerySerializer], responses=SeriesPointsSerializer)
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
        responses={201: UploadResultSerializer},
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
        # What this caller sent, never what the shared blob row says (another project may have made it).
        body = {"sha256": blob.sha256, "size": uploaded.size, "name": services.upload_name(uploaded), "mime_type": services.upload_mime_type(uploaded)}
        return Response(body, status=status.HTTP_201_CREATED)


class FileListView(RunScopedView):
    @extend_schema(parameters=[OpenApiParameter("path", str, required=True)], responses=FileListSerializer)
    def get(self, request, run_ref):
        path = request.query_params.get("path") or ""
        run = self.get_run()
        attr = self.get_attribute(run, path, {AttributeType.FILE, AttributeType.FILE_SET, AttributeType.FILE_SERIES})
        entries = FileEntry.objects.filter(attribute=attr).order_by("step", "relpath")[:10_000]
        return Response({
            "path": attr.path,
            "type": attr.type,
            "files": [
                # Names and relpaths are safe to write into a folder, also those stored before the rules.
                {
                    "relpath": safe_relpath(e.relpath), "step": e.step, "name": safe_file_name(e.name, fallback=""),
                    "size": e.size, "sha256": e.blob_id, "mime_type": e.mime_type,
                }
                for e in entries
            ],
        })


class FileDownloadView(RunScopedView):
    """Stream a file of a field; supports HTTP Range requests."""

    @extend_schema(parameters=[FileQuerySerializer], responses={(200, "application/octet-stream"): bytes})
    def get(self, request, run_ref):
        run, attr, entry = self.get_file_entry()
        return ranged_response(
            request, open_blob(entry.blob.storage_key), size=entry.size, content_type=entry.mime_type,
            filename=safe_file_name(entry.name or entry.relpath, fallback=attr.path.rsplit("/", 1)[-1]),
        )

from django.db.models import Count, Window
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from projects import permissions
from projects.services import resolve_project
from tracker.api.views import ScopedGenericAPIView
from tracker.params import int_param

from ... import services
from ...attributes import run_fields
from ...models import Attribute, Run, RunState
from ...query.engine import OrderedRuns
from ..serializers import (
    BatchResultSerializer,
    BatchSerializer,
    RunAttributesSerializer,
    RunCreateSerializer,
    RunPageSerializer,
    RunQueryRequestSerializer,
    RunSerializer,
    RunUpdateSerializer,
)
from .base import (
    MAX_OFFSET,
    RunPagination,
    RunScopedView,
    _query_answer,
    _query_params,
    _run_query,
    _tags_prefetch,
)


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
            OpenApiParameter(
                "sort", str, description="comma-separated fields, '-' for descending (default -sys/creation_time)"
            ),
            OpenApiParameter(
                "columns", str, description="comma-separated fields (or a JSON list) returned in 'fields'"
            ),
            OpenApiParameter("group_by", str, description="with 'group': list the runs of one group"),
            OpenApiParameter("group", str, description="JSON list: the group key"),
            OpenApiParameter("state", str, enum=RunState.values),
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
        # The project's rights are read once: to find it (view), then by the service (write).
        with permissions.remember_actions():
            project = resolve_project(request.user, values.pop("project"), create=True)
            run, created = services.create_run(request.user, project, **values)
        if not created:
            run = Run.objects.with_related().get(pk=run.pk)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


def run_query_page(request, params):
    """One page of the query engine's runs (``GET /runs/?project=`` and ``POST /runs/query``)."""
    with permissions.remember_actions():  # the project's check answers the engine's too
        return _run_query_page(request, params)


def _run_query_page(request, params):
    project = resolve_project(request.user, params.get("project"))
    limit = int_param(params, "limit", 50, minimum=1, maximum=1000)
    offset = int_param(params, "offset", 0, minimum=0, maximum=MAX_OFFSET)
    state = params.get("state")

    def fetch():
        engine = _run_query(request.user, params, project)
        queryset = engine.ordered()
        if state:
            queryset = queryset.filter(state=state)
        page = queryset.select_related("owner")
        if not engine.columns:
            page = page.prefetch_related(_tags_prefetch())  # with columns, rows() reads the tags alongside
        # A filtered page counts its matches in the same statement (COUNT(*) OVER ()): the filter is
        # evaluated once, not again for the count. Unfiltered, the page reads a few entries of the
        # (project, created_at) index and the count is a scan of its own, cheaper than sorting all.
        counted = bool(engine.filter_q or state) and not isinstance(queryset, OrderedRuns)
        if counted:
            page = page.annotate(matches=Window(Count("pk")))
        runs = list(page[offset : offset + limit])
        for run in runs:
            run.project = project  # every run is of this project: no join for it
        if counted and runs:
            count = runs[0].matches
        else:
            count = queryset.count() if len(runs) == limit or offset else offset + len(runs)
        rows = engine.rows(runs, tags=True) if engine.columns else None
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
    return Response(
        {
            "count": count,
            "next": replace_query_param(base, "offset", offset + limit) if offset + limit < count else None,
            "previous": replace_query_param(base, "offset", max(0, offset - limit)) if offset else None,
            "query": engine.query,
            "columns": engine.column_types() if engine.columns else [],
            "warnings": engine.warnings,
            "results": results,
        }
    )


class RunQueryView(ScopedGenericAPIView):
    """The run list's query (``GET /runs/?project=...``) as a POST with a JSON body, for queries
    longer than a URL may be."""

    def scoped_queryset(self):
        return Run.objects.for_user(self.request.user, "view")

    @extend_schema(request=RunQueryRequestSerializer, responses=RunPageSerializer, operation_id="runs_query")
    def post(self, request):
        return run_query_page(request, _query_params(request, RunQueryRequestSerializer))


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
    the service checks the caller's rights on its project in one more query (404 unless visible,
    403 unless writable) instead of a scoped look-up plus a second permission query."""

    def scoped_queryset(self):
        # The storage quota's admission reads the run's workspace and its quota row: in this statement.
        return Run.objects.for_user(self.request.user, "write", deferred=True).select_related(
            "project__workspace__quota"
        )

    @extend_schema(request=BatchSerializer, responses=BatchResultSerializer)
    def post(self, request, run_ref):
        result = services.apply_batch_body(request.user, self.get_run(), request.data, ref=run_ref)
        return Response(result)


class RunAttributesView(RunScopedView):
    @extend_schema(
        parameters=[OpenApiParameter("prefix", str, description="only paths under this namespace")],
        responses=RunAttributesSerializer,
    )
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

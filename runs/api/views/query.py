from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from projects import permissions
from projects.services import resolve_project
from tracker.api.views import ScopedGenericAPIView
from tracker.params import int_param

from ...errors import ApiError
from ...models import Run
from ...query import (
    QueryError,
    parse_list,
    project_fields,
    suggest,
)
from ..serializers import (
    SUGGESTIONS_SCHEMA,
    RunFieldsRequestSerializer,
    RunFieldsSerializer,
    RunGroupsRequestSerializer,
    RunGroupsSerializer,
    RunSuggestRequestSerializer,
)
from .base import _query_answer, _query_error, _query_params, _run_query


class _ProjectQueryView(ScopedGenericAPIView):
    def scoped_queryset(self):
        return Run.objects.for_user(self.request.user, "view")

    def dispatch(self, request, *args, **kwargs):
        with permissions.remember_actions():  # the project's check answers the engine's too
            return super().dispatch(request, *args, **kwargs)

    def project(self, params=None):
        params = self.request.query_params if params is None else params
        name = params.get("project")
        if not name:
            raise ApiError(400, "invalid", "project: required ('workspace/project')", field="project")
        return resolve_project(self.request.user, name)


class RunGroupsView(_ProjectQueryView):
    """Groups of runs by one or more fields, with counts and aggregates (GET, or POST with a JSON body)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("project", str, required=True),
            OpenApiParameter("query", str),
            OpenApiParameter("group_by", str, required=True),
            OpenApiParameter("aggregates", str),
            OpenApiParameter("limit", int),
        ],
        responses=RunGroupsSerializer,
    )
    def get(self, request):
        return self.answer(request.query_params)

    @extend_schema(request=RunGroupsRequestSerializer, responses=RunGroupsSerializer, operation_id="runs_groups_query")
    def post(self, request):
        return self.answer(_query_params(request, RunGroupsRequestSerializer))

    def answer(self, params):
        project = self.project(params)
        if not parse_list(params.get("group_by")):
            raise ApiError(400, "invalid", "group_by: required", field="group_by")
        limit = int_param(params, "limit", 100, minimum=1, maximum=1000)

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

    @extend_schema(
        parameters=[
            OpenApiParameter("project", str, required=True),
            OpenApiParameter("text", str),
            OpenApiParameter("cursor", int),
        ],
        responses={200: SUGGESTIONS_SCHEMA},
    )
    def get(self, request):
        return self.answer(request.query_params)

    @extend_schema(
        request=RunSuggestRequestSerializer, responses={200: SUGGESTIONS_SCHEMA}, operation_id="runs_suggest_query"
    )
    def post(self, request):
        return self.answer(_query_params(request, RunSuggestRequestSerializer))

    def answer(self, params):
        project = self.project(params)
        text = params.get("text", "") or ""
        if len(text) > 10_000:
            raise ApiError(400, "invalid", "text: longer than 10000 characters", field="text")
        cursor = int_param(params, "cursor", len(text), minimum=0, maximum=len(text))
        return Response(_query_answer(lambda: suggest(project, text, cursor), field="text"))


class RunFieldsView(_ProjectQueryView):
    """The project's field paths with their types (sys fields first), for column pickers (GET, or POST with a JSON body)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("project", str, required=True),
            OpenApiParameter("search", str),
            OpenApiParameter("limit", int),
        ],
        responses=RunFieldsSerializer,
    )
    def get(self, request):
        return self.answer(request.query_params)

    @extend_schema(request=RunFieldsRequestSerializer, responses=RunFieldsSerializer, operation_id="runs_fields_query")
    def post(self, request):
        return self.answer(_query_params(request, RunFieldsRequestSerializer))

    def answer(self, params):
        project = self.project(params)
        limit = int_param(params, "limit", 200, minimum=1, maximum=5000)
        search = params.get("search", "") or ""
        return Response({"fields": _query_answer(lambda: project_fields(project, search, limit), field="search")})

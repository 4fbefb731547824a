"""REST endpoints of a workspace's artifacts and of the records for compliance: the workspace-wide
artifact list, a version's whole lineage as a ZIP, and GDPR erasures (of listed runs, or of every run
that consumed a version) with their records.

Every answer is scoped by the permission module: artifacts and versions are known only through runs
the caller may view; an erasure needs ``manage`` on each project it touches (checked for all of them
before anything is deleted) and is carried out by ``runs.services`` within the request, so the
record it answers with is final; reading a record takes ``manage`` on its project.
"""

from django.db.models import Q
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from projects import permissions
from projects.models import Workspace
from projects.services import resolve_project
from tracker.api.views import ScopedGenericAPIView

from .. import services
from ..api.views.base import MAX_OFFSET
from ..errors import ApiError
from ..models import Erasure, Run
from ..refs import parse_run_ref
from . import erasure, listing, queries, records
from .serializers import (
    ArtifactListQuerySerializer,
    ArtifactSummarySerializer,
    ConsumersErasureRequestSerializer,
    ConsumersPlanSerializer,
    ErasureListSerializer,
    ErasureRequestSerializer,
    ErasureSerializer,
)


class ArtifactPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000

    def get_offset(self, request):
        return min(super().get_offset(request), MAX_OFFSET)  # beyond 64 bits the databases refuse it


def _no_nul(*values: str) -> None:
    """A NUL in a path segment names nothing (and PostgreSQL refuses it in a text parameter)."""
    if any("\x00" in v for v in values):
        raise Http404("not found")


class _Body:
    def body(self, serializer_class):
        if not isinstance(self.request.data, dict):
            raise ApiError(400, "invalid", "the body must be a JSON object", field="body")
        data = serializer_class(data=self.request.data)
        data.is_valid(raise_exception=True)
        return data.validated_data


class WorkspaceArtifactsView(ScopedGenericAPIView):
    """A workspace's named artifacts, by name: versions, size, newest version, consumers and producers,
    all counted over runs the caller may view."""

    pagination_class = ArtifactPagination

    def scoped_queryset(self):
        return queries.visible_links(self.request.user)

    @extend_schema(
        parameters=[OpenApiParameter("name", str, description="only names containing this (any case)")],
        responses=ArtifactSummarySerializer(many=True),
    )
    def get(self, request, workspace):
        params = ArtifactListQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        _no_nul(workspace, params.validated_data.get("name", ""))
        ws = Workspace.objects.for_user(request.user, "view").filter(slug=workspace).first()
        if ws is None:
            raise Http404(f"workspace {workspace!r} not found")
        links = listing.workspace_links(request.user, ws)
        page = self.paginate_queryset(listing.artifact_rows(links, params.validated_data.get("name", "")))
        rows = [listing.summary_json(s) for s in listing.summaries(links, page)]
        return self.get_paginated_response(ArtifactSummarySerializer(rows, many=True).data)


class VersionLineageRecordView(ScopedGenericAPIView):
    """A version's whole lineage as one ZIP for an audit: the version and its files, the runs that
    produced and consumed it and the chain back from the producers, each run with fields, series,
    files, lineage and audit entries. Runs of projects without the export right are listed as left
    out; runs the caller cannot see are never named. Audited as ``export.lineage``."""

    def scoped_queryset(self):
        return queries.visible_links(self.request.user)

    @extend_schema(responses={(200, "application/zip"): bytes})
    def get(self, request, workspace, digest):
        _no_nul(workspace, digest)
        return records.response(request.user, workspace, digest)


def _plan_json(plan: dict) -> dict:
    return {
        "workspace": plan["workspace"].slug,
        "hash": plan["version"].hash,
        "name": plan["name"] or None,
        "count": plan["count"],
        "runs": [queries.run_json(run) for _project, group in plan["groups"] for run in group],
    }


class ConsumersErasureView(_Body, ScopedGenericAPIView):
    """Delete for good every run that consumed a version (GDPR): GET says which runs would go, POST
    (with a reason) deletes them, one erasure record per project. Needs ``manage`` on every project of
    those runs; the runs the caller cannot see are neither listed nor touched."""

    def scoped_queryset(self):
        return queries.visible_links(self.request.user)

    @extend_schema(responses=ConsumersPlanSerializer)
    def get(self, request, workspace, digest):
        _no_nul(workspace, digest)
        return Response(_plan_json(erasure.consumers_plan(request.user, workspace, digest)))

    @extend_schema(request=ConsumersErasureRequestSerializer, responses={201: ErasureListSerializer})
    def post(self, request, workspace, digest):
        _no_nul(workspace, digest)
        plan = erasure.consumers_plan(request.user, workspace, digest)
        values = self.body(ConsumersErasureRequestSerializer)
        made = erasure.erase_consumers(request.user, plan, values["reason"])
        return Response({"erasures": ErasureSerializer(made, many=True).data}, status=status.HTTP_201_CREATED)


def _erasures(user):
    return permissions.scope_by_project(Erasure.objects.all(), user, "view")


class ErasureListView(_Body, ScopedGenericAPIView):
    """GDPR erasures: POST deletes the listed runs for good now (one record per project); GET lists a
    project's records, newest first."""

    pagination_class = ArtifactPagination

    def scoped_queryset(self):
        return _erasures(self.request.user)

    @extend_schema(request=ErasureRequestSerializer, responses={201: ErasureListSerializer})
    def post(self, request):
        values = self.body(ErasureRequestSerializer)
        runs = _resolve_runs(request.user, values["runs"])
        subject = f"run{'s' if len(runs) > 1 else ''} {', '.join(r.human_id for r in runs)}"
        made = services.erase_runs_by_project(request.user, runs, reason=values["reason"], subject=subject)
        return Response({"erasures": ErasureSerializer(made, many=True).data}, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[OpenApiParameter("project", str, required=True, description="'workspace/project'")],
        responses=ErasureSerializer(many=True),
    )
    def get(self, request):
        project = resolve_project(request.user, request.query_params.get("project") or "")
        permissions.require(request.user, "manage", project)
        page = self.paginate_queryset(self.get_queryset().filter(project=project).order_by("-at", "-id"))
        return self.get_paginated_response(ErasureSerializer(page, many=True).data)


class ErasureDetailView(ScopedGenericAPIView):
    """One erasure record: what was deleted (runs, counts), by whom, when and why. Needs ``manage`` on
    its project."""

    def scoped_queryset(self):
        return _erasures(self.request.user)

    @extend_schema(responses=ErasureSerializer)
    def get(self, request, erasure_id):
        record = self.get_queryset().select_related("project").filter(pk=erasure_id).first()
        if record is None:
            raise Http404(f"erasure {erasure_id} not found")
        if record.project is not None:
            permissions.require(request.user, "manage", record.project)
        return Response(ErasureSerializer(record).data)


def _resolve_runs(user, refs: list[str]) -> list[Run]:
    """The runs ``refs`` name among those ``user`` may view, in the order given (each once); a ref
    naming none is a 404 naming it."""
    parsed = []
    for ref in refs:
        found = parse_run_ref(ref, param="runs")
        if found is None:
            raise ApiError(
                400, "invalid", f"runs: {ref[:80]!r} is not a run UUID or 'workspace/project/KEY-N'", field="runs"
            )
        parsed.append((ref, found))
    wanted = Q()
    for _ref, found in parsed:
        wanted |= found.q()
    runs = list(Run.objects.for_user(user, "view").with_related().filter(wanted))
    out: dict[int, Run] = {}
    for ref, found in parsed:
        match = next((r for r in runs if _matches(found, r)), None)
        if match is None:
            raise ApiError(404, "not_found", f"runs: run {ref[:80]!r} not found", field="runs")
        out.setdefault(match.pk, match)
    return list(out.values())


def _matches(ref, run: Run) -> bool:
    if ref.uuid is not None:
        return run.uuid == ref.uuid
    if (run.project.key, run.number) != (ref.key, ref.number):
        return False
    return not ref.workspace or (run.project.workspace.slug, run.project.slug) == (ref.workspace, ref.project)

"""REST endpoints of artifact versions and lineage; every answer scoped by the permission module."""

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from projects.models import Workspace
from tracker.api.views import ScopedGenericAPIView

from ..api.views.base import RunScopedView
from ..errors import ApiError
from . import queries
from .models import Role


def _int_param(request, name, default, low, high):
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ApiError(400, "invalid", f"{name}: must be an integer from {low} to {high}", field=name)
    return value


def _role_param(request):
    role = request.query_params.get("role")
    if role is not None and role not in Role.values:
        raise ApiError(400, "invalid", f"role: must be one of {', '.join(Role.values)}", field="role")
    return role


class RunArtifactsView(RunScopedView):
    """The versions a run consumed (inputs) and produced (outputs)."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, run_ref):
        run = self.get_run()
        links = queries.run_links(run)
        return Response(
            {
                "id": run.human_id,
                "inputs": [queries.link_json(link) for link in links if link.role == Role.INPUT],
                "outputs": [queries.link_json(link) for link in links if link.role == Role.OUTPUT],
            }
        )


class RunLineageView(RunScopedView):
    """The chain from a run back to its data: inputs, the runs that produced them, their inputs, ..."""

    @extend_schema(
        parameters=[OpenApiParameter("depth", int, description="levels of producers to follow (1-100)")],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request, run_ref):
        depth = _int_param(request, "depth", queries.DEFAULT_DEPTH, 1, queries.MAX_DEPTH)
        run = self.get_run()
        return Response(queries.chain_json(queries.chain(request.user, run, depth)))


class ArtifactVersionView(ScopedGenericAPIView):
    """One version by content hash: its files and the visible runs that consumed or produced it."""

    def scoped_queryset(self):
        return queries.visible_links(self.request.user)

    @extend_schema(
        parameters=[OpenApiParameter("role", str, enum=list(Role.values), description="only consumers or producers")],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request, digest):
        role = _role_param(request)
        version = queries.visible_version(request.user, digest)
        if version is None:
            raise Http404(f"artifact version {digest!r} not found")
        links = queries.version_links(request.user, digest, role)
        return Response(
            {
                "hash": version.hash,
                "name": version.artifact.name if version.artifact else None,
                "kind": version.kind,
                "size": version.size,
                "file_count": version.file_count,
                "files": [{"path": p, "hash": h, "size": n} for p, h, n in version.files],
                "metadata": version.metadata,
                "first_seen": version.first_seen,
                "consumed_by": [queries.link_json(link, with_run=True) for link in links if link.role == Role.INPUT],
                "produced_by": [queries.link_json(link, with_run=True) for link in links if link.role == Role.OUTPUT],
            }
        )


class ArtifactDetailView(ScopedGenericAPIView):
    """A named artifact of a workspace: its versions over time that visible runs link."""

    def scoped_queryset(self):
        return queries.visible_links(self.request.user)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, workspace, name):
        ws = Workspace.objects.filter(slug=workspace).first()
        artifact, versions = queries.artifact_versions(request.user, ws, name) if ws else (None, [])
        if artifact is None:
            raise Http404(f"artifact {name!r} not found")
        return Response(
            {
                "workspace": workspace,
                "name": artifact.name,
                "versions": [
                    {
                        "hash": v.hash,
                        "size": v.size,
                        "file_count": v.file_count,
                        "first_seen": v.first_seen,
                        "runs": [queries.link_json(link, with_run=True) for link in v.visible_links],
                    }
                    for v in versions
                ],
            }
        )

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.response import Response

from tracker.api.views import ScopedViewSet

from .. import permissions, services
from ..models import Project, Visibility, Workspace
from .serializers import ProjectCreateSerializer, ProjectSerializer, WorkspaceCreateSerializer, WorkspaceSerializer


class WorkspaceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    serializer_class = WorkspaceSerializer
    lookup_field = "slug"
    lookup_value_regex = r"[A-Za-z0-9][A-Za-z0-9._-]*"

    def scoped_queryset(self):
        return Workspace.objects.for_user(self.request.user, "view")

    @extend_schema(request=WorkspaceCreateSerializer, responses={201: WorkspaceSerializer})
    def create(self, request):
        limits = permissions.token_limits(request.user)
        if limits is not None and ("write" not in limits.actions or limits.workspace_id is not None):
            # a read token writes nothing; a token bound to one workspace reaches nothing outside it
            raise PermissionDenied(
                "This API token may not create workspaces: that needs a write or admin token not bound to a workspace."
            )
        data = WorkspaceCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        workspace = services.create_workspace(request.user, **data.validated_data)
        return Response(WorkspaceSerializer(workspace).data, status=status.HTTP_201_CREATED)


class ProjectViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Projects of one workspace: ``/api/v1/workspaces/<workspace>/projects/``."""

    serializer_class = ProjectSerializer
    lookup_field = "slug"
    lookup_value_regex = r"[A-Za-z0-9][A-Za-z0-9._-]*"

    def scoped_queryset(self):
        return (
            Project.objects.for_user(self.request.user, "view")
            .filter(workspace__slug=self.kwargs["workspace_slug"])
            .select_related("workspace")
        )

    def list(self, request, *args, **kwargs):
        # An invisible workspace is a 404, not an empty list: it is visible through a grant on the
        # workspace or on one of its projects.
        if not self.get_queryset().exists():
            self.get_workspace()
        return super().list(request, *args, **kwargs)

    def get_workspace(self) -> Workspace:
        return get_object_or_404(
            Workspace.objects.for_user(self.request.user, "view"), slug=self.kwargs["workspace_slug"]
        )

    @extend_schema(request=ProjectCreateSerializer, responses={201: ProjectSerializer})
    def create(self, request, workspace_slug):
        workspace = self.get_workspace()
        data = ProjectCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.create_project(
            request.user,
            workspace,
            data.validated_data["slug"],
            key=data.validated_data.get("key") or None,
            description=data.validated_data.get("description", ""),
            visibility=data.validated_data.get("visibility", Visibility.PRIVATE),
        )
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)

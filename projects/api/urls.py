from django.urls import path

from .views import ProjectViewSet, WorkspaceViewSet

urlpatterns = [
    path("workspaces/", WorkspaceViewSet.as_view({"get": "list", "post": "create"}), name="workspace-list"),
    path("workspaces/<str:slug>/", WorkspaceViewSet.as_view({"get": "retrieve"}), name="workspace-detail"),
    path(
        "workspaces/<str:workspace_slug>/projects/",
        ProjectViewSet.as_view({"get": "list", "post": "create"}),
        name="project-list",
    ),
    path(
        "workspaces/<str:workspace_slug>/projects/<str:slug>/",
        ProjectViewSet.as_view({"get": "retrieve"}),
        name="project-detail",
    ),
]

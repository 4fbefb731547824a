from django.urls import path

from ..api import urls as _run_api_urls  # noqa: F401  registers the ``runref`` converter
from . import api, api_records, erasure, records, views

version = "api/v1/workspaces/<str:workspace>/artifact-versions/<str:digest>/"

urlpatterns = [
    path("api/v1/runs/<runref:run_ref>/artifacts", api.RunArtifactsView.as_view(), name="run-artifacts"),
    path("api/v1/runs/<runref:run_ref>/lineage", api.RunLineageView.as_view(), name="run-lineage"),
    path("api/v1/artifact-versions/<str:digest>", api.ArtifactVersionView.as_view(), name="artifact-version"),
    path("api/v1/artifacts/<str:workspace>/<path:name>", api.ArtifactDetailView.as_view(), name="artifact-detail"),
    path(
        "api/v1/workspaces/<str:workspace>/artifacts/",
        api_records.WorkspaceArtifactsView.as_view(),
        name="workspace-artifacts",
    ),
    path(version + "lineage.zip", api_records.VersionLineageRecordView.as_view(), name="artifact-version-lineage"),
    path(version + "erase-consumers", api_records.ConsumersErasureView.as_view(), name="artifact-version-erasure"),
    path("api/v1/erasures/", api_records.ErasureListView.as_view(), name="erasure-list"),
    path("api/v1/erasures/<int:erasure_id>/", api_records.ErasureDetailView.as_view(), name="erasure-detail"),
    path("w/<str:workspace>/-/artifacts/", views.ArtifactListPageView.as_view(), name="artifact-list"),
    path(
        "w/<str:workspace>/-/artifact-versions/<str:digest>/erase-consumers",
        erasure.EraseConsumersView.as_view(),
        name="artifact-erase-consumers",
    ),
    path(
        "w/<str:workspace>/-/artifact-versions/<str:digest>/lineage.zip",
        records.ArtifactLineageRecordView.as_view(),
        name="artifact-lineage-record",
    ),
    path("w/<str:workspace>/-/artifacts/<path:name>", views.ArtifactPageView.as_view(), name="artifact-page"),
    path(
        "w/<str:workspace>/<str:project>/runs/<str:run_id>/lineage-graph",
        views.RunLineageGraphView.as_view(),
        name="artifact-run-graph",
    ),
]

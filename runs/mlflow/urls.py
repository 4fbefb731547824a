from django.urls import path

from . import views

urlpatterns = [
    path("api/2.0/mlflow/<path:endpoint>", views.MlflowApiView.as_view(), name="mlflow-api"),
    path("ajax-api/2.0/mlflow/<path:endpoint>", views.MlflowApiView.as_view(), name="mlflow-ajax-api"),
    path("api/2.0/mlflow-artifacts/artifacts", views.ArtifactView.as_view(), name="mlflow-artifacts-list"),
    path(
        "api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>",
        views.ArtifactView.as_view(),
        name="mlflow-artifacts",
    ),
]

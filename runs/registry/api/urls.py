from django.urls import path

from . import views

models = "workspaces/<str:workspace>/models/"
model = models + "<str:model_name>/"
version = model + "versions/<int:version>/"

urlpatterns = [
    path(models, views.ModelListView.as_view(), name="registered-model-list"),
    path(model, views.ModelDetailView.as_view(), name="registered-model-detail"),
    path(model + "versions/", views.VersionListView.as_view(), name="model-version-list"),
    path(version, views.VersionDetailView.as_view(), name="model-version-detail"),
    path(version + "stage", views.VersionStageView.as_view(), name="model-version-stage"),
    path(version + "download", views.VersionDownloadView.as_view(), name="model-version-download"),
    path(model + "stages/<str:stage>/", views.StageVersionView.as_view(), name="model-stage-version"),
    path(model + "stages/<str:stage>/download", views.StageDownloadView.as_view(), name="model-stage-download"),
    path(model + "aliases/<str:alias>", views.AliasView.as_view(), name="model-alias"),
]

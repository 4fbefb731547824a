from django.urls import path

from . import views

app_name = "registry"

# under the workspace's own pages ("w/<workspace>/-/"): a project's slug never starts with "-"
models = "w/<str:workspace>/-/models"

urlpatterns = [
    path(models, views.ModelListView.as_view(), name="model_list"),
    path(models + "/-/register", views.RegisterVersionView.as_view(), name="register_version"),
    path(models + "/<str:name>", views.ModelDetailView.as_view(), name="model_detail"),
    path(models + "/<str:name>/versions/<int:version>/stage", views.VersionStageView.as_view(), name="version_stage"),
]

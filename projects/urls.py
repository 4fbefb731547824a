from django.urls import path

from . import views

app_name = "projects"

urlpatterns = [
    path("", views.WorkspaceListView.as_view(), name="workspace_list"),
    path("w/<str:workspace>/", views.ProjectListView.as_view(), name="project_list"),
]

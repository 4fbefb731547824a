from django.urls import path

from . import views

app_name = "runs"

project = "w/<str:workspace>/<str:project>/"
run = project + "runs/<str:run_id>/"

urlpatterns = [
    path(project, views.RunListView.as_view(), name="run_list"),
    path(project + "columns", views.ColumnChooserView.as_view(), name="column_chooser"),
    path(project + "views", views.SavedViewView.as_view(), name="saved_views"),
    path(project + "trash", views.TrashView.as_view(), name="trash"),
    path(project + "compare", views.CompareView.as_view(), name="compare"),
    path(project + "chart-data", views.ChartDataView.as_view(), name="chart_data"),
    path(run, views.RunDetailView.as_view(), name="run_detail"),
    path(run + "edit", views.RunEditView.as_view(), name="run_edit"),
    path(run + "log", views.RunLogView.as_view(), name="run_log"),
    path(run + "gallery", views.RunGalleryView.as_view(), name="run_gallery"),
    path(run + "preview", views.RunFilePreviewView.as_view(), name="run_file_preview"),
    path(run + "raw", views.RunFileRawView.as_view(), name="run_file_raw"),
]

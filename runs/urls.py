from django.urls import path

from .views import archives, compare, dashboard, detail, diffs, erasure, export, files, media, notes, table

app_name = "runs"

project = "w/<str:workspace>/<str:project>/"
run = project + "runs/<str:run_id>/"

urlpatterns = [
    path(project, table.RunListView.as_view(), name="run_list"),
    path(project + "columns", table.ColumnChooserView.as_view(), name="column_chooser"),
    path(project + "views", table.SavedViewView.as_view(), name="saved_views"),
    path(project + "export", export.RunTableExportView.as_view(), name="run_export"),
    path(project + "trash", table.TrashView.as_view(), name="trash"),
    path(project + "compare", compare.CompareView.as_view(), name="compare"),
    path(project + "dashboard", dashboard.DashboardView.as_view(), name="dashboard"),
    path(project + "dashboard/chart-data", dashboard.DashboardChartDataView.as_view(), name="dashboard_chart_data"),
    path(project + "compare/media", media.CompareMediaView.as_view(), name="compare_media"),
    path(project + "chart-data", detail.ChartDataView.as_view(), name="chart_data"),
    path(project + "compare/diffs", diffs.RunDiffView.as_view(), name="run_diffs"),
    path(run, detail.RunDetailView.as_view(), name="run_detail"),
    path(run + "edit", detail.RunEditView.as_view(), name="run_edit"),
    path(run + "erase", erasure.RunEraseView.as_view(), name="run_erase"),
    path(run + "notes", notes.RunNotesView.as_view(), name="run_notes"),
    path(run + "log", detail.RunLogView.as_view(), name="run_log"),
    path(run + "gallery", media.RunGalleryView.as_view(), name="run_gallery"),
    path(run + "thumb", media.RunFileThumbView.as_view(), name="run_file_thumb"),
    path(run + "preview", files.RunFilePreviewView.as_view(), name="run_file_preview"),
    path(run + "raw", files.RunFileRawView.as_view(), name="run_file_raw"),
    path(run + "files.zip", archives.RunFileSetZipView.as_view(), name="run_file_set_zip"),
]

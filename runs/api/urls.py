from django.urls import path, register_converter

from ..converters import RunRefConverter
from .views import exports, files, query, runs, series

register_converter(RunRefConverter, "runref")

urlpatterns = [
    path("runs/", runs.RunListView.as_view(), name="run-list"),
    path("runs/query", runs.RunQueryView.as_view(), name="run-query"),
    path("runs/groups", query.RunGroupsView.as_view(), name="run-groups"),
    path("runs/suggest", query.RunSuggestView.as_view(), name="run-suggest"),
    path("runs/fields", query.RunFieldsView.as_view(), name="run-fields"),
    path("runs/<runref:run_ref>/", runs.RunDetailView.as_view(), name="run-detail"),
    path("runs/<runref:run_ref>/ping", runs.RunPingView.as_view(), name="run-ping"),
    path("runs/<runref:run_ref>/batch", runs.RunBatchView.as_view(), name="run-batch"),
    path("runs/<runref:run_ref>/attributes", runs.RunAttributesView.as_view(), name="run-attributes"),
    path("runs/<runref:run_ref>/series", series.SeriesView.as_view(), name="run-series"),
    path("runs/<runref:run_ref>/series/points", series.SeriesPointsView.as_view(), name="run-series-points"),
    path("runs/<runref:run_ref>/uploads", files.UploadView.as_view(), name="run-uploads"),
    path("runs/<runref:run_ref>/files", files.FileListView.as_view(), name="run-files"),
    path("runs/<runref:run_ref>/files/download", files.FileDownloadView.as_view(), name="run-file-download"),
    path("runs/<runref:run_ref>/files/url", files.FileUrlView.as_view(), name="run-file-url"),
    path("runs/<runref:run_ref>/files/info", files.FileInfoView.as_view(), name="run-file-info"),
    path("runs/<runref:run_ref>/files/preview", files.FilePreviewView.as_view(), name="run-file-preview"),
    path("runs/<runref:run_ref>/uploads/direct", files.DirectUploadView.as_view(), name="run-direct-upload"),
    path(
        "runs/<runref:run_ref>/uploads/direct/<uuid:upload_id>/complete",
        files.DirectUploadCompleteView.as_view(),
        name="run-direct-upload-complete",
    ),
    path("exports/", exports.ExportListView.as_view(), name="export-list"),
    path("exports/<uuid:export_id>/", exports.ExportDetailView.as_view(), name="export-detail"),
    path("exports/<uuid:export_id>/download", exports.ExportDownloadView.as_view(), name="export-download"),
]

from django.urls import path, register_converter

from ..converters import RunRefConverter
from . import views

register_converter(RunRefConverter, "runref")

urlpatterns = [
    path("runs/", views.RunListView.as_view(), name="run-list"),
    path("runs/query", views.RunQueryView.as_view(), name="run-query"),
    path("runs/groups", views.RunGroupsView.as_view(), name="run-groups"),
    path("runs/suggest", views.RunSuggestView.as_view(), name="run-suggest"),
    path("runs/fields", views.RunFieldsView.as_view(), name="run-fields"),
    path("runs/<runref:run_ref>/", views.RunDetailView.as_view(), name="run-detail"),
    path("runs/<runref:run_ref>/ping", views.RunPingView.as_view(), name="run-ping"),
    path("runs/<runref:run_ref>/batch", views.RunBatchView.as_view(), name="run-batch"),
    path("runs/<runref:run_ref>/attributes", views.RunAttributesView.as_view(), name="run-attributes"),
    path("runs/<runref:run_ref>/series", views.SeriesView.as_view(), name="run-series"),
    path("runs/<runref:run_ref>/series/points", views.SeriesPointsView.as_view(), name="run-series-points"),
    path("runs/<runref:run_ref>/uploads", views.UploadView.as_view(), name="run-uploads"),
    path("runs/<runref:run_ref>/files", views.FileListView.as_view(), name="run-files"),
    path("runs/<runref:run_ref>/files/download", views.FileDownloadView.as_view(), name="run-file-download"),
]

# Presigned URLs, direct uploads, previews and exports (runs/api/files.py).
from . import files  # noqa: E402

urlpatterns += [
    path("runs/<runref:run_ref>/files/url", files.FileUrlView.as_view(), name="run-file-url"),
    path("runs/<runref:run_ref>/files/info", files.FileInfoView.as_view(), name="run-file-info"),
    path("runs/<runref:run_ref>/files/preview", files.FilePreviewView.as_view(), name="run-file-preview"),
    path("runs/<runref:run_ref>/uploads/direct", files.DirectUploadView.as_view(), name="run-direct-upload"),
    path("runs/<runref:run_ref>/uploads/direct/<uuid:upload_id>/complete", files.DirectUploadCompleteView.as_view(), name="run-direct-upload-complete"),
    path("exports/", files.ExportListView.as_view(), name="export-list"),
    path("exports/<uuid:export_id>/", files.ExportDetailView.as_view(), name="export-detail"),
    path("exports/<uuid:export_id>/download", files.ExportDownloadView.as_view(), name="export-download"),
]

from django.urls import path, register_converter

from ..converters import RunRefConverter
from . import views

register_converter(RunRefConverter, "runref")

urlpatterns = [
    path("runs/", views.RunListView.as_view(), name="run-list"),
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

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import health, metrics
from .api.errors import json_bad_request, json_not_found, json_server_error

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # the split view serves its init script from a URL: no inline script under our CSP
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include("projects.api.urls")),
    path("api/v1/", include("runs.api.urls")),
    path("api/v1/", include("runs.registry.api.urls")),
    path("", include("runs.artifacts.urls")),
    path("", include("runs.mlflow.urls")),
    path("", include("projects.urls")),
    path("", include("runs.webhooks.urls")),
    path("", include("runs.registry.urls")),
    path("", include("runs.urls")),
]

handler400 = json_bad_request
handler404 = json_not_found
handler500 = json_server_error

from django.urls import path

from . import views

app_name = "webhooks"

hooks = "w/<str:workspace>/<str:project>/settings/webhooks"

urlpatterns = [
    path(hooks, views.WebhookListView.as_view(), name="webhook_list"),
    path(hooks + "/<int:webhook_id>", views.WebhookDetailView.as_view(), name="webhook_detail"),
    path(hooks + "/<int:webhook_id>/delete", views.WebhookDeleteView.as_view(), name="webhook_delete"),
    path(hooks + "/<int:webhook_id>/ping", views.WebhookPingView.as_view(), name="webhook_ping"),
    path(
        hooks + "/<int:webhook_id>/deliveries/<int:delivery_id>/redeliver",
        views.RedeliverView.as_view(),
        name="webhook_redeliver",
    ),
]

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "runs.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import events  # noqa: F401 - connects the receivers that keep its look-ups fresh

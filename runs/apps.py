from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self):
        from . import timescale  # noqa: F401  (logs which series storage is in use)

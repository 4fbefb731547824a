from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self):
        from . import timescale  # noqa: F401  (logs which series storage is in use)
        from .query import budget  # noqa: F401  (SQLite connections get the RE2 REGEXP function)

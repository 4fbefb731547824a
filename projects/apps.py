from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "projects"

    def ready(self):
        # registered by import: a new user gets a personal workspace; the audit log's signal receivers
        from . import receivers, signals  # noqa: F401

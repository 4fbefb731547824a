from django.apps import AppConfig


class ArtifactsConfig(AppConfig):
    name = "runs.artifacts"
    label = "artifacts"
    verbose_name = "Artifacts"
    default_auto_field = "django.db.models.BigAutoField"

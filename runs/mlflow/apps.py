from django.apps import AppConfig


class MlflowConfig(AppConfig):
    name = "runs.mlflow"
    label = "mlflow"
    verbose_name = "MLflow-compatible API"
    default_auto_field = "django.db.models.BigAutoField"

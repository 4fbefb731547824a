"""What MLflow keeps that a project or a run has no place for: an experiment's name, lifecycle and
tags, and the exact metric history (MLflow allows any number of points per step, in any order)."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from projects.models import Project

from ..models import Run


class Experiment(models.Model):
    """MLflow's view of a project: its experiment name (free text), whether it is deleted, its tags."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, primary_key=True, related_name="mlflow")
    name = models.CharField(max_length=500)
    deleted_at = models.DateTimeField(null=True, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return self.name


class Metric(models.Model):
    """One logged MLflow metric point. A point sent twice (a retried request) is stored once.

    Up to 1,000 rows per log-batch: the run is indexed by the unique constraint (its first column)
    alone, and, like the native series points, checked by the code that writes them (the run's row
    is locked by then) rather than by a foreign-key trigger per row; deleting a run deletes its
    points (Django's cascade)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False)
    key = models.CharField(max_length=250)
    step = models.BigIntegerField()
    timestamp = models.BigIntegerField()  # milliseconds, as MLflow sends them
    value = models.FloatField()  # 0 when is_nan (SQLite cannot store NaN); ±Infinity as is
    is_nan = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "key", "step", "timestamp", "value", "is_nan"], name="mlflow_metric_point_unique"
            )
        ]


class LatestMetric(models.Model):
    """A run's latest point of a metric: highest step, then latest timestamp, then highest value."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=250)
    step = models.BigIntegerField()
    timestamp = models.BigIntegerField()
    value = models.FloatField()
    is_nan = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="mlflow_latest_metric_unique")]


class LoggedModel(models.Model):
    """An MLflow 3 logged model. Its files live on its source run, in the file set ``models/<folder>/files``
    beside the field ``models/<folder>/model_id`` (``folder`` is the model's name, made unique in the run)."""

    model_id = models.CharField(max_length=40, primary_key=True)  # "m-" and 32 hex digits, as MLflow's
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    folder = models.CharField(max_length=128, blank=True)
    name = models.CharField(max_length=250)
    model_type = models.CharField(max_length=250, blank=True)
    status = models.CharField(max_length=40, default="LOGGED_MODEL_PENDING")
    status_message = models.TextField(blank=True)
    creator = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=list, blank=True)  # MLflow Metric dicts linked to the model

    class Meta:
        indexes = [models.Index(fields=["project", "name"]), models.Index(fields=["run", "folder"])]

    def __str__(self):
        return f"{self.name} ({self.model_id})"

"""The model registry: named models of a workspace, their numbered versions and the stage each is in.

A version is a snapshot of a run's ``file`` or ``file_set`` field at registration: it keeps its own
list of files (``ModelVersionFile``, pointing at the content-addressed blobs), so overwriting the
run's field later, or purging the run, changes nothing about what the version downloads. The run
stays linked (for its metrics and lineage) until it is purged; then ``run`` is NULL and
``run_label`` still names it.
"""

import re

from django.conf import settings
from django.db import models
from django.utils import timezone

from projects.models import Project, Workspace

from ..models import Blob, Run
from .querysets import ModelVersionQuerySet, RegisteredModelQuerySet

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")


class Stage(models.TextChoices):
    NONE = "none", "None"
    STAGING = "staging", "Staging"
    PRODUCTION = "production", "Production"
    ARCHIVED = "archived", "Archived"


class RegisteredModel(models.Model):
    """A named model (``registry/<name>``), unique in its workspace. Its ``project`` is its home: who
    may see and change it, where its stage changes are audited and sent to webhooks, and the project
    its versions' runs come from."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="registered_models")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="registered_models")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # The last version number given out; bumped by an UPDATE that locks the row (race-safe numbering).
    version_counter = models.PositiveIntegerField(default=0, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RegisteredModelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["workspace", "name"], name="registered_model_name_unique")]

    def __str__(self):
        return f"registry/{self.name}"


class ModelVersion(models.Model):
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_versions")
    run_label = models.CharField(max_length=120)  # the run's human id at registration (kept after a purge)
    field_path = models.CharField(max_length=512)
    field_type = models.CharField(max_length=16)  # file | file_set
    stage = models.CharField(max_length=12, choices=Stage.choices, default=Stage.NONE)
    description = models.TextField(blank=True)
    size = models.BigIntegerField(default=0)
    file_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    stage_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    stage_changed_at = models.DateTimeField(null=True, blank=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["model", "-version"]
        constraints = [models.UniqueConstraint(fields=["model", "version"], name="model_version_unique")]
        indexes = [models.Index(fields=["model", "stage", "-version"], name="model_version_stage")]

    def __str__(self):
        return f"{self.model} v{self.version}"


class ModelVersionFile(models.Model):
    """One file of a version, as it was in the run's field at registration (``relpath`` empty for a ``file``)."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="files")
    relpath = models.CharField(max_length=1024, blank=True)
    name = models.CharField(max_length=255, blank=True)
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="model_files")
    mime_type = models.CharField(max_length=200, default="application/octet-stream")
    size = models.BigIntegerField()

    class Meta:
        ordering = ["version", "relpath"]


class ModelAlias(models.Model):
    """A name (``champion``) that points at one version of a model; at most one version per alias."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    alias = models.CharField(max_length=100)
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="aliases")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["alias"]
        constraints = [models.UniqueConstraint(fields=["model", "alias"], name="model_alias_unique")]

    def __str__(self):
        return f"{self.model}@{self.alias}"

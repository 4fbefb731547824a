"""Artifact versions (content-addressed per workspace), their optional names, and which runs consumed
or produced them.

A version is keyed by its content hash inside a workspace: the same bytes tracked by two projects are
one version. Whether a caller may learn of a version is decided by the links (``RunArtifact``), which
belong to a run and so to a project: a version is visible through the links in projects the caller
may read, never by its hash alone.
"""

from django.db import models
from django.utils import timezone

from projects.models import Project, Workspace

from ..models import Run


class Role(models.TextChoices):
    INPUT = "input", "Input"
    OUTPUT = "output", "Output"


class Kind(models.TextChoices):
    TRACKED = "tracked", "Tracked files"  # hashed by the client, not uploaded
    UPLOADED = "uploaded", "Uploaded files"  # a file or file-set field's blobs


class Artifact(models.Model):
    """A name grouping the versions of one data set or model over time (``track_files(name=...)``)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["workspace", "name"], name="artifact_workspace_name_unique")]

    def __str__(self):
        return self.name


class ArtifactVersion(models.Model):
    """One content: its hash, file list (``[relpath, hash, size]`` rows), total size and file count."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    hash = models.CharField(max_length=128)
    artifact = models.ForeignKey(Artifact, null=True, blank=True, on_delete=models.SET_NULL, related_name="versions")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.TRACKED)
    size = models.BigIntegerField(default=0)
    file_count = models.IntegerField(default=0)
    files = models.JSONField(default=list)
    location = models.CharField(max_length=2048, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    first_run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-first_seen", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "hash"], name="artifact_version_workspace_hash_unique")
        ]
        indexes = [
            models.Index(fields=["artifact", "-first_seen"], name="artifact_version_by_artifact"),
            models.Index(fields=["hash"], name="artifact_version_by_hash"),
        ]

    def __str__(self):
        return self.hash[:12]


class RunArtifact(models.Model):
    """That ``run`` consumed (input) or produced (output) ``version`` under the field ``path``."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="artifact_links")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    version = models.ForeignKey(ArtifactVersion, on_delete=models.CASCADE, related_name="links")
    artifact = models.ForeignKey(Artifact, null=True, blank=True, on_delete=models.SET_NULL, related_name="links")
    role = models.CharField(max_length=6, choices=Role.choices)
    path = models.CharField(max_length=1024)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["path", "role"]
        constraints = [
            models.UniqueConstraint(fields=["run", "role", "path"], name="run_artifact_field_unique"),
        ]
        indexes = [
            models.Index(fields=["version", "role", "project"], name="run_artifact_by_version"),
            models.Index(fields=["artifact", "role", "project"], name="run_artifact_by_name"),
            models.Index(fields=["project", "role"], name="run_artifact_by_project"),
        ]

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from .querysets import ProjectQuerySet, WorkspaceQuerySet

SLUG_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
KEY_PATTERN = r"[A-Z][A-Z0-9]{1,9}"

slug_validator = RegexValidator(
    rf"^{SLUG_PATTERN}\Z", "Use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit."
)
key_validator = RegexValidator(rf"^{KEY_PATTERN}\Z", "Use 2-10 upper-case letters or digits, starting with a letter.")


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    CONTRIBUTOR = "contributor", "Contributor"
    OWNER = "owner", "Owner"


class Workspace(models.Model):
    slug = models.CharField(max_length=100, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200, blank=True)
    personal_owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="personal_workspace"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = WorkspaceQuerySet.as_manager()

    class Meta:
        ordering = ["slug"]
        permissions = [
            ("write_workspace", "Log runs and create projects in the workspace"),
            ("manage_workspace", "Manage members and settings of the workspace"),
        ]

    def __str__(self):
        return self.slug


class Membership(models.Model):
    """A user's role in a workspace; ``projects.services`` turns it into object permissions."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.CONTRIBUTOR)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "user"], name="membership_unique")]

    def __str__(self):
        return f"{self.user} in {self.workspace} ({self.role})"


class Project(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="projects")
    slug = models.CharField(max_length=100, validators=[slug_validator])
    key = models.CharField(max_length=10, validators=[key_validator])
    description = models.TextField(blank=True)
    run_counter = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["workspace__slug", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "slug"], name="project_slug_unique"),
            models.UniqueConstraint(fields=["workspace", "key"], name="project_key_unique"),
        ]
        permissions = [
            ("write_project", "Log runs to the project"),
            ("manage_project", "Manage the project"),
        ]

    def __str__(self):
        return self.full_name

    @property
    def full_name(self) -> str:
        return f"{self.workspace.slug}/{self.slug}"


# Direct foreign-key object permission tables (guardian finds them by name);
# they keep permission checks to indexed joins instead of generic relations.
class WorkspaceUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Workspace, on_delete=models.CASCADE)


class WorkspaceGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Workspace, on_delete=models.CASCADE)


class ProjectUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Project, on_delete=models.CASCADE)


class ProjectGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Project, on_delete=models.CASCADE)


class ProjectUsage(models.Model):
    """Bytes a project uses, recomputed exactly by ``runs.tasks.refresh_usage`` (``runs/usage.py``).

    Series bytes are logical: 32 bytes per float point (series, step, timestamp,
    value) and 24 bytes plus the UTF-8 length per string point; blobs count once
    per project however many runs share them; previews are the derived files of
    those blobs. Runs in the trash count until they are purged.
    """

    project = models.OneToOneField(Project, on_delete=models.CASCADE, primary_key=True, related_name="usage")
    float_points = models.BigIntegerField(default=0)
    string_points = models.BigIntegerField(default=0)
    series_bytes = models.BigIntegerField(default=0)
    blob_count = models.BigIntegerField(default=0)
    blob_bytes = models.BigIntegerField(default=0)
    preview_bytes = models.BigIntegerField(default=0)
    total_bytes = models.BigIntegerField(default=0)
    computed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.project_id}: {self.total_bytes} bytes"

    @classmethod
    def workspace_total(cls, workspace_id: int) -> int:
        """A workspace's usage: the sum over its projects."""
        return cls.objects.filter(project__workspace_id=workspace_id).aggregate(n=models.Sum("total_bytes"))["n"] or 0

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from accounts.models import ApiToken

from .querysets import AuditEventImmutable, AuditEventQuerySet, ProjectQuerySet, WorkspaceQuerySet

SLUG_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
KEY_PATTERN = r"[A-Z][A-Z0-9]{1,9}"

slug_validator = RegexValidator(
    rf"^{SLUG_PATTERN}\Z", "Use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit."
)
key_validator = RegexValidator(rf"^{KEY_PATTERN}\Z", "Use 2-10 upper-case letters or digits, starting with a letter.")


class WorkspaceRole(models.TextChoices):
    """A principal's role in a workspace (``projects.permissions.WORKSPACE_ROLES`` says what each holds)."""

    MEMBER = "member", "Member"
    ADMIN = "admin", "Admin"
    OWNER = "owner", "Owner"


class ProjectRole(models.TextChoices):
    """A built-in role on one project (``projects.permissions.PROJECT_ROLES``)."""

    VIEWER = "viewer", "Viewer"
    CONTRIBUTOR = "contributor", "Contributor"
    OWNER = "owner", "Owner"


Role = ProjectRole


class Visibility(models.TextChoices):
    PRIVATE = "private", "Private to its members"
    WORKSPACE = "workspace", "Readable by every workspace member"


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
            ("write_workspace", "Create projects in the workspace"),
            ("manage_workspace", "Manage members, teams, roles and service accounts of the workspace"),
            ("all_projects_view", "View every project of the workspace"),
            ("all_projects_export", "Export from every project of the workspace"),
            ("all_projects_write", "Log runs to every project of the workspace"),
            ("all_projects_delete", "Delete runs in every project of the workspace"),
            ("all_projects_manage", "Manage every project of the workspace"),
        ]

    def __str__(self):
        return self.slug


class Team(models.Model):
    """A named group of users owned by a workspace; its Django group holds the team's object permissions."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="teams")
    group = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="team", editable=False)
    name = models.CharField(max_length=100, validators=[slug_validator])
    description = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["workspace__slug", "name"]
        constraints = [models.UniqueConstraint(fields=["workspace", "name"], name="team_name_unique")]

    def __str__(self):
        return f"{self.workspace.slug}/{self.name}"

    @property
    def members(self):
        return self.group.user_set.all()


def _one_principal(prefix: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=(models.Q(user__isnull=False, team__isnull=True) | models.Q(user__isnull=True, team__isnull=False)),
        name=f"{prefix}_one_principal",
    )


class Membership(models.Model):
    """A user's or a team's role in a workspace; ``projects.services`` turns it into object permissions."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="memberships"
    )
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=WorkspaceRole.choices, default=WorkspaceRole.MEMBER)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "user"], name="membership_unique"),
            models.UniqueConstraint(fields=["workspace", "team"], name="membership_team_unique"),
            _one_principal("membership"),
        ]

    def __str__(self):
        return f"{self.user or self.team} in {self.workspace} ({self.role})"

    @property
    def principal(self):
        return self.user or self.team


class CustomRole(models.Model):
    """A named set of project actions a workspace admin defines and grants on projects (allow or deny)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="custom_roles")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    actions = models.JSONField(default=list, help_text="Project actions: view, export, write, delete, manage.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["workspace__slug", "name"]
        constraints = [models.UniqueConstraint(fields=["workspace", "name"], name="custom_role_name_unique")]

    def __str__(self):
        return f"{self.name} ({', '.join(self.actions)})"


class Project(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="projects")
    slug = models.CharField(max_length=100, validators=[slug_validator])
    key = models.CharField(max_length=10, validators=[key_validator])
    description = models.TextField(blank=True)
    visibility = models.CharField(max_length=20, choices=Visibility.choices, default=Visibility.PRIVATE)
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
            ("export_project", "Export runs and files of the project"),
            ("write_project", "Log runs to the project"),
            ("delete_runs_project", "Delete and purge runs of the project"),
            ("manage_project", "Manage members and settings of the project"),
            ("deny_view_project", "Denied: view the project"),
            ("deny_export_project", "Denied: export from the project"),
            ("deny_write_project", "Denied: log runs to the project"),
            ("deny_delete_project", "Denied: delete runs of the project"),
            ("deny_manage_project", "Denied: manage the project"),
        ]

    def __str__(self):
        return self.full_name

    @property
    def full_name(self) -> str:
        return f"{self.workspace.slug}/{self.slug}"


class ProjectGrant(models.Model):
    """A role of a user or a team on one project: built-in (``role``) or custom, allowing or denying.

    A principal holds at most one allowing and one denying grant per project; ``projects.services``
    turns the grants into guardian object permissions (``deny_*`` ones for denials).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="project_grants"
    )
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="project_grants")
    role = models.CharField(max_length=20, choices=ProjectRole.choices, blank=True)
    custom_role = models.ForeignKey(CustomRole, null=True, blank=True, on_delete=models.CASCADE, related_name="grants")
    deny = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user", "deny"], name="grant_user_unique"),
            models.UniqueConstraint(fields=["project", "team", "deny"], name="grant_team_unique"),
            _one_principal("grant"),
            models.CheckConstraint(
                condition=(
                    models.Q(custom_role__isnull=True, deny=False) & ~models.Q(role="")
                    | models.Q(custom_role__isnull=False, role="")
                ),
                name="grant_role_xor_custom",
            ),
        ]

    def __str__(self):
        what = self.custom_role.name if self.custom_role_id else self.role
        return f"{'deny ' if self.deny else ''}{what} for {self.user or self.team} on {self.project}"

    @property
    def principal(self):
        return self.user or self.team


class ServiceAccount(models.Model):
    """A bot user owned by a workspace (for CI and pipelines): it has tokens, never a password."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="service_account"
    )
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="service_accounts")
    description = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["workspace__slug", "user__username"]

    def __str__(self):
        return f"{self.user.username} (service account of {self.workspace.slug})"


class TokenWorkspace(models.Model):
    """Binds an API token to one workspace: it reaches nothing outside it (``projects.permissions``)."""

    token = models.OneToOneField(ApiToken, on_delete=models.CASCADE, primary_key=True, related_name="workspace_binding")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="bound_tokens")

    def __str__(self):
        return f"{self.token.prefix} → {self.workspace.slug}"


class WorkspaceQuota(models.Model):
    """Limits of one workspace; an empty field takes the installation default (``RUNSTORE_QUOTA_*``)."""

    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, primary_key=True, related_name="quota")
    requests_per_second = models.FloatField(null=True, blank=True, help_text="API requests per second, per token.")
    burst = models.PositiveIntegerField(null=True, blank=True, help_text="Requests a token may make at once.")
    workspace_requests_per_second = models.FloatField(
        null=True, blank=True, help_text="API requests per second, all tokens of the workspace together."
    )
    storage_bytes = models.BigIntegerField(null=True, blank=True, help_text="Series points, blobs and previews.")
    runs_per_project = models.PositiveIntegerField(null=True, blank=True)
    projects = models.PositiveIntegerField(null=True, blank=True)
    upload_bytes = models.BigIntegerField(null=True, blank=True, help_text="The largest single upload.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"quota of {self.workspace_id}"


class WorkspaceUsage(models.Model):
    """Bytes a workspace uses: the exact recount (``ProjectUsage``) plus what was admitted since.

    Storage admission is one conditional UPDATE of ``admitted`` (``projects.quotas``), so concurrent
    writers can overshoot the quota by at most one batch.
    """

    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, primary_key=True, related_name="usage")
    bytes = models.BigIntegerField(default=0, help_text="The last exact recount.")
    admitted = models.BigIntegerField(default=0, help_text="Bytes admitted since the last recount.")
    recounted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.workspace_id}: {self.bytes} bytes"


class RateBucket(models.Model):
    """A request-rate token bucket kept in the database (the embedded default; Redis in production)."""

    key = models.CharField(max_length=200, primary_key=True)
    tokens = models.FloatField()
    updated = models.FloatField(help_text="Unix time of the last refill.")


class AuditEvent(models.Model):
    """One audited event: who, what, when, from where. Written by ``projects.audit.record`` only; never changed."""

    at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)
    action = models.CharField(max_length=60, db_index=True, editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    actor_name = models.CharField(max_length=150, blank=True, editable=False)
    workspace = models.ForeignKey(
        Workspace, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    target_type = models.CharField(max_length=60, blank=True, editable=False)
    target_id = models.CharField(max_length=100, blank=True, editable=False)
    target = models.CharField(max_length=300, blank=True, editable=False)
    address = models.GenericIPAddressField(null=True, blank=True, editable=False)
    user_agent = models.CharField(max_length=300, blank=True, editable=False)
    token_prefix = models.CharField(max_length=40, blank=True, editable=False)
    request_id = models.CharField(max_length=64, blank=True, editable=False)
    details = models.JSONField(default=dict, blank=True, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["workspace", "-at"], name="audit_workspace_at")]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or '-'} {self.action} {self.target}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AuditEventImmutable("audit events are never changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditEventImmutable("audit events are removed only by the retention purge (projects.audit)")


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

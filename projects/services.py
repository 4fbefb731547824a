"""Domain writes for workspaces, projects, members, teams, roles, service accounts and tokens.

Every change of who may do what goes through here: the service checks the actor's right (through
``projects.permissions``; ``by=None`` is a trusted internal call such as a migration or a management
command), turns roles into guardian object permissions, and writes the audit entry.
"""

import re

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.dispatch import Signal
from guardian.shortcuts import assign_perm, remove_perm

from accounts import services as account_services

from . import audit, permissions, quotas
from .models import (
    CustomRole,
    Membership,
    Project,
    ProjectGrant,
    ProjectRole,
    Role,
    ServiceAccount,
    Team,
    TokenWorkspace,
    Visibility,
    Workspace,
    WorkspaceQuota,
    WorkspaceRole,
    slug_validator,
)

__all__ = [
    "Role",
    "ProjectRole",
    "WorkspaceRole",
    "set_membership",
    "remove_membership",
    "set_project_role",
    "grant_custom_role",
    "remove_project_grant",
    "create_team",
    "set_team_members",
    "delete_team",
    "save_custom_role",
    "delete_custom_role",
    "create_service_account",
    "issue_token",
    "revoke_token",
    "create_workspace",
    "create_project",
    "update_project",
    "delete_project",
    "set_quota",
    "ensure_personal_workspace",
    "resolve_project",
]


def _principal(principal) -> dict:
    """``{"user": u}`` or ``{"team": t}`` for the grant tables."""
    if isinstance(principal, Team):
        return {"team": principal, "user": None}
    if isinstance(principal, get_user_model()):
        return {"user": principal, "team": None}
    raise TypeError(f"a member is a user or a team, not {type(principal).__name__}")


def _guardian_target(principal):
    return principal.group if isinstance(principal, Team) else principal


def _name(principal) -> str:
    return f"team {principal}" if isinstance(principal, Team) else principal.username


def _sync(obj, principal, wanted: set[str], managed: list[str]) -> None:
    """Make ``principal`` hold exactly the ``wanted`` codenames among ``managed`` on ``obj``."""
    target = _guardian_target(principal)
    label = obj._meta.app_label
    for name in managed:
        if name in wanted:
            assign_perm(f"{label}.{name}", target, obj)
        else:
            remove_perm(f"{label}.{name}", target, obj)


_WORKSPACE_CODENAMES = sorted({permissions.workspace_codename(a) for a in permissions.WORKSPACE_ACTIONS}) + [
    permissions.all_projects_codename(a) for a in permissions.PROJECT_ACTIONS
]
_PROJECT_CODENAMES = [permissions.project_codename(a) for a in permissions.PROJECT_ACTIONS] + [
    permissions.deny_codename(a) for a in permissions.PROJECT_ACTIONS
]


def _sync_workspace(workspace: Workspace, principal) -> None:
    membership = Membership.objects.filter(workspace=workspace, **_principal(principal)).first()
    wanted: set[str] = set()
    if membership is not None:
        role = permissions.WORKSPACE_ROLES[membership.role]
        wanted |= {permissions.workspace_codename(a) for a in role["workspace"]}
        wanted |= {permissions.all_projects_codename(a) for a in role["projects"]}
    _sync(workspace, principal, wanted, _WORKSPACE_CODENAMES)


def grant_actions(grant: ProjectGrant) -> tuple[str, ...]:
    if grant.custom_role is not None:
        return tuple(grant.custom_role.actions)
    return permissions.PROJECT_ROLES[grant.role]


def _sync_project(project: Project, principal) -> None:
    wanted: set[str] = set()
    for grant in ProjectGrant.objects.filter(project=project, **_principal(principal)).select_related("custom_role"):
        name = permissions.deny_codename if grant.deny else permissions.project_codename
        wanted |= {name(a) for a in grant_actions(grant)}
    _sync(project, principal, wanted, _PROJECT_CODENAMES)


def _require(by, action: str, obj) -> None:
    if by is not None:
        permissions.require(by, action, obj)


def _owners_left(workspace: Workspace, *, without) -> int:
    return (
        Membership.objects.filter(workspace=workspace, role=WorkspaceRole.OWNER, user__isnull=False)
        .exclude(**{k: v for k, v in _principal(without).items() if v is not None})
        .count()
    )


@transaction.atomic
def set_membership(workspace: Workspace, principal, role: str, *, by=None) -> Membership:
    """Give a user or a team ``role`` (owner, admin, member) in ``workspace``; needs ``manage`` there.

    Only an owner makes or unmakes owners; the last owner cannot be demoted.
    """
    return _set_membership(workspace, principal, role, by=by)


def _set_membership(workspace: Workspace, principal, role: str, *, by=None, audited: bool = True) -> Membership:
    # ``audited=False``: the membership is part of another audited event (a new workspace's owner).
    _require(by, "manage", workspace)
    try:
        role = WorkspaceRole(role).value
    except ValueError:
        raise ValidationError({"role": f"{role!r} is not a workspace role; use owner, admin or member"}) from None
    if isinstance(principal, Team) and principal.workspace_id != workspace.pk:
        raise ValidationError({"team": f"team {principal} belongs to another workspace"})
    if isinstance(principal, Team) and role == WorkspaceRole.OWNER:
        raise ValidationError({"role": "a team cannot own a workspace; make its members owners"})
    existing = Membership.objects.select_for_update().filter(workspace=workspace, **_principal(principal)).first()
    previous = existing.role if existing else None
    if by is not None and WorkspaceRole.OWNER in (role, previous) and not _is_owner(by, workspace):
        raise PermissionDenied("Only a workspace owner may make or unmake owners.")
    if previous == WorkspaceRole.OWNER and role != previous and not _owners_left(workspace, without=principal):
        raise ValidationError({"role": f"{_name(principal)} is the last owner of {workspace.slug}"})
    membership, _ = Membership.objects.update_or_create(
        workspace=workspace, **_principal(principal), defaults={"role": role}
    )
    _sync_workspace(workspace, principal)
    if previous != role and audited:
        audit.record(
            "member.role_changed" if previous else "member.added",
            actor=by,
            workspace=workspace,
            target=principal,
            details={"role": role, "previous": previous},
        )
    return membership


def _is_owner(user, workspace: Workspace) -> bool:
    return (
        user.is_superuser
        or Membership.objects.filter(workspace=workspace, user=user, role=WorkspaceRole.OWNER).exists()
    )


@transaction.atomic
def remove_membership(workspace: Workspace, principal, *, by=None) -> None:
    """Remove a user or team from ``workspace`` (and from its projects' grants); never the last owner."""
    existing = Membership.objects.select_for_update().filter(workspace=workspace, **_principal(principal)).first()
    if by is not None and not (isinstance(principal, get_user_model()) and principal.pk == by.pk):
        _require(by, "manage", workspace)  # anyone may leave; removing others needs manage
    if existing is None:
        return
    if existing.role == WorkspaceRole.OWNER:
        if by is not None and not _is_owner(by, workspace):
            raise PermissionDenied("Only a workspace owner may remove an owner.")
        if not _owners_left(workspace, without=principal):
            raise ValidationError({"member": f"{_name(principal)} is the last owner of {workspace.slug}"})
    existing.delete()
    _sync_workspace(workspace, principal)
    grants = ProjectGrant.objects.filter(project__workspace=workspace, **_principal(principal))
    projects = {grant.project for grant in grants.select_related("project")}
    grants.delete()
    for project in projects:
        _sync_project(project, principal)
    audit.record("member.removed", actor=by, workspace=workspace, target=principal, details={"role": existing.role})


def _check_project_principal(project: Project, principal) -> None:
    if isinstance(principal, Team) and principal.workspace_id != project.workspace_id:
        raise ValidationError({"team": f"team {principal} belongs to another workspace"})


def _project_owners_left(project: Project, *, without) -> int:
    return (
        ProjectGrant.objects.filter(project=project, role=ProjectRole.OWNER, deny=False)
        .exclude(**{k: v for k, v in _principal(without).items() if v is not None})
        .count()
    )


@transaction.atomic
def set_project_role(project: Project, principal, role: str, *, by=None) -> ProjectGrant:
    """Give a user or team the built-in ``role`` (owner, contributor, viewer) on ``project``; needs ``manage``."""
    _require(by, "manage", project)
    try:
        role = ProjectRole(role).value
    except ValueError:
        raise ValidationError({"role": f"{role!r} is not a project role; use owner, contributor or viewer"}) from None
    return _set_grant(project, principal, role=role, custom_role=None, by=by)


@transaction.atomic
def grant_custom_role(project: Project, principal, custom_role: CustomRole, *, deny: bool = False, by=None):
    """Grant (or, with ``deny``, deny) the actions of ``custom_role`` to a user or team on ``project``."""
    _require(by, "manage", project)
    if custom_role.workspace_id != project.workspace_id:
        raise ValidationError({"custom_role": f"role {custom_role.name!r} belongs to another workspace"})
    return _set_grant(project, principal, role="", custom_role=custom_role, deny=deny, by=by)


def _set_grant(
    project, principal, *, role: str, custom_role, deny: bool = False, by=None, audited: bool = True
) -> ProjectGrant:
    _check_project_principal(project, principal)
    existing = (
        ProjectGrant.objects.select_for_update(of=("self",))
        .filter(project=project, deny=deny, **_principal(principal))
        .select_related("custom_role")
        .first()
    )
    if (
        existing is not None
        and existing.role == ProjectRole.OWNER
        and role != ProjectRole.OWNER
        and not _project_owners_left(project, without=principal)
    ):
        raise ValidationError({"role": f"{_name(principal)} is the last owner of {project.full_name}"})
    previous = None
    if existing is not None:
        previous = existing.custom_role.name if existing.custom_role is not None else existing.role
    unchanged = existing is not None and (existing.role, existing.custom_role_id) == (
        role,
        custom_role.pk if custom_role else None,
    )
    grant, _ = ProjectGrant.objects.update_or_create(
        project=project, deny=deny, **_principal(principal), defaults={"role": role, "custom_role": custom_role}
    )
    _sync_project(project, principal)
    now = custom_role.name if custom_role else role
    if not unchanged and audited:
        audit.record(
            "project_member.role_changed" if previous else "project_member.added",
            actor=by,
            project=project,
            target=principal,
            details={"role": now, "previous": previous, "deny": deny, "custom": custom_role is not None},
        )
    return grant


@transaction.atomic
def remove_project_grant(project: Project, principal, *, deny: bool = False, by=None) -> None:
    """Remove a user's or team's (allowing or denying) grant on ``project``; never the last owner."""
    _require(by, "manage", project)
    grant = ProjectGrant.objects.select_for_update().filter(project=project, deny=deny, **_principal(principal)).first()
    if grant is None:
        return
    if grant.role == ProjectRole.OWNER and not _project_owners_left(project, without=principal):
        raise ValidationError({"member": f"{_name(principal)} is the last owner of {project.full_name}"})
    grant.delete()
    _sync_project(project, principal)
    audit.record(
        "project_member.removed",
        actor=by,
        project=project,
        target=principal,
        details={"role": grant.role or (grant.custom_role.name if grant.custom_role is not None else ""), "deny": deny},
    )


@transaction.atomic
def create_team(workspace: Workspace, name: str, *, by=None, description: str = "", members=()) -> Team:
    """A team of ``workspace``; needs ``manage`` there. Give it roles with set_membership/set_project_role."""
    _require(by, "manage", workspace)
    _validate_field("name", slug_validator, name)
    if Team.objects.filter(workspace=workspace, name=name).exists():
        raise ValidationError({"name": f"team {workspace.slug}/{name} already exists"})
    group = Group.objects.create(name=f"team:{workspace.pk}:{name}")
    team = Team.objects.create(workspace=workspace, group=group, name=name, description=description)
    members = list(members)
    group.user_set.set(members)
    details = {"members": sorted(u.username for u in members)}
    audit.record("team.created", actor=by, workspace=workspace, target=team, details=details)
    return team


@transaction.atomic
def set_team_members(team: Team, users, *, by=None) -> None:
    """Make ``users`` exactly the members of ``team``; needs ``manage`` on its workspace."""
    _require(by, "manage", team.workspace)
    users = list(users)
    before = set(team.group.user_set.values_list("username", flat=True))
    team.group.user_set.set(users)
    after = {u.username for u in users}
    if before != after:
        audit.record(
            "team.members_changed",
            actor=by,
            workspace=team.workspace,
            target=team,
            details={"added": sorted(after - before), "removed": sorted(before - after)},
        )


@transaction.atomic
def delete_team(team: Team, *, by=None) -> None:
    _require(by, "manage", team.workspace)
    workspace, group = team.workspace, team.group
    audit.record("team.deleted", actor=by, workspace=workspace, target=team)
    team.delete()
    group.delete()  # its object permissions go with it


def _clean_actions(actions) -> list[str]:
    if not isinstance(actions, (list, tuple, set, frozenset)) or not actions:
        raise ValidationError({"actions": f"choose one or more of {', '.join(permissions.PROJECT_ACTIONS)}"})
    unknown = sorted(set(actions) - set(permissions.PROJECT_ACTIONS))
    if unknown:
        raise ValidationError(
            {
                "actions": f"unknown action(s) {', '.join(map(str, unknown))}; "
                f"use {', '.join(permissions.PROJECT_ACTIONS)}"
            }
        )
    return [a for a in permissions.PROJECT_ACTIONS if a in set(actions)]


@transaction.atomic
def save_custom_role(
    workspace: Workspace, name: str, actions, *, by=None, description: str = "", role: CustomRole | None = None
) -> CustomRole:
    """Create (or, given ``role``, change) a custom role of ``workspace``; its grants follow the change."""
    _require(by, "manage", workspace)
    actions = _clean_actions(actions)
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationError({"name": "give the role a name of 1-100 characters"})
    clash = CustomRole.objects.filter(workspace=workspace, name=name)
    if role is not None:
        clash = clash.exclude(pk=role.pk)
    if clash.exists():
        raise ValidationError({"name": f"role {name!r} already exists in {workspace.slug}"})
    if role is None:
        role = CustomRole.objects.create(workspace=workspace, name=name, actions=actions, description=description)
        audit.record("custom_role.created", actor=by, workspace=workspace, target=role, details={"actions": actions})
        return role
    if role.workspace_id != workspace.pk:
        raise ValidationError({"role": "the role belongs to another workspace"})
    previous = {"name": role.name, "actions": list(role.actions), "description": role.description}
    if previous == {"name": name, "actions": actions, "description": description}:
        return role
    role.name, role.actions, role.description = name, actions, description
    role.save()
    for grant in role.grants.select_related("project", "user", "team"):
        _sync_project(grant.project, grant.principal)
    audit.record(
        "custom_role.changed",
        actor=by,
        workspace=workspace,
        target=role,
        details={"actions": actions, "previous": previous},
    )
    return role


@transaction.atomic
def delete_custom_role(role: CustomRole, *, by=None) -> None:
    _require(by, "manage", role.workspace)
    grants = [(g.project, g.principal) for g in role.grants.select_related("project", "user", "team")]
    audit.record("custom_role.deleted", actor=by, workspace=role.workspace, target=role)
    role.delete()
    for project, principal in grants:
        _sync_project(project, principal)


@transaction.atomic
def create_service_account(
    workspace: Workspace, username: str, *, by=None, role: str = WorkspaceRole.MEMBER, description: str = ""
) -> ServiceAccount:
    """A bot user of ``workspace`` with ``role`` there: tokens only, no password, no UI login."""
    _require(by, "manage", workspace)
    User = get_user_model()
    _validate_field("username", slug_validator, username)
    if User.objects.filter(username=username).exists():
        raise ValidationError({"username": f"user {username!r} already exists"})
    user = User(username=username, is_active=True)
    user.set_unusable_password()
    user._runstore_service_account = True  # type: ignore[attr-defined]  # no personal workspace (projects.signals)
    user.save()
    account = ServiceAccount.objects.create(user=user, workspace=workspace, description=description, created_by=by)
    audit.record("service_account.created", actor=by, workspace=workspace, target=user, details={"role": role})
    _set_membership(workspace, user, role, by=None, audited=False)
    return account


def _service_workspace(user) -> Workspace | None:
    account = ServiceAccount.objects.filter(user=user).select_related("workspace").first()
    return account.workspace if account else None


@transaction.atomic
def issue_token(user, *, name: str = "", scope: str = "write", expires_at=None, workspace=None, by=None):
    """Issue an API token for ``user`` (yourself, or a service account of a workspace you manage).

    ``workspace`` binds the token to it. A service account's token is always bound to its workspace.
    Returns (token, raw secret); the secret is never stored or shown again.
    """
    by = by or user
    own = service = _service_workspace(user)
    if user.pk != by.pk:
        if service is None:
            raise PermissionDenied("You may only create tokens for yourself or a service account you manage.")
        permissions.require(by, "manage", service)
    if own is not None:
        if workspace is not None and workspace.pk != own.pk:
            raise ValidationError({"workspace": f"a token of {user.username} can only reach {own.slug}"})
        workspace = own
    if workspace is not None and not permissions.can(user, "view", workspace):
        raise ValidationError({"workspace": f"{user.username} is not a member of {workspace.slug}"})
    with audit.about(workspace=workspace):
        token, raw = account_services.issue_token(user, name=name, scope=scope, expires_at=expires_at, by=by)
    if workspace is not None:
        TokenWorkspace.objects.create(token=token, workspace=workspace)
    return token, raw


def revoke_token(token, *, by) -> None:
    """Revoke ``token``: its owner, a manager of the service account's workspace, or staff."""
    if token.user_id != by.pk and not by.is_superuser:
        service = _service_workspace(token.user)
        if service is None:
            raise PermissionDenied("You may only revoke your own tokens.")
        permissions.require(by, "manage", service)
    account_services.revoke_token(token, by=by)


def _free_workspace_slug(base: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "-", base).strip("-._")[:90] or "user"
    candidate, n = base, 1
    while Workspace.objects.filter(slug=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def ensure_personal_workspace(user) -> Workspace:
    existing = Workspace.objects.filter(personal_owner=user).first()
    if existing:
        return existing
    with transaction.atomic():
        workspace = Workspace.objects.create(
            slug=_free_workspace_slug(user.username), name=user.username, personal_owner=user
        )
        _set_membership(workspace, user, WorkspaceRole.OWNER, audited=False)
    return workspace


def _validate_field(name, validator, value) -> None:
    try:
        validator(value)
    except ValidationError as exc:
        raise ValidationError({name: exc.messages}) from None


@transaction.atomic
def create_workspace(user, slug: str, name: str = "") -> Workspace:
    _validate_field("slug", slug_validator, slug)
    if Workspace.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"workspace {slug!r} already exists"})
    workspace = Workspace.objects.create(slug=slug, name=name or slug)
    _set_membership(workspace, user, WorkspaceRole.OWNER, audited=False)
    audit.record("workspace.created", actor=user, workspace=workspace, target=workspace)
    return workspace


def _derive_key(workspace: Workspace, slug: str) -> str:
    letters = re.sub(r"[^A-Za-z]", "", slug).upper()
    base = (letters[:3] if len(letters) >= 2 else f"P{letters}X")[:3]
    taken = set(Project.objects.filter(workspace=workspace, key__startswith=base).values_list("key", flat=True))
    if base not in taken:
        return base
    n = 2
    while f"{base}{n}" in taken:
        n += 1
    return f"{base}{n}"


def create_project(
    user,
    workspace: Workspace,
    slug: str,
    key: str | None = None,
    description: str = "",
    visibility: str = Visibility.PRIVATE,
) -> Project:
    """Create a project in ``workspace``; the caller must hold ``write`` there (403 otherwise) and
    becomes its owner. The workspace's project quota applies."""
    permissions.require(user, "write", workspace)
    if visibility not in Visibility.values:
        raise ValidationError({"visibility": f"{visibility!r} is not one of {', '.join(Visibility.values)}"})
    _validate_field("slug", slug_validator, slug)
    if Project.objects.filter(workspace=workspace, slug=slug).exists():
        raise ValidationError({"slug": f"project {workspace.slug}/{slug} already exists"})
    if key:
        key = key.upper()
        _validate_field("key", Project._meta.get_field("key").run_validators, key)
        if Project.objects.filter(workspace=workspace, key=key).exists():
            raise ValidationError({"key": f"key {key!r} is already used in workspace {workspace.slug}"})
    try:
        with transaction.atomic():
            quotas.admit_project(workspace)
            project = Project.objects.create(
                workspace=workspace,
                slug=slug,
                key=key or _derive_key(workspace, slug),
                description=description,
                visibility=visibility,
                created_by=user,
            )
            if not user.is_superuser or Membership.objects.filter(workspace=workspace, user=user).exists():
                _set_grant(project, user, role=ProjectRole.OWNER, custom_role=None, audited=False)
            audit.record(
                "project.created", actor=user, project=project, target=project, details={"visibility": visibility}
            )
            return project
    except IntegrityError:
        # A concurrent create won the race for the same slug or key.
        existing = Project.objects.filter(workspace=workspace, slug=slug).first()
        if existing is not None:
            return existing
        raise ValidationError({"key": "key collided with a concurrent create; retry"}) from None


def parse_project_name(full_name: str) -> tuple[str, str]:
    """Split ``"workspace/project"``; raise ValidationError naming the problem."""
    if not isinstance(full_name, str) or full_name.count("/") != 1:
        raise ValidationError({"project": "must look like 'workspace/project'"})
    workspace_slug, project_slug = full_name.split("/")
    for label, value in (("workspace", workspace_slug), ("project", project_slug)):
        try:
            slug_validator(value)
        except ValidationError as exc:
            raise ValidationError({"project": f"{label} part {value!r}: {exc.messages[0]}"}) from None
    return workspace_slug, project_slug


def resolve_project(user, full_name: str, *, create: bool = False) -> Project:
    """The project ``workspace/project`` that ``user`` may see.

    With ``create``, a missing project is created when the user may write to
    the workspace. Anything the user cannot see raises Http404.
    """
    from django.http import Http404

    workspace_slug, project_slug = parse_project_name(full_name)
    # Found by key, then checked by the one-statement rule (every run created asks this): the same
    # answer as ``for_user(user, "view")`` without building its subqueries. The workspace's quota
    # comes along for the services' admission checks.
    project = (
        Project.objects.select_related("workspace__quota")
        .filter(workspace__slug=workspace_slug, slug=project_slug)
        .first()
    )
    if project is not None and "view" in permissions.project_actions(user, project.pk):
        return project
    if create:
        workspace = Workspace.objects.for_user(user, "write").filter(slug=workspace_slug).first()
        if workspace is not None:
            try:
                return create_project(user, workspace, project_slug)
            except ValidationError:
                # A concurrent request created it between our look-up and our insert.
                existing = (
                    Project.objects.select_related("workspace").filter(workspace=workspace, slug=project_slug).first()
                )
                if existing is None:
                    raise
                return existing
    raise Http404(f"project {full_name!r} not found")


_PROJECT_SETTINGS = ("description", "visibility")


@transaction.atomic
def update_project(project: Project, *, by, **changes) -> Project:
    """Change a project's settings (description, visibility); needs ``manage`` there. Audited."""
    permissions.require(by, "manage", project)
    unknown = sorted(set(changes) - set(_PROJECT_SETTINGS))
    if unknown:
        raise ValidationError({unknown[0]: "not a project setting"})
    if "visibility" in changes and changes["visibility"] not in Visibility.values:
        raise ValidationError({"visibility": f"{changes['visibility']!r} is not one of {', '.join(Visibility.values)}"})
    if "description" in changes and not isinstance(changes["description"], str):
        raise ValidationError({"description": "must be a string"})
    before = {name: getattr(project, name) for name in changes}
    for name, value in changes.items():
        setattr(project, name, value)
    changed = {name: {"from": before[name], "to": value} for name, value in changes.items() if before[name] != value}
    if changed:
        project.save(update_fields=list(changed))
        audit.record("project.settings_changed", actor=by, project=project, target=project, details=changed)
    return project


# Sent before a project is deleted, outside the deleting transaction: the apps that keep data in a
# project (runs: points, files, exports) remove it, so nothing is left behind without a row to find it.
project_emptying = Signal()


def delete_project(project: Project, *, by) -> None:
    """Delete a project and everything in it; needs ``manage`` on its workspace. Audited.

    The project's contents go first (``project_emptying``; each run is purged in its own transaction,
    as from the trash), then the project row with its grants and usage, with the audit entry.
    """
    permissions.require(by, "manage", project.workspace)
    project_emptying.send(sender=Project, project=project)
    with transaction.atomic():
        audit.record("project.deleted", actor=by, workspace=project.workspace, project=project, target=project)
        project.delete()


_QUOTA_FIELDS = (
    "requests_per_second",
    "burst",
    "workspace_requests_per_second",
    "storage_bytes",
    "runs_per_project",
    "projects",
    "upload_bytes",
)


@transaction.atomic
def set_quota(workspace: Workspace, *, by, **limits) -> WorkspaceQuota:
    """Set a workspace's quotas (``None``: the installation default); staff only. Audited."""
    if by is not None and not by.is_superuser:
        raise PermissionDenied("Only staff may change quotas.")
    unknown = sorted(set(limits) - set(_QUOTA_FIELDS))
    if unknown:
        raise ValidationError({unknown[0]: "not a quota"})
    for name, value in limits.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ValidationError({name: "must be a non-negative number or empty"})
    quota, _ = WorkspaceQuota.objects.select_for_update().get_or_create(workspace=workspace)
    changed = {n: {"from": getattr(quota, n), "to": v} for n, v in limits.items() if getattr(quota, n) != v}
    for name, value in limits.items():
        setattr(quota, name, value)
    quota.save()
    if changed:
        audit.record("quota.changed", actor=by, workspace=workspace, target=workspace, details=changed)
    return quota

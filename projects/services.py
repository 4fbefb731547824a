"""Domain writes for workspaces, projects and memberships."""

import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from guardian.shortcuts import assign_perm, remove_perm

from . import permissions
from .models import Membership, Project, Role, Workspace, slug_validator


def _grant(user, workspace: Workspace, role: str) -> None:
    wanted = set(permissions.ROLE_ACTIONS[role])
    for action in permissions.ACTIONS:
        perm = f"projects.{permissions.codename(action, 'workspace')}"
        if action in wanted:
            assign_perm(perm, user, workspace)
        else:
            remove_perm(perm, user, workspace)


@transaction.atomic
def set_membership(workspace: Workspace, user, role: str) -> Membership:
    role = Role(role).value
    membership, _ = Membership.objects.update_or_create(workspace=workspace, user=user, defaults={"role": role})
    _grant(user, workspace, role)
    return membership


@transaction.atomic
def remove_membership(workspace: Workspace, user) -> None:
    Membership.objects.filter(workspace=workspace, user=user).delete()
    for action in permissions.ACTIONS:
        remove_perm(f"projects.{permissions.codename(action, 'workspace')}", user, workspace)


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
        set_membership(workspace, user, Role.OWNER)
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
    set_membership(workspace, user, Role.OWNER)
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


def create_project(user, workspace: Workspace, slug: str, key: str | None = None, description: str = "") -> Project:
    """Create a project in ``workspace``; the caller must hold ``write`` there (403 otherwise)."""
    permissions.require(user, "write", workspace)
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
            return Project.objects.create(
                workspace=workspace,
                slug=slug,
                key=key or _derive_key(workspace, slug),
                description=description,
                created_by=user,
            )
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
    project = (
        Project.objects.for_user(user, "view")
        .select_related("workspace")
        .filter(workspace__slug=workspace_slug, slug=project_slug)
        .first()
    )
    if project is not None:
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

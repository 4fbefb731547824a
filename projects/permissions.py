"""The one permission policy of Runstore.

Every queryset that reaches a user (API, UI, admin, query engine) is scoped
here, and every yes/no decision is taken here. Rights are django-guardian
object permissions, held directly or through a team (a Django group), on a
workspace or on a single project.

Project actions (:data:`PROJECT_ACTIONS`):

* ``view``    read the project and everything logged in it (files included)
* ``export``  bulk exports of runs and files
* ``write``   create runs and log to them
* ``delete``  move runs to the trash, restore and purge them
* ``manage``  members, roles and settings of the project

Workspace actions (:data:`WORKSPACE_ACTIONS`): ``view`` (sees the workspace:
a member, or anyone who may view one of its projects), ``member`` (a member:
also sees its members, teams, roles, service accounts, usage and its
workspace-readable projects), ``write``
(create projects), ``manage`` (members, teams, custom roles, service
accounts). Workspace owners and admins also hold every project action on
every project of the workspace (``all_projects_*`` permissions on the
workspace). A project is private to its members unless its visibility is
``workspace``: then every workspace member may view it.

An explicit deny on a project (``deny_*`` permissions, from a custom role
granted as a denial) wins over any allow, also one inherited from a
workspace role; a denied ``view`` denies everything. Superusers may do
everything.

API tokens narrow this further (:func:`token_limits`): a token's scope caps the
actions (``read`` → view, export; ``write`` → + write, delete; ``admin`` →
everything), and a token bound to a workspace reaches nothing outside it.

Views answer 404 for what the user cannot see and 403 for what they can see
but may not change: :func:`get_visible_or_404` and :func:`require`. Both are
Django's own exceptions (``Http404``, ``PermissionDenied``), which the UI
renders as pages and the API (``tracker.api.errors``) as JSON errors.

Objects a user keeps for themselves inside a project and may share with it
(saved views of the run table) follow :func:`scope_owned`/:func:`require_owned`.
"""

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Exists, OuterRef, Q
from django.http import Http404

PROJECT_ACTIONS = ("view", "export", "write", "delete", "manage")
WORKSPACE_ACTIONS = ("view", "member", "write", "manage")
ACTIONS = PROJECT_ACTIONS

# What each built-in role holds. Workspace roles: actions on the workspace itself, and the project
# actions they hold on every project of the workspace.
PROJECT_ROLES = {
    "viewer": ("view", "export"),
    "contributor": ("view", "export", "write", "delete"),
    "owner": PROJECT_ACTIONS,
}
WORKSPACE_ROLES = {
    "member": {"workspace": ("view", "member", "write"), "projects": ()},
    "admin": {"workspace": WORKSPACE_ACTIONS, "projects": PROJECT_ACTIONS},
    "owner": {"workspace": WORKSPACE_ACTIONS, "projects": PROJECT_ACTIONS},
}
TOKEN_SCOPES = {
    "read": frozenset({"view", "member", "export"}),
    "write": frozenset({"view", "member", "export", "write", "delete"}),
    "admin": frozenset(PROJECT_ACTIONS) | frozenset(WORKSPACE_ACTIONS),
}

_PROJECT_CODENAMES = {
    "view": "view_project",
    "export": "export_project",
    "write": "write_project",
    "delete": "delete_runs_project",
    "manage": "manage_project",
}


def _check_action(action: str, allowed=PROJECT_ACTIONS) -> None:
    if action not in allowed:
        raise ValueError(f"unknown action {action!r}; expected one of {allowed}")


def project_codename(action: str) -> str:
    """The guardian codename on a Project that allows ``action``."""
    _check_action(action)
    return _PROJECT_CODENAMES[action]


def deny_codename(action: str) -> str:
    """The guardian codename on a Project that denies ``action``."""
    _check_action(action)
    return f"deny_{action}_project"


def workspace_codename(action: str) -> str:
    """The guardian codename on a Workspace for the workspace action ``action``."""
    _check_action(action, WORKSPACE_ACTIONS)
    return "view_workspace" if action == "member" else f"{action}_workspace"


def all_projects_codename(action: str) -> str:
    """The guardian codename on a Workspace that allows ``action`` on every project in it."""
    _check_action(action)
    return f"all_projects_{action}"


def codename(action: str, model_name: str) -> str:
    return workspace_codename(action) if model_name == "workspace" else project_codename(action)


@dataclass(frozen=True)
class TokenLimits:
    actions: frozenset[str]
    workspace_id: int | None


def token_limits(user) -> TokenLimits | None:
    """What the API token ``user`` authenticated with allows (``None``: no token, a session)."""
    token = getattr(user, "api_token", None)
    if token is None:
        return None
    binding = getattr(token, "_workspace_binding_id", False)
    if binding is False:
        from .models import TokenWorkspace

        if type(token).workspace_binding.is_cached(token):  # read with the token (projects.authentication)
            bound = getattr(token, "workspace_binding", None)
            binding = bound.workspace_id if bound is not None else None
        else:
            binding = TokenWorkspace.objects.filter(token=token).values_list("workspace_id", flat=True).first()
        token._workspace_binding_id = binding
    return TokenLimits(TOKEN_SCOPES.get(getattr(token, "scope", "admin"), frozenset()), binding)


def _holds(perm_model, user, codename_: str, outer: str = "pk"):
    """An Exists() over a direct-FK guardian table: user (or a team of theirs) holds the perm."""
    user_perms = perm_model["user"].objects.filter(
        content_object=OuterRef(outer), user=user, permission__codename=codename_
    )
    group_perms = perm_model["group"].objects.filter(
        content_object=OuterRef(outer), group__in=user.groups.all(), permission__codename=codename_
    )
    return Exists(user_perms) | Exists(group_perms)


def _workspace_perm_models():
    from .models import WorkspaceGroupObjectPermission, WorkspaceUserObjectPermission

    return {"user": WorkspaceUserObjectPermission, "group": WorkspaceGroupObjectPermission}


def _project_perm_models():
    from .models import ProjectGroupObjectPermission, ProjectUserObjectPermission

    return {"user": ProjectUserObjectPermission, "group": ProjectGroupObjectPermission}


def _is_anonymous(user) -> bool:
    return user is None or not user.is_authenticated or not user.is_active


def scope_workspaces(queryset, user, action: str = "view"):
    """Workspaces where ``user`` may perform the workspace action ``action``.

    ``view`` also lists a workspace the user reaches only through one of its projects.
    """
    _check_action(action, WORKSPACE_ACTIONS)
    if _is_anonymous(user):
        return queryset.none()
    limits = token_limits(user)
    if limits is not None:
        if action not in limits.actions:
            return queryset.none()
        if limits.workspace_id is not None:
            queryset = queryset.filter(pk=limits.workspace_id)
    if user.is_superuser:
        return queryset
    held = _holds(_workspace_perm_models(), user, workspace_codename(action))
    if action == "view":
        from .models import Project

        through_project = Project.objects.filter(workspace=OuterRef("pk"), pk__in=visible_project_ids(user))
        held = held | Exists(through_project)
    return queryset.filter(held)


def scope_projects(queryset, user, action: str = "view"):
    """Projects where ``user`` may perform ``action``: allowed on the project or its workspace, not denied."""
    _check_action(action)
    if _is_anonymous(user):
        return queryset.none()
    limits = token_limits(user)
    if limits is not None:
        if action not in limits.actions:
            return queryset.none()
        if limits.workspace_id is not None:
            queryset = queryset.filter(workspace_id=limits.workspace_id)
    if user.is_superuser:
        return queryset
    workspace, project = _workspace_perm_models(), _project_perm_models()
    allowed = _holds(workspace, user, all_projects_codename(action), outer="workspace_id") | _holds(
        project, user, project_codename(action)
    )
    if action == "view":
        allowed = allowed | (
            Q(visibility="workspace") & _holds(workspace, user, workspace_codename("view"), outer="workspace_id")
        )
    denied = _holds(project, user, deny_codename(action))
    if action != "view":
        denied = denied | _holds(project, user, deny_codename("view"))
    return queryset.filter(allowed & ~denied)


def visible_project_ids(user, action: str = "view"):
    from .models import Project

    return scope_projects(Project.objects.all(), user, action).values("pk")


def scope_by_project(queryset, user, action: str = "view", field: str = "project", *, deferred: bool = False):
    """Scope any model that belongs to a project (runs, attributes, files) by its project.

    With ``deferred``, a signed-in caller's queryset is left unfiltered because every object taken
    from it is checked by :func:`require_on_project` (one query) before use: the batch endpoint's
    look-up by key then carries no permission subquery. Anonymous callers still get nothing.
    """
    _check_action(action)
    if _is_anonymous(user):
        return queryset.none()
    if user.is_superuser or deferred:
        return queryset
    return queryset.filter(Q(**{f"{field}__in": visible_project_ids(user, action)}))


def require_in_project(queryset, user, project, action: str = "view", field: str = "project"):
    """``queryset`` narrowed to ``project`` once :func:`require` passes (403 otherwise).

    The permission is checked once, here; the queryset then filters on the
    project key alone, so a query over one project carries no permission
    subquery into every statement built from it.
    """
    require(user, action, project)
    return queryset.filter(**{field: project})


def can(user, action: str, obj) -> bool:
    """Whether ``user`` may perform ``action`` on a workspace or project instance."""
    from .models import Project, Workspace

    if _is_anonymous(user):
        return False
    if isinstance(obj, Workspace):
        return scope_workspaces(Workspace.objects.filter(pk=obj.pk), user, action).exists()
    _check_action(action)
    if isinstance(obj, Project):
        return scope_projects(Project.objects.filter(pk=obj.pk), user, action).exists()
    project = getattr(obj, "project", None)
    if project is not None:
        return can(user, action, project)
    raise TypeError(f"no permission rule for {type(obj).__name__}")


_remembered: ContextVar[dict | None] = ContextVar("project_actions_remembered", default=None)


@contextlib.contextmanager
def remember_actions():
    """Inside this block :func:`project_actions` answers each (caller, project) once: for a request
    that checks one project several times (its view, then each service it calls) and changes no
    permission. Each request (thread or task) has its own context, so nothing is shared."""
    token = _remembered.set({})
    try:
        yield
    finally:
        _remembered.reset(token)


def project_actions(user, project_id: int) -> frozenset[str]:
    """The actions ``user`` may perform on the project ``project_id``, in one query.

    The same rule as :func:`scope_projects` (allowed on the project or through the workspace,
    directly or through a team, minus denials, capped by the token), answered for one project by a
    single statement rather than one ``EXISTS`` query per action: the ingest endpoint calls it on
    every batch.
    """
    memo = _remembered.get()
    if memo is None:
        return _project_actions(user, project_id)
    key = (getattr(user, "pk", None), id(getattr(user, "api_token", None)), project_id)
    if key not in memo:
        memo[key] = _project_actions(user, project_id)
    return memo[key]


def _project_actions(user, project_id: int) -> frozenset[str]:
    if _is_anonymous(user):
        return frozenset()
    limits = token_limits(user)
    cap = limits.actions if limits is not None else frozenset(PROJECT_ACTIONS)
    if user.is_superuser:
        if limits is not None and limits.workspace_id is not None:
            from .models import Project

            if not Project.objects.filter(pk=project_id, workspace_id=limits.workspace_id).exists():
                return frozenset()
        return frozenset(PROJECT_ACTIONS) & cap
    with connection.cursor() as cursor:
        cursor.execute(_project_actions_sql(), {"user": user.pk, "project": project_id})
        rows = cursor.fetchall()
    if not rows:
        return frozenset()
    workspace_id, visibility = rows[0][2], rows[0][3]
    if limits is not None and limits.workspace_id not in (None, workspace_id):
        return frozenset()
    held = {(scope, name) for scope, name, _, _ in rows if scope is not None}
    actions = set()
    for action in PROJECT_ACTIONS:
        allowed = ("workspace", all_projects_codename(action)) in held or ("project", project_codename(action)) in held
        if action == "view" and visibility == "workspace" and ("workspace", workspace_codename("view")) in held:
            allowed = True
        if allowed and ("project", deny_codename(action)) not in held:
            actions.add(action)
    if "view" not in actions:
        return frozenset()
    return frozenset(actions) & cap


def _project_actions_sql() -> str:
    from django.contrib.auth.models import Permission

    from .models import Project

    workspace, project = _workspace_perm_models(), _project_perm_models()
    member_groups = project["user"]._meta.get_field("user").related_model.groups.through._meta
    user_column = member_groups.get_field("user").column
    group_column = member_groups.get_field("group").column

    def grants(models, scope, target):
        direct, grouped = (m._meta.db_table for m in (models["user"], models["group"]))
        return (
            f"SELECT '{scope}' AS scope, permission_id FROM {direct} "
            f"WHERE content_object_id = {target} AND user_id = %(user)s "
            f"UNION ALL SELECT '{scope}', permission_id FROM {grouped} "
            f"WHERE content_object_id = {target} AND group_id IN "
            f"(SELECT {group_column} FROM {member_groups.db_table} WHERE {user_column} = %(user)s)"
        )

    table = Project._meta.db_table
    in_workspace = f"(SELECT workspace_id FROM {table} WHERE id = %(project)s)"
    # One row per held permission, each carrying the project's workspace and visibility; a project
    # with no permission held still answers one row (scope NULL) so the caller learns both.
    return (
        f"SELECT h.scope, h.codename, pr.workspace_id, pr.visibility FROM {table} pr "
        f"LEFT JOIN (SELECT g.scope, p.codename FROM ({grants(workspace, 'workspace', in_workspace)} "
        f"UNION ALL {grants(project, 'project', '%(project)s')}) g "
        f"JOIN {Permission._meta.db_table} p ON p.id = g.permission_id) h ON 1 = 1 "
        f"WHERE pr.id = %(project)s"
    )


def readable_project_ids(user, action: str = "view") -> list[int] | None:
    """The ids of the projects where ``user`` may perform ``action`` (the rule of :func:`scope_projects`),
    read by one prepared statement instead of a queryset of permission subqueries: for a caller that
    filters many rows by project at once (the lineage chain). ``None``: every project (a superuser)."""
    _check_action(action)
    if _is_anonymous(user):
        return []
    limits = token_limits(user)
    if limits is not None and action not in limits.actions:
        return []
    bound = limits.workspace_id if limits is not None else None
    if user.is_superuser:
        if bound is None:
            return None
        from .models import Project

        return sorted(Project.objects.filter(workspace_id=bound).values_list("pk", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(_readable_sql(action), {"user": user.pk})
        rows = cursor.fetchall()
    held: dict[int, set] = {}
    where: dict[int, tuple] = {}
    for project_id, workspace_id, visibility, scope, name in rows:
        held.setdefault(project_id, set()).add((scope, name))
        where[project_id] = (workspace_id, visibility)
    out = []
    for project_id, grants in held.items():
        workspace_id, visibility = where[project_id]
        if bound is not None and workspace_id != bound:
            continue
        allowed = ("workspace", all_projects_codename(action)) in grants
        allowed = allowed or ("project", project_codename(action)) in grants
        if action == "view" and visibility == "workspace" and ("workspace", workspace_codename("view")) in grants:
            allowed = True
        denied = ("project", deny_codename(action)) in grants or ("project", deny_codename("view")) in grants
        if allowed and not denied:
            out.append(project_id)
    return sorted(out)


_READABLE_SQL: dict[str, str] = {}


def _readable_sql(action: str) -> str:
    """One row per (project, held permission that matters for ``action``): the workspace grants joined
    to every project of their workspace, the project grants to their project. Built once per action."""
    if action in _READABLE_SQL:
        return _READABLE_SQL[action]
    from django.contrib.auth.models import Permission

    from .models import Project

    workspace, project = _workspace_perm_models(), _project_perm_models()
    member_groups = project["user"]._meta.get_field("user").related_model.groups.through._meta
    user_column = member_groups.get_field("user").column
    group_column = member_groups.get_field("group").column

    def grants(models, codenames):
        direct, grouped = (m._meta.db_table for m in (models["user"], models["group"]))
        names = ", ".join(f"'{name}'" for name in codenames)  # our own codenames, never user input
        held = f"SELECT id, codename FROM {Permission._meta.db_table} WHERE codename IN ({names})"
        return (
            f"SELECT g.content_object_id AS target, p.codename FROM {direct} g JOIN ({held}) p "
            f"ON p.id = g.permission_id WHERE g.user_id = %(user)s "
            f"UNION ALL SELECT g.content_object_id, p.codename FROM {grouped} g JOIN ({held}) p "
            f"ON p.id = g.permission_id WHERE g.group_id IN "
            f"(SELECT {group_column} FROM {member_groups.db_table} WHERE {user_column} = %(user)s)"
        )

    on_workspace = [all_projects_codename(action)] + ([workspace_codename("view")] if action == "view" else [])
    on_project = sorted({project_codename(action), deny_codename(action), deny_codename("view")})
    table = Project._meta.db_table
    sql = (
        f"SELECT pr.id, pr.workspace_id, pr.visibility, 'workspace', w.codename "
        f"FROM ({grants(workspace, on_workspace)}) w JOIN {table} pr ON pr.workspace_id = w.target "
        f"UNION ALL SELECT pr.id, pr.workspace_id, pr.visibility, 'project', g.codename "
        f"FROM ({grants(project, on_project)}) g JOIN {table} pr ON pr.id = g.target"
    )
    _READABLE_SQL[action] = sql
    return sql


def require_on_project(user, action: str, project_id: int, not_found: str = "No such object.") -> None:
    """404 when ``user`` may not view the project ``project_id``, 403 when they may not ``action`` in it.

    One query (:func:`project_actions`); for endpoints that found an object by
    key without scoping and must now decide whether the caller may see it.
    """
    _check_action(action)
    actions = project_actions(user, project_id)
    if "view" not in actions:
        raise Http404(not_found)
    if action not in actions:
        raise PermissionDenied(f"You may not {action} this project.")


def require(user, action: str, obj) -> None:
    """Raise 404 when ``user`` cannot see ``obj`` (invisible is not found), 403 when they can see it
    but may not perform ``action`` on it. Allowed callers pay one query; refused ones one more.

    On a project, that one query is :func:`project_actions` (a prepared statement, no queryset to
    build: services call this on every write); a project it finds invisible is decided by the full
    rule below, which also grants an action held without ``view``."""
    from .models import Project

    if isinstance(obj, Project):
        _check_action(action)
        actions = project_actions(user, obj.pk)
        if action in actions:
            return
        if "view" in actions:
            raise PermissionDenied(f"You may not {action} this project.")
    if can(user, action, obj):
        return
    name = type(obj).__name__.lower()
    if action != "view" and can(user, "view", obj):
        raise PermissionDenied(f"You may not {action} this {name}.")
    raise Http404(f"No such {name}.")


def get_visible_or_404(queryset, user, **lookup):
    """The object matching ``lookup`` among those ``user`` may view, else 404."""
    obj = queryset.for_user(user, "view").filter(**lookup).first()
    if obj is None:
        raise Http404(f"No {queryset.model._meta.verbose_name} matches the given query.")
    return obj


def scope_owned(
    queryset, user, action: str = "view", *, project_field="project", owner_field="owner", shared_field="shared"
):
    """Objects kept by one user inside a project and shareable with it (saved views).

    ``view``: the owner's own and the shared ones, in projects ``user`` may view. ``write`` and
    ``manage`` (change, delete): the owner's own only; sharing is decided by :func:`require_may_share`.
    """
    _check_action(action)
    if _is_anonymous(user):
        return queryset.none()
    mine = Q(**{owner_field: user})
    visible = mine | Q(**{shared_field: True}) if action == "view" else mine
    return scope_by_project(queryset.filter(visible), user, "view", field=project_field)


def require_owned(user, action: str, *, owner_id, shared: bool, project, noun: str = "object") -> None:
    """The rule of :func:`scope_owned` for one object: 404 unless ``user`` may see it (its owner, or
    shared in a project they may view), 403 when they may see it but ``action`` needs its owner."""
    _check_action(action)
    mine = not _is_anonymous(user) and owner_id == user.pk
    if not (mine or shared) or not can(user, "view", project):
        raise Http404(f"No {noun} matches the given query.")
    if action != "view" and not mine:
        raise PermissionDenied(f"Only its owner may change or delete this {noun}.")


def require_may_share(user, project) -> None:
    """Sharing something with a project is a change others will see: it needs ``write`` there (contributor)."""
    if not can(user, "write", project):
        raise PermissionDenied("Sharing with the project needs the right to write there (contributor).")

"""The one permission policy of Runstore.

Every queryset that reaches a user (API, UI, admin, query engine) is scoped
here. Rights are django-guardian object permissions held on a workspace (they
cover all its projects) or on a single project, directly or through a group.
Three actions exist:

* ``view``   read a workspace/project and everything logged in it
* ``write``  create runs and log to them; create projects in a workspace
* ``manage`` change members and settings

Roles (``projects.models.Role``) are bundles of these actions; see
:data:`ROLE_ACTIONS`. Superusers may do everything.

Views answer 404 for what the user cannot see and 403 for what they can see
but may not change: :func:`get_visible_or_404` and :func:`require`. Both are
Django's own exceptions (``Http404``, ``PermissionDenied``), which the UI
renders as pages and the API (``tracker.api.errors``) as JSON errors.

Objects a user keeps for themselves inside a project and may share with it
(saved views of the run table) follow :func:`scope_owned`/:func:`require_owned`.
"""

from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Exists, OuterRef, Q
from django.http import Http404

ACTIONS = ("view", "write", "manage")
ROLE_ACTIONS = {
    "viewer": ("view",),
    "contributor": ("view", "write"),
    "owner": ("view", "write", "manage"),
}


def _check_action(action: str) -> None:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")


def codename(action: str, model_name: str) -> str:
    _check_action(action)
    return f"{action}_{model_name}"


def _holds(perm_model, user, action: str, model_name: str, outer: str = "pk"):
    """An Exists() over a direct-FK guardian table: user (or a group of theirs) holds the perm."""
    user_perms = perm_model["user"].objects.filter(
        content_object=OuterRef(outer), user=user, permission__codename=codename(action, model_name)
    )
    group_perms = perm_model["group"].objects.filter(
        content_object=OuterRef(outer),
        group__in=user.groups.all(),
        permission__codename=codename(action, model_name),
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
    """Workspaces where ``user`` may perform ``action`` (directly on the workspace)."""
    _check_action(action)
    if _is_anonymous(user):
        return queryset.none()
    if user.is_superuser:
        return queryset
    return queryset.filter(_holds(_workspace_perm_models(), user, action, "workspace"))


def scope_projects(queryset, user, action: str = "view"):
    """Projects where ``user`` may perform ``action``, through the project or its workspace."""
    _check_action(action)
    if _is_anonymous(user):
        return queryset.none()
    if user.is_superuser:
        return queryset
    on_workspace = _holds(_workspace_perm_models(), user, action, "workspace", outer="workspace_id")
    on_project = _holds(_project_perm_models(), user, action, "project")
    return queryset.filter(on_workspace | on_project)


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
    if isinstance(obj, Project):
        return scope_projects(Project.objects.filter(pk=obj.pk), user, action).exists()
    project = getattr(obj, "project", None)
    if project is not None:
        return can(user, action, project)
    raise TypeError(f"no permission rule for {type(obj).__name__}")


def project_actions(user, project_id: int) -> frozenset[str]:
    """The actions ``user`` may perform on the project ``project_id``, in one query.

    The same rule as :func:`scope_projects` (a permission held on the project or
    on its workspace, directly or through a group; superusers hold every
    action), answered for one project by a single statement rather than one
    ``EXISTS`` query per action: the ingest endpoint calls it on every batch.
    """
    if _is_anonymous(user):
        return frozenset()
    if user.is_superuser:
        return frozenset(ACTIONS)
    with connection.cursor() as cursor:
        cursor.execute(_project_actions_sql(), {"user": user.pk, "project": project_id})
        held = {(scope, name) for scope, name in cursor.fetchall()}
    return frozenset(
        action
        for action in ACTIONS
        if ("workspace", codename(action, "workspace")) in held or ("project", codename(action, "project")) in held
    )


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

    in_workspace = f"(SELECT workspace_id FROM {Project._meta.db_table} WHERE id = %(project)s)"
    return (
        f"SELECT g.scope, p.codename FROM ({grants(workspace, 'workspace', in_workspace)} "
        f"UNION ALL {grants(project, 'project', '%(project)s')}) g "
        f"JOIN {Permission._meta.db_table} p ON p.id = g.permission_id"
    )


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
    but may not perform ``action`` on it. Allowed callers pay one query; refused ones one more."""
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

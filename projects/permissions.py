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
but may not change: :func:`get_visible_or_404` and :func:`require`.
"""

from django.db.models import Exists, OuterRef, Q
from django.http import Http404
from rest_framework.exceptions import PermissionDenied

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


def scope_by_project(queryset, user, action: str = "view", field: str = "project"):
    """Scope any model that belongs to a project (runs, attributes, files) by its project."""
    _check_action(action)
    if _is_anonymous(user):
        return queryset.none()
    if user.is_superuser:
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


def require(user, action: str, obj) -> None:
    """Raise 403 when ``user`` can see ``obj`` but may not perform ``action`` on it."""
    if not can(user, action, obj):
        raise PermissionDenied(f"You may not {action} this {type(obj).__name__.lower()}.")


def get_visible_or_404(queryset, user, **lookup):
    """The object matching ``lookup`` among those ``user`` may view, else 404."""
    obj = queryset.for_user(user, "view").filter(**lookup).first()
    if obj is None:
        raise Http404(f"No {queryset.model._meta.verbose_name} matches the given query.")
    return obj

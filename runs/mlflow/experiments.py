"""Experiments ↔ projects.

An experiment is a project. Its name is the project's slug unless MLflow named it (the name is kept
in :class:`~runs.mlflow.models.Experiment`, so any text works and renaming keeps the project's slug
and URLs). Names are those of the caller's personal workspace; ``workspace/name`` names a project of
another workspace the caller may see. Experiment id = the project's primary key; ``"0"`` (MLflow's
Default experiment) is the project ``default`` of the caller's personal workspace, made on first use.
"""

import functools
import re

from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django.utils import timezone

from projects import permissions
from projects import services as project_services
from projects.models import Project, Workspace

from . import rows as sqlrows
from .errors import MlflowError, invalid, not_found
from .models import Experiment

DEFAULT_ID = "0"
DEFAULT_SLUG = "default"
DEFAULT_NAME = "Default"
MAX_NAME = 500


def _ms(dt) -> int:
    return int(dt.timestamp() * 1000)


def _visible(user):
    return Project.objects.for_user(user, "view").select_related("workspace", "mlflow")


def _side(project: Project) -> Experiment | None:
    try:
        return project.mlflow  # type: ignore[attr-defined, unused-ignore]  # the stubs know it only on a cold cache
    except Experiment.DoesNotExist:
        return None


def personal_workspace(user) -> Workspace:
    return project_services.ensure_personal_workspace(user)


def display_name(project: Project, user) -> str:
    side = _side(project)
    base = side.name if side else project.slug
    if "/" in base and base.split("/", 1)[0] == project.workspace.slug:
        return base
    if project.workspace.personal_owner_id == getattr(user, "pk", None):
        return base
    return f"{project.workspace.slug}/{base}"


def to_dict(project: Project, user) -> dict:
    side = _side(project)
    tags = (side.tags if side else {}) or {}
    tag_list = [{"key": k, "value": v} for k, v in sorted(tags.items())]
    if project.description and "mlflow.note.content" not in tags:
        tag_list.append({"key": "mlflow.note.content", "value": project.description})
    return {
        "experiment_id": str(project.pk),
        "name": display_name(project, user),
        "artifact_location": f"mlflow-artifacts:/{project.pk}",
        "lifecycle_stage": "deleted" if side and side.deleted_at else "active",
        "creation_time": _ms(project.created_at),
        "last_update_time": _ms(side.updated_at if side else project.created_at),
        "tags": tag_list,
    }


def is_deleted(project: Project) -> bool:
    side = _side(project)
    return bool(side and side.deleted_at)


@functools.cache
def _project_sql(db: str) -> str:
    """A project by its key, with its workspace and MLflow side (``select_related``'s, as plain SQL)."""
    quote = connections[db].ops.quote_name
    project_pk = quote(Project._meta.pk.column)
    return (
        f"SELECT {sqlrows.columns(Project, 'p', db)}, {sqlrows.columns(Workspace, 'w', db)}, "
        f"{sqlrows.columns(Experiment, 'e', db)} FROM {quote(Project._meta.db_table)} p "
        f"JOIN {quote(Workspace._meta.db_table)} w ON w.{quote(Workspace._meta.pk.column)} = "
        f"p.{quote(Project._meta.get_field('workspace').column)} "
        f"LEFT JOIN {quote(Experiment._meta.db_table)} e ON e.{quote(Experiment._meta.pk.column)} = p.{project_pk} "
        f"WHERE p.{project_pk} = %s"
    )


def _project_by_pk(pk: int) -> Project | None:
    """The project ``pk`` with its workspace and MLflow side loaded (one statement, no queryset built)."""
    db = sqlrows.read_db(Project)
    with connections[db].cursor() as cursor:
        cursor.execute(_project_sql(db), [pk])
        row = cursor.fetchone()
    if row is None:
        return None
    edge, end = sqlrows.width(Project), sqlrows.width(Project) + sqlrows.width(Workspace)
    project = sqlrows.build(Project, "p", db, row[:edge])
    project.workspace = sqlrows.build(Workspace, "w", db, row[edge:end])
    side = sqlrows.build(Experiment, "e", db, row[end:])
    Experiment.project.field.remote_field.set_cached_value(project, side)  # None: the project has no MLflow side
    if side is not None:
        Experiment.project.field.set_cached_value(side, project)
    return project


def get(user, experiment_id) -> Project:
    """The project of ``experiment_id`` that ``user`` sees; RESOURCE_DOES_NOT_EXIST otherwise."""
    text = str(experiment_id or "").strip()
    if text == DEFAULT_ID:
        return default_project(user)
    if not text.isdigit():
        raise invalid(f"Invalid experiment id {text[:40]!r}: experiment ids are numbers")
    # Found by key, then checked in one statement (no permission subquery to build).
    project = _project_by_pk(int(text))
    if project is None or "view" not in permissions.project_actions(user, project.pk):
        raise not_found(f"No Experiment with id={text} exists")
    return project


def default_project(user) -> Project:
    workspace = personal_workspace(user)
    project = _visible(user).filter(workspace=workspace, slug=DEFAULT_SLUG).first()
    if project is None:
        if not permissions.can(user, "write", workspace):
            raise not_found("No Experiment with id=0 exists")
        with transaction.atomic():  # also when the caller is a read (a search) outside a transaction
            project = project_services.resolve_project(user, f"{workspace.slug}/{DEFAULT_SLUG}", create=True)
            Experiment.objects.get_or_create(project=project, defaults={"name": DEFAULT_NAME})
        project = _visible(user).get(pk=project.pk)
    return project


def _split(user, name: str) -> tuple[Workspace | None, str]:
    """``(workspace, rest)`` when ``name`` starts with a workspace the caller sees, else ``(None, name)``."""
    head, slash, rest = name.partition("/")
    if slash and rest:
        workspace = Workspace.objects.for_user(user, "view").filter(slug=head).first()
        if workspace is not None:
            return workspace, rest
    return None, name


def find_by_name(user, name: str) -> Project | None:
    workspace, rest = _split(user, name)
    candidates = _visible(user)
    if workspace is None:
        workspace = personal_workspace(user)
        if name == DEFAULT_NAME:
            found = candidates.filter(workspace=workspace, slug=DEFAULT_SLUG).first()
            if found is not None or not permissions.can(user, "write", workspace):
                return found
            return default_project(user)
    candidates = candidates.filter(workspace=workspace)
    named = candidates.filter(mlflow__name__in={name, rest}).first()
    if named is not None:
        return named
    return candidates.filter(slug=rest, mlflow__isnull=True).first()


def get_by_name(user, name: str) -> Project:
    if not name:
        raise invalid("experiment_name: must not be empty")
    project = find_by_name(user, name)
    if project is None:
        raise not_found(f"Could not find experiment with name '{name}'")
    return project


def _slug_for(workspace: Workspace, name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:90] or "experiment"
    if not base[0].isalnum():
        base = f"e{base}"[:90]
    slug, n = base, 1
    while Project.objects.filter(workspace=workspace, slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def create(user, name, tags=None) -> Project:
    if not isinstance(name, str) or not name.strip():
        raise invalid("Invalid experiment name: must be a non-empty string")
    if len(name) > MAX_NAME:
        raise invalid(f"Invalid experiment name: longer than {MAX_NAME} characters")
    if find_by_name(user, name) is not None:
        raise MlflowError("RESOURCE_ALREADY_EXISTS", f"Experiment '{name}' already exists.")
    workspace, rest = _split(user, name)
    if workspace is None:
        workspace = personal_workspace(user)
    with transaction.atomic():
        try:
            project = project_services.create_project(user, workspace, _slug_for(workspace, rest))
        except ValidationError as exc:
            raise invalid(f"Invalid experiment name {name!r}: {'; '.join(exc.messages)}") from None
        Experiment.objects.create(project=project, name=name, tags=_tag_dict(tags))
    return _visible(user).get(pk=project.pk)


def _tag_dict(tags) -> dict:
    out = {}
    for tag in tags or []:
        if not isinstance(tag, dict) or not isinstance(tag.get("key"), str) or not tag["key"]:
            raise invalid("tags: each tag needs a non-empty string 'key'")
        out[tag["key"]] = str(tag.get("value", ""))
    return out


def _side_for_write(user, project: Project, action: str = "manage") -> Experiment:
    permissions.require(user, action, project)
    side, _ = Experiment.objects.get_or_create(project=project, defaults={"name": project.slug})
    return side


def rename(user, project: Project, new_name) -> None:
    if not isinstance(new_name, str) or not new_name.strip():
        raise invalid("new_name: must be a non-empty string")
    existing = find_by_name(user, new_name)
    if existing is not None and existing.pk != project.pk:
        raise MlflowError("RESOURCE_ALREADY_EXISTS", f"Experiment '{new_name}' already exists.")
    side = _side_for_write(user, project)
    workspace, rest = _split(user, new_name)
    if workspace is not None and workspace.pk != project.workspace_id:
        raise invalid(f"new_name: {new_name!r} names another workspace; an experiment cannot move")
    side.name = new_name
    side.updated_at = timezone.now()
    side.save(update_fields=["name", "updated_at"])


def set_deleted(user, project: Project, deleted: bool) -> None:
    side = _side_for_write(user, project)
    if deleted and side.deleted_at:
        return
    side.deleted_at = timezone.now() if deleted else None
    side.updated_at = timezone.now()
    side.save(update_fields=["deleted_at", "updated_at"])


def set_tag(user, project: Project, key, value) -> None:
    if not isinstance(key, str) or not key:
        raise invalid("key: must be a non-empty string")
    side = _side_for_write(user, project, "write")
    with transaction.atomic():
        side = Experiment.objects.select_for_update().get(pk=side.pk)
        side.tags = {**(side.tags or {}), key: "" if value is None else str(value)}
        side.updated_at = timezone.now()
        side.save(update_fields=["tags", "updated_at"])


def delete_tag(user, project: Project, key) -> None:
    side = _side_for_write(user, project, "write")
    with transaction.atomic():
        side = Experiment.objects.select_for_update().get(pk=side.pk)
        if key not in (side.tags or {}):
            raise not_found(f"No tag with name: {key} in experiment with id {project.pk}")
        side.tags = {k: v for k, v in side.tags.items() if k != key}
        side.updated_at = timezone.now()
        side.save(update_fields=["tags", "updated_at"])


# --- search ------------------------------------------------------------------

_EXP_CLAUSE = re.compile(
    r"""^\s*(?P<key>(?:attributes?\.|attr\.)?(?:name|creation_time|last_update_time)|tags?\.(?:`[^`]+`|"[^"]+"|[\w.\-/]+))\s*
    (?P<op>!=|>=|<=|=|<|>|LIKE|ILIKE|like|ilike)\s*(?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|-?\d+)\s*$""",
    re.VERBOSE,
)


def _experiment_clauses(text: str):
    if not text or not text.strip():
        return []
    out = []
    for part in re.split(r"\s+(?:AND|and)\s+", text.strip()):
        match = _EXP_CLAUSE.match(part)
        if not match:
            raise invalid(f"Invalid filter string {text!r}: cannot parse {part!r}")
        key = match.group("key")
        value = match.group("value")
        value = re.sub(r"\\(.)", r"\1", value[1:-1]) if value[0] in "'\"" else int(value)
        if key.startswith(("tag.", "tags.")):
            name = key.split(".", 1)[1].strip('`"')
            out.append(("tag", name, match.group("op").upper(), value))
        else:
            out.append(("attr", key.rsplit(".", 1)[-1], match.group("op").upper(), value))
    return out


def _matches(actual, op: str, value) -> bool:
    from .filters import like_regex

    if actual is None:
        return False
    if op in ("LIKE", "ILIKE"):
        return re.match(like_regex(str(value), op == "ILIKE"), str(actual)) is not None
    if isinstance(value, int) != isinstance(actual, int):
        raise invalid(f"Invalid comparison of {actual!r} with {value!r}")
    return {
        "=": actual == value,
        "!=": actual != value,
        "<": actual < value,
        "<=": actual <= value,
        ">": actual > value,
        ">=": actual >= value,
    }[op]


def search(user, *, view_type="ACTIVE_ONLY", filter_string="", order_by=(), max_results=1000, offset=0):
    """``(experiments, next offset or None)``: the experiments ``user`` sees, filtered and ordered in Python
    (one query; a user sees few enough projects)."""
    clauses = _experiment_clauses(filter_string)
    rows = []
    for project in _visible(user).order_by("pk"):
        deleted = is_deleted(project)
        if (view_type == "ACTIVE_ONLY" and deleted) or (view_type == "DELETED_ONLY" and not deleted):
            continue
        body = to_dict(project, user)
        tags = {t["key"]: t["value"] for t in body["tags"]}
        ok = True
        for kind, key, op, value in clauses:
            actual = tags.get(key) if kind == "tag" else body.get(key)
            if not _matches(actual, op, value):
                ok = False
                break
        if ok:
            rows.append(body)
    keys = []
    for item in order_by or []:
        parts = item.strip().split()
        field = parts[0].rsplit(".", 1)[-1] if parts else ""
        if field not in ("name", "creation_time", "last_update_time", "experiment_id"):
            raise invalid(f"Invalid order_by clause {item!r}")
        keys.append((field, len(parts) > 1 and parts[1].upper() == "DESC"))
    keys = keys or [("creation_time", True)]
    keys.append(("experiment_id", False))
    for field, descending in reversed(keys):
        rows.sort(key=lambda r, f=field: int(r[f]) if f == "experiment_id" else r[f], reverse=descending)
    page = rows[offset : offset + max_results]
    return page, (offset + max_results if offset + max_results < len(rows) else None)

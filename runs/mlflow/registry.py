"""MLflow's Model Registry REST API (``registered-models/*``, ``model-versions/*``) over Runstore's
model registry (``runs.registry``): every write goes through ``runs.registry.services``, every access
through the permission module, as in the rest of the MLflow-compatible API.

Mapping:

* A registered model is a Runstore model. Its MLflow name is the model's name in the caller's
  personal workspace, or ``workspace/name`` for another workspace the caller sees (as experiment
  names are). ``create_registered_model`` alone makes the model at home in the project named by
  the tag ``runstore.project`` (a project slug of that workspace), else in the workspace's
  ``default`` project (MLflow's Default experiment), else in the first project of the workspace the
  caller may write in; its first version moves it to the project of the run it comes from (a
  model's versions all come from runs of its home project).
* A model version is a Runstore version: a snapshot of files of a run. ``source`` may be
  ``runs:/<run_id>/<path>`` or the run's artifact URI (the files of the run's ``artifacts`` under
  ``<path>``, MLflow 2's ``log_model``), or ``models:/<model_id>`` / a logged model's artifact URI
  (MLflow 3's logged models: their files). ``get-download-uri`` names the version's own files
  (``mlflow-artifacts:/registry/<model>/<version>``), served by the artifact proxy.
* Stages None/Staging/Production/Archived are Runstore's stages; aliases are Runstore's aliases.
* Tags of registered models and versions are not stored: ``set-tag`` answers NOT_IMPLEMENTED.
"""

import functools
import posixpath
import re
import uuid as uuid_module

from django.db.models import Max

from projects import permissions
from projects.models import Project, Workspace

from ..errors import ApiError
from ..registry import services
from ..registry.models import ModelAlias, ModelVersion, ModelVersionFile, RegisteredModel, Stage
from . import experiments, logged_models, tracking
from .errors import MlflowError, invalid, not_found
from .filters import Clause, page_offset, page_token, parse_filter
from .models import LoggedModel

STAGES: dict[str, str] = {
    "none": Stage.NONE,
    "staging": Stage.STAGING,
    "production": Stage.PRODUCTION,
    "archived": Stage.ARCHIVED,
}
MLFLOW_STAGE: dict[str, str] = {
    Stage.NONE: "None",
    Stage.STAGING: "Staging",
    Stage.PRODUCTION: "Production",
    Stage.ARCHIVED: "Archived",
}
PROJECT_TAG = "runstore.project"
ARTIFACT_PREFIX = "registry"
MAX_MODELS = 1000  # MLflow's limits on max_results (registered models, model versions)
MAX_VERSIONS = 200_000
_RUN_ARTIFACT = re.compile(r"^mlflow-artifacts:/+(\d+)/([0-9a-fA-F-]{32,36})/artifacts(?:/(.*))?$")
_MODEL_ARTIFACT = re.compile(r"^mlflow-artifacts:/+(\d+)/models/([^/]+)/artifacts/?$")


def _ms(value) -> int:
    return int(value.timestamp() * 1000) if value else 0


def _already_exists(message: str) -> MlflowError:
    return MlflowError("RESOURCE_ALREADY_EXISTS", message)


# --- names -----------------------------------------------------------------------------------


def _split(user, name) -> tuple[Workspace, str]:
    """``(workspace, model name)`` of an MLflow name: ``workspace/name`` or a name of the personal workspace."""
    if not isinstance(name, str) or not name.strip():
        raise invalid("Registered model name cannot be empty.")
    head, slash, rest = name.partition("/")
    if slash:
        workspace = Workspace.objects.for_user(user, "view").filter(slug=head).first()
        if workspace is None:
            raise not_found(f"Registered Model with name={name} not found")
        return workspace, rest
    return experiments.personal_workspace(user), name


def display_name(model: RegisteredModel, user) -> str:
    if model.workspace.personal_owner_id == getattr(user, "pk", None):
        return model.name
    return f"{model.workspace.slug}/{model.name}"


def _visible_models(user):
    return RegisteredModel.objects.for_user(user, "view").select_related(
        "workspace", "project", "project__workspace", "created_by"
    )


def get_model(user, name) -> RegisteredModel:
    workspace, short = _split(user, name)
    model = _visible_models(user).filter(workspace=workspace, name=short).first()
    if model is None:
        raise not_found(f"Registered Model with name={name} not found")
    return model


def _version_number(value) -> int:
    text = str(value if value is not None else "").strip()
    if not text.isdigit() or int(text) <= 0:
        raise invalid(f"Parameter 'version' must be a positive integer, got {text[:40]!r}")
    return int(text)


def get_version(user, name, version) -> ModelVersion:
    model = get_model(user, name)
    number = _version_number(version)
    found = ModelVersion.objects.with_related().filter(model=model, version=number).first()
    if found is None:
        raise not_found(f"Model Version (name={name}, version={number}) not found")
    found.model = model
    return found


def _stage(value) -> str:
    stage = STAGES.get(str(value or "").strip().lower())
    if stage is None:
        raise invalid(
            f"Invalid Model Version stage: {value}. Value must be one of None, Staging, Production, Archived."
        )
    return stage


def _service(call, *args, **kwargs):
    """A registry service call, its conflicts in MLflow's words."""
    try:
        return call(*args, **kwargs)
    except ApiError as exc:
        if exc.status == 409 and "already exists" in exc.message:
            raise _already_exists(exc.message) from None
        raise


# --- JSON --------------------------------------------------------------------------------------


def _sources(versions: list[ModelVersion]) -> dict[int, tuple[str, str]]:
    """``{version pk: (source, model_id)}``: one query for the logged models among them."""
    folders = {}
    for v in versions:
        parts = v.field_path.split("/")
        if v.run_id and len(parts) == 3 and parts[0] == "models" and parts[2] == "files":
            folders[(v.run_id, parts[1])] = v.pk
    logged = {}
    if folders:
        rows = LoggedModel.objects.filter(run_id__in={r for r, _ in folders}, folder__in={f for _, f in folders})
        logged = {(m.run_id, m.folder): m.model_id for m in rows}
    out = {}
    for v in versions:
        run_hex = v.run.uuid.hex if v.run_id and v.run else ""
        parts = v.field_path.split("/")
        model_id = logged.get((v.run_id, parts[1])) if len(parts) == 3 else None
        if model_id:
            out[v.pk] = (f"models:/{model_id}", model_id)
        elif run_hex and parts[0] == tracking.ARTIFACTS_PATH:
            sub = "/".join(parts[1:])
            out[v.pk] = (f"runs:/{run_hex}/{sub}" if sub else f"runs:/{run_hex}", "")
        else:
            out[v.pk] = (download_uri(v), "")
    return out


def _aliases(model_ids) -> dict[int, list[tuple[str, int]]]:
    out: dict[int, list[tuple[str, int]]] = {}
    for model_id, alias, number in ModelAlias.objects.filter(model_id__in=list(model_ids)).values_list(
        "model_id", "alias", "version__version"
    ):
        out.setdefault(model_id, []).append((alias, number))
    return out


def versions_dicts(versions: list[ModelVersion], user, aliases=None) -> list[dict]:
    aliases = _aliases({v.model_id for v in versions}) if aliases is None else aliases
    sources = _sources(versions)
    out = []
    for v in versions:
        source, model_id = sources[v.pk]
        row = {
            "name": display_name(v.model, user),
            "version": str(v.version),
            "creation_timestamp": _ms(v.created_at),
            "last_updated_timestamp": _ms(max(v.created_at, v.stage_changed_at or v.created_at)),
            "user_id": v.created_by.get_username() if v.created_by else "",
            "current_stage": MLFLOW_STAGE.get(v.stage, "None"),
            "description": v.description,
            "source": source,
            "run_id": v.run.uuid.hex if v.run_id and v.run else "",
            "status": "READY",
            "tags": [],
            "aliases": sorted(a for a, n in aliases.get(v.model_id, []) if n == v.version),
        }
        if model_id:
            row["model_id"] = model_id
        out.append(row)
    return out


def models_dicts(models: list[RegisteredModel], user) -> list[dict]:
    """MLflow's registered models, each with its latest version per stage: two queries for the page."""
    ids = [m.pk for m in models]
    latest = (
        ModelVersion.objects.filter(model_id__in=ids)
        .values("model_id", "stage")
        .annotate(top=Max("version"))
        .values_list("model_id", "top")
    )
    wanted = {(model_id, top) for model_id, top in latest}
    by_pk = {m.pk: m for m in models}
    candidates = ModelVersion.objects.filter(model_id__in=ids, version__in={top for _, top in wanted})
    versions = [
        v
        for v in candidates.select_related("run", "created_by").order_by("version")
        if (v.model_id, v.version) in wanted
    ]
    for v in versions:
        v.model = by_pk[v.model_id]
    aliases = _aliases(ids)
    version_rows: dict[int, list[dict]] = {}
    for v, row in zip(versions, versions_dicts(versions, user, aliases), strict=True):
        version_rows.setdefault(v.model_id, []).append(row)
    return [
        {
            "name": display_name(m, user),
            "creation_timestamp": _ms(m.created_at),
            "last_updated_timestamp": _ms(m.updated_at),
            "user_id": m.created_by.get_username() if m.created_by_id and m.created_by else "",
            "description": m.description,
            "latest_versions": version_rows.get(m.pk, []),
            "tags": [],
            "aliases": [{"alias": a, "version": str(n)} for a, n in sorted(aliases.get(m.pk, []))],
        }
        for m in models
    ]


def download_uri(version: ModelVersion) -> str:
    return f"mlflow-artifacts:/{ARTIFACT_PREFIX}/{version.model_id}/{version.version}"


# --- registered models ---------------------------------------------------------------------------


def _home_project(user, workspace: Workspace, tags) -> Project:
    wanted = None
    for tag in tags or []:
        if isinstance(tag, dict) and tag.get("key") == PROJECT_TAG:
            wanted = str(tag.get("value") or "").strip()
        elif isinstance(tag, dict) and tag.get("key"):
            raise MlflowError(
                "NOT_IMPLEMENTED", f"tags: registered model tags are not stored (only {PROJECT_TAG!r})", status=501
            )
    projects = Project.objects.for_user(user, "view").filter(workspace=workspace)
    if wanted:
        project = projects.filter(slug=wanted).first()
        if project is None:
            raise invalid(f"tags: {PROJECT_TAG} names no project {wanted!r} of the workspace {workspace.slug!r}")
        return project
    if workspace.personal_owner_id == user.pk:
        return experiments.default_project(user)
    project = projects.filter(slug=experiments.DEFAULT_SLUG).first()
    if project is None:  # a home until the first version moves the model to its run's project
        writable = Project.objects.for_user(user, "write").filter(workspace=workspace).order_by("slug")
        project = writable.first()
    if project is None:
        raise invalid(
            f"tags: name the model's project in the workspace {workspace.slug!r} with the tag {PROJECT_TAG!r}"
        )
    return project


def create_model(user, body) -> RegisteredModel:
    name = body.get("name")
    workspace, short = _split(user, name)
    services.check_name(short)
    if RegisteredModel.objects.filter(workspace=workspace, name=short).exists():
        raise _already_exists(f"Registered Model (name={name}) already exists.")
    project = _home_project(user, workspace, body.get("tags"))
    _service(services.create_model, user, project, short, body.get("description") or "")
    return get_model(user, name)


def rename_model(user, body) -> RegisteredModel:
    model = get_model(user, body.get("name"))
    new_name = body.get("new_name")
    workspace, short = _split(user, new_name)
    if workspace.pk != model.workspace_id:
        raise invalid(f"new_name: {new_name!r} names another workspace; a model cannot move")
    if short != model.name and RegisteredModel.objects.filter(workspace=workspace, name=short).exists():
        raise _already_exists(f"Registered Model (name={new_name}) already exists.")
    _service(services.rename_model, user, model, short)
    return model


def search_models(user, body) -> tuple[list[RegisteredModel], str | None]:
    clauses = parse_filter(body.get("filter") or "")
    for clause in clauses:
        if clause.entity not in ("attribute", "tag") or clause.entity == "attribute" and clause.key != "name":
            raise invalid(f"Invalid filter {body.get('filter')!r}: registered models filter on name (and tags)")
    order = _order(body.get("order_by"), {"name", "timestamp", "last_updated_timestamp", "creation_timestamp"})
    models = [m for m in _visible_models(user).select_related("created_by") if _all(display_name(m, user), clauses)]
    for key, ascending in reversed(order):
        models.sort(key=functools.partial(_model_key, key=key, user=user), reverse=not ascending)
    return _page(models, body, MAX_MODELS, 100)


def _model_key(model: RegisteredModel, key: str, user):
    if key == "name":
        return display_name(model, user)
    if key in ("timestamp", "last_updated_timestamp"):
        return model.updated_at
    return model.created_at


def _all(value, clauses: list[Clause]) -> bool:
    return all(_tag_matches(c) if c.entity == "tag" else logged_models._matches(value, c) for c in clauses)


def _tag_matches(clause: Clause) -> bool:
    """No tag is stored: a model matches what an absent tag matches (MLflow 3's client adds
    ``tag.`mlflow.prompt.is_prompt` != 'true'`` to every search, to leave prompts out)."""
    return clause.op in ("!=", "NOT IN", "IS NULL")


def _order(order_by, allowed: set[str]) -> list[tuple[str, bool]]:
    if isinstance(order_by, str):
        order_by = [order_by]
    out = []
    for item in order_by or []:
        parts = str(item).split()
        key = parts[0] if parts else ""
        key = key.removeprefix("attributes.").removeprefix("attribute.")
        direction = parts[1].upper() if len(parts) > 1 else "ASC"
        if key not in allowed or direction not in ("ASC", "DESC") or len(parts) > 2:
            raise invalid(f"Invalid order_by clause {item!r}: expected one of {sorted(allowed)} with ASC or DESC")
        out.append((key, direction == "ASC"))
    return out or [("name", True)]


def _page(rows: list, body, most: int, default: int) -> tuple[list, str | None]:
    limit = body.get("max_results")
    limit = default if limit in (None, "") else tracking._as_int(limit, "max_results")
    if limit <= 0 or limit > most:
        raise invalid(f"Invalid value {limit} for parameter 'max_results': it must be between 1 and {most}")
    start = page_offset(body.get("page_token"))
    page = rows[start : start + limit]
    return page, page_token(start + limit) if start + limit < len(rows) else None


def latest_versions(user, body) -> list[ModelVersion]:
    model = get_model(user, body.get("name"))
    stages = body.get("stages") or []
    if isinstance(stages, str):
        stages = [stages]
    wanted = [_stage(s) for s in stages] or list(MLFLOW_STAGE)
    out = []
    for stage in wanted:
        found = ModelVersion.objects.filter(model=model, stage=stage).select_related("run", "created_by").first()
        if found is not None:
            found.model = model
            out.append(found)
    return out


# --- model versions ------------------------------------------------------------------------------


def _parse_run_id(text: str) -> str:
    try:
        return uuid_module.UUID(text).hex
    except ValueError:
        raise invalid(f"source: {text[:64]!r} is not a run id") from None


def _resolve_source(user, body):
    """``(run, field path, subpath)`` the version's files come from."""
    source = str(body.get("source") or "").strip()
    model_id = str(body.get("model_id") or "").strip()
    if not source and not model_id:
        raise invalid("Missing value for required parameter 'source'")
    run_match = _RUN_ARTIFACT.match(source)
    model_match = _MODEL_ARTIFACT.match(source)
    if source.startswith("models:/") and "/" not in source[len("models:/") :].strip("/"):
        model_id = source[len("models:/") :].strip("/")
    elif model_match:
        model_id = model_match.group(2)
    if model_id and not run_match and not source.startswith("runs:/"):
        model = logged_models.get(user, model_id)
        return logged_models.require_files(model), logged_models.files_path(model), ""
    if source.startswith("runs:/"):
        run_id, _, sub = source[len("runs:/") :].strip("/").partition("/")
        run_id = _parse_run_id(run_id)
    elif run_match:
        run_id, sub = _parse_run_id(run_match.group(2)), run_match.group(3) or ""
    else:
        raise invalid(
            f"source: {source[:200]!r} is not a model of this server: use runs:/<run_id>/<path>, "
            "models:/<model_id> or an mlflow-artifacts:/ URI of a run or a logged model"
        )
    sub = posixpath.normpath(sub.strip("/")) if sub.strip("/") else ""
    if sub.startswith("..") or sub == ".":
        raise invalid(f"source: {source[:200]!r} leaves the run's artifacts")
    return tracking.get_run(user, run_id), tracking.ARTIFACTS_PATH, sub


def create_version(user, body) -> ModelVersion:
    model = get_model(user, body.get("name"))
    run, field_path, sub = _resolve_source(user, body)
    given = str(body.get("run_id") or "").strip()
    if given and _parse_run_id(given) != run.uuid.hex:
        raise invalid(f"run_id: {given} is not the run of source {body.get('source')!r}")
    if run.project.workspace_id != model.workspace_id:
        raise invalid(f"source: the run {run.uuid.hex} is in another workspace than the model {body.get('name')!r}")
    if run.project_id != model.project_id and not model.versions.exists():
        _service(services.move_model, user, model, run.project)
    version = _service(
        services.register_version,
        user,
        run,
        field_path,
        model.name,
        description=body.get("description") or "",
        subpath=sub,
    )
    version.model = model
    return version


def search_versions(user, body) -> tuple[list[ModelVersion], str | None]:
    clauses = parse_filter(body.get("filter") or "")
    versions = ModelVersion.objects.filter(model__in=_visible_models(user)).select_related(
        "model", "model__workspace", "run", "created_by"
    )
    for clause in clauses:
        if clause.entity == "tag":
            continue
        if clause.entity != "attribute" or clause.key not in ("name", "run_id", "version_number"):
            raise invalid(
                f"Invalid filter {body.get('filter')!r}: model versions filter on name, run_id and version_number"
            )
        if clause.key == "run_id" and clause.op in ("=", "IN"):
            values = clause.value if isinstance(clause.value, list) else [clause.value]
            keys = []
            for value in values:
                try:
                    keys.append(uuid_module.UUID(str(value)))
                except ValueError:
                    continue
            versions = versions.filter(run__uuid__in=keys)
    rows = []
    for v in versions.order_by("model__name", "-version"):
        fields = {
            "name": display_name(v.model, user),
            "run_id": v.run.uuid.hex if v.run_id and v.run else None,
            "version_number": v.version,
        }
        if all(_tag_matches(c) if c.entity == "tag" else logged_models._matches(fields[c.key], c) for c in clauses):
            rows.append(v)
    order = _order(body.get("order_by"), {"name", "version_number", "creation_timestamp", "last_updated_timestamp"})
    if body.get("order_by"):
        for key, ascending in reversed(order):
            rows.sort(key=functools.partial(_version_key, key=key, user=user), reverse=not ascending)
    return _page(rows, body, MAX_VERSIONS, MAX_VERSIONS)


def _version_key(version: ModelVersion, key: str, user):
    if key == "name":
        return display_name(version.model, user)
    if key == "version_number":
        return version.version
    if key == "creation_timestamp":
        return version.created_at
    return max(version.created_at, version.stage_changed_at or version.created_at)


def set_alias(user, body) -> None:
    version = get_version(user, body.get("name"), body.get("version"))
    _service(services.set_alias, user, version, body.get("alias"))


def delete_alias(user, body) -> None:
    model = get_model(user, body.get("name"))
    if not services.delete_alias(user, model, str(body.get("alias") or "")):
        raise not_found(f"Registered model alias {body.get('alias')} not found.")


def version_by_alias(user, body) -> ModelVersion:
    model = get_model(user, body.get("name"))
    row = ModelAlias.objects.filter(model=model, alias=str(body.get("alias") or "")).select_related("version").first()
    if row is None:
        raise not_found(f"Registered model alias {body.get('alias')} not found.")
    return get_version(user, body.get("name"), row.version.version)


# --- the version's files, through the artifact proxy (mlflow-artifacts:/registry/<model>/<version>/...) ---


def artifact_version(user, parts: list[str]) -> tuple[ModelVersion, str]:
    """``(version, relative path)`` of ``registry/<model pk>/<version>[/<path>]``."""
    if len(parts) < 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise not_found("No artifact here: registry paths look like registry/<model>/<version>/<path>")
    version = (
        ModelVersion.objects.filter(model_id=int(parts[1]), version=int(parts[2]))
        .select_related("model", "model__project")
        .first()
    )
    if version is None or "view" not in permissions.project_actions(user, version.model.project_id):
        raise not_found(f"No model version at {'/'.join(parts[:3])}")
    return version, "/".join(parts[3:])


def version_files(version: ModelVersion):
    """``(relpath, file)`` of each file of the version (a single-file version: its file name)."""
    for f in ModelVersionFile.objects.filter(version=version).select_related("blob").order_by("relpath"):
        yield (f.relpath or f.name or "model"), f


# --- handlers: (request, body) -> JSON-able dict, merged into views.HANDLERS ---------------------------


def _model_answer(request, model):
    return {"registered_model": models_dicts([model], request.user)[0]}


def _version_answer(request, version):
    return {"model_version": versions_dicts([version], request.user)[0]}


def registered_models_create(request, body):
    return _model_answer(request, create_model(request.user, body))


def registered_models_get(request, body):
    return _model_answer(request, get_model(request.user, body.get("name")))


def registered_models_update(request, body):
    model = get_model(request.user, body.get("name"))
    if "description" in body:
        _service(services.update_model, request.user, model, description=str(body.get("description") or ""))
    return _model_answer(request, model)


def registered_models_rename(request, body):
    return _model_answer(request, rename_model(request.user, body))


def registered_models_delete(request, body):
    _service(services.delete_model, request.user, get_model(request.user, body.get("name")))
    return {}


def registered_models_search(request, body):
    models, token = search_models(request.user, body)
    answer: dict = {"registered_models": models_dicts(models, request.user)}
    if token:
        answer["next_page_token"] = token
    return answer


def registered_models_latest(request, body):
    return {"model_versions": versions_dicts(latest_versions(request.user, body), request.user)}


def registered_models_set_alias(request, body):
    set_alias(request.user, body)
    return {}


def registered_models_delete_alias(request, body):
    delete_alias(request.user, body)
    return {}


def registered_models_get_alias(request, body):
    return _version_answer(request, version_by_alias(request.user, body))


def tags_not_stored(request, body):
    raise MlflowError("NOT_IMPLEMENTED", "tags of registered models and model versions are not stored", status=501)


def model_versions_create(request, body):
    return _version_answer(request, create_version(request.user, body))


def model_versions_get(request, body):
    return _version_answer(request, get_version(request.user, body.get("name"), body.get("version")))


def model_versions_update(request, body):
    version = get_version(request.user, body.get("name"), body.get("version"))
    if "description" in body:
        _service(services.update_version, request.user, version, description=str(body.get("description") or ""))
    return _version_answer(request, version)


def model_versions_delete(request, body):
    version = get_version(request.user, body.get("name"), body.get("version"))
    _service(services.delete_version, request.user, version)
    return {}


def model_versions_transition(request, body):
    version = get_version(request.user, body.get("name"), body.get("version"))
    archive = str(body.get("archive_existing_versions", "")).lower() == "true"
    _service(services.transition_stage, request.user, version, _stage(body.get("stage")), archive_existing=archive)
    return _version_answer(request, get_version(request.user, body.get("name"), body.get("version")))


def model_versions_search(request, body):
    versions, token = search_versions(request.user, body)
    answer: dict = {"model_versions": versions_dicts(versions, request.user)}
    if token:
        answer["next_page_token"] = token
    return answer


def model_versions_download_uri(request, body):
    return {"artifact_uri": download_uri(get_version(request.user, body.get("name"), body.get("version")))}


HANDLERS = {
    ("POST", "registered-models/create"): registered_models_create,
    ("GET", "registered-models/get"): registered_models_get,
    ("PATCH", "registered-models/update"): registered_models_update,
    ("POST", "registered-models/rename"): registered_models_rename,
    ("DELETE", "registered-models/delete"): registered_models_delete,
    ("GET", "registered-models/search"): registered_models_search,
    ("POST", "registered-models/get-latest-versions"): registered_models_latest,
    ("GET", "registered-models/get-latest-versions"): registered_models_latest,
    ("POST", "registered-models/alias"): registered_models_set_alias,
    ("DELETE", "registered-models/alias"): registered_models_delete_alias,
    ("GET", "registered-models/alias"): registered_models_get_alias,
    ("POST", "registered-models/set-tag"): tags_not_stored,
    ("DELETE", "registered-models/delete-tag"): tags_not_stored,
    ("POST", "model-versions/create"): model_versions_create,
    ("GET", "model-versions/get"): model_versions_get,
    ("PATCH", "model-versions/update"): model_versions_update,
    ("DELETE", "model-versions/delete"): model_versions_delete,
    ("POST", "model-versions/transition-stage"): model_versions_transition,
    ("GET", "model-versions/search"): model_versions_search,
    ("GET", "model-versions/get-download-uri"): model_versions_download_uri,
    ("POST", "model-versions/set-tag"): tags_not_stored,
    ("DELETE", "model-versions/delete-tag"): tags_not_stored,
}

"""MLflow 3 logged models: a model with its own id (``m-<hex>``), params, tags, metrics and files.

A model belongs to an experiment (a project) and, when MLflow names one, to its source run. On that
run it is the field ``models/<folder>/model_id`` and its files are the run's file set
``models/<folder>/files`` (``folder`` is the model's name, suffixed ``-2``, ``-3``… when the run
already holds a model of that name), so the run's page lists them and they count towards the
project's storage like every other file. The artifact location MLflow's client is given is
``mlflow-artifacts:/<experiment_id>/models/<model_id>/artifacts`` (as MLflow's own server assigns),
which the artifact proxy maps onto that file set. Every write goes through ``runs.services``
(files, the run's fields) or is checked by ``projects.permissions`` (the model's row).
"""

import functools
import math
import re
import uuid as uuid_module

from django.db import transaction
from django.utils import timezone

from projects import permissions

from ..models import Attribute, Run
from ..paths import PathError, validate_path
from . import experiments, tracking
from .errors import MlflowError, invalid, not_found
from .filters import Clause, like_regex, page_offset, page_token, parse_filter
from .models import LoggedModel

PREFIX = "models/"
STATUSES = (
    "LOGGED_MODEL_STATUS_UNSPECIFIED",
    "LOGGED_MODEL_PENDING",
    "LOGGED_MODEL_READY",
    "LOGGED_MODEL_UPLOAD_FAILED",
)
MAX_PARAMS_PER_REQUEST = 100
MAX_RESULTS = 1000
_ATTRIBUTES = {
    "name": "name",
    "model_id": "model_id",
    "model_type": "model_type",
    "status": "status",
    "source_run_id": "source_run_id",
    "creation_timestamp": "creation_timestamp_ms",
    "creation_time": "creation_timestamp_ms",
    "creation_timestamp_ms": "creation_timestamp_ms",
    "last_updated_timestamp": "last_updated_timestamp_ms",
    "last_updated_timestamp_ms": "last_updated_timestamp_ms",
}


def artifact_uri(model: LoggedModel) -> str:
    return f"mlflow-artifacts:/{model.project_id}/models/{model.model_id}/artifacts"


def files_path(model: LoggedModel) -> str:
    return f"{PREFIX}{model.folder}/files"


# --- look-ups ------------------------------------------------------------------------------


def get(user, model_id, *, allow_deleted: bool = False) -> LoggedModel:
    """The model ``model_id`` that ``user`` sees (through its experiment); RESOURCE_DOES_NOT_EXIST otherwise."""
    text = str(model_id or "").strip()
    if not text:
        raise invalid("Missing value for required parameter 'model_id'")
    models = permissions.scope_by_project(LoggedModel.objects.all(), user, "view")
    model = models.select_related("project", "project__workspace", "run", "run__project").filter(pk=text).first()
    if model is None or (model.deleted_at and not allow_deleted):
        raise not_found(f"Logged model with ID '{text[:64]}' not found")
    return model


def to_dict(model: LoggedModel) -> dict:
    info = {
        "model_id": model.model_id,
        "experiment_id": str(model.project_id),
        "name": model.name,
        "creation_timestamp_ms": tracking._ms(model.created_at),
        "last_updated_timestamp_ms": tracking._ms(model.updated_at),
        "artifact_uri": artifact_uri(model),
        "status": model.status,
        "model_type": model.model_type,
        "source_run_id": model.run.uuid.hex if model.run else "",
        "status_message": model.status_message,
        "tags": [{"key": k, "value": v} for k, v in sorted((model.tags or {}).items())],
    }
    if model.creator_id:
        info["creator_id"] = model.creator_id
    params = [{"key": k, "value": v} for k, v in sorted((model.params or {}).items())]
    return {"info": info, "data": {"params": params, "metrics": list(model.metrics or [])}}


# --- writes ---------------------------------------------------------------------------------


def _pairs(raw, what: str, limit: int | None = None) -> dict:
    """``[{key, value}, ...]`` as a dict (strings, the last value of a key wins)."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise invalid(f"{what}: must be a list of {{key, value}}")
    if limit is not None and len(raw) > limit:
        raise invalid(f"{what}: at most {limit} per request, got {len(raw)}")
    out = {}
    for item in raw:
        if not isinstance(item, dict):
            raise invalid(f"{what}: each must be an object with key and value")
        key = tracking._key(item.get("key"), what.rstrip("s"))
        value = item.get("value")
        out[key] = "" if value is None else str(value)
    return out


def _folder_for(run: Run, name: str) -> str:
    """The model's folder under ``models/`` on ``run``: its name, made a valid and unused path segment."""
    base = re.sub(r"[/\\\x00-\x1f\x7f]+", "_", name).strip()[:100].strip() or "model"
    if base in (".", ".."):
        base = "model"
    try:
        validate_path(f"{PREFIX}{base}/files", write=True)
    except PathError:
        base = "model"
    taken = set(LoggedModel.objects.filter(run=run, folder__startswith=base).values_list("folder", flat=True))
    taken |= {
        path[len(PREFIX) :].split("/", 1)[0]
        for path in Attribute.objects.filter(run=run, path__startswith=f"{PREFIX}{base}").values_list("path", flat=True)
    }
    folder, n = base, 1
    while folder in taken:
        n += 1
        folder = f"{base}-{n}"
    return folder


def _attach(user, model: LoggedModel, run: Run) -> None:
    """Make ``run`` the model's source run: the field ``models/<folder>/model_id`` on it."""
    tracking._require_active(run)
    permissions.require(user, "write", run.project)
    Run.objects.filter(pk=run.pk).update(modified_at=timezone.now())  # serialises folder choice per run
    model.run = run
    model.folder = _folder_for(run, model.name)
    model.save(update_fields=["run", "folder"])
    path = f"{PREFIX}{model.folder}/model_id"
    tracking._apply(user, run, [{"op": "assign", "path": path, "value": model.model_id, "type": "string"}])


def create(user, body: dict) -> LoggedModel:
    project = experiments.get(user, body.get("experiment_id"))
    if experiments.is_deleted(project):
        raise invalid(f"The experiment {project.pk} must be in the 'active' state. Current state is deleted.")
    permissions.require(user, "write", project)
    name = body.get("name") or tracking._random_name()
    if not isinstance(name, str) or len(name) > 250:
        raise invalid("name: must be a string of at most 250 characters")
    model_type = body.get("model_type") or ""
    if not isinstance(model_type, str) or len(model_type) > 250:
        raise invalid("model_type: must be a string of at most 250 characters")
    run = None
    if body.get("source_run_id"):
        run = tracking.get_run(user, body["source_run_id"])
        if run.project_id != project.pk:
            raise invalid(
                f"source_run_id: the run {run.uuid.hex} belongs to experiment {run.project_id}, not {project.pk}"
            )
    tags = _pairs(body.get("tags"), "tags")
    params = _pairs(body.get("params"), "params", MAX_PARAMS_PER_REQUEST)
    with transaction.atomic():
        model = LoggedModel.objects.create(
            model_id=f"m-{uuid_module.uuid4().hex}",
            project=project,
            name=name,
            model_type=model_type,
            creator=user if getattr(user, "pk", None) else None,
            tags=tags,
            params=params,
        )
        if run is not None:
            _attach(user, model, run)
    return get(user, model.model_id)


def _for_write(user, model_id) -> LoggedModel:
    model = get(user, model_id)
    permissions.require(user, "write", model.project)
    return LoggedModel.objects.select_for_update(of=("self",)).select_related("run", "project").get(pk=model.pk)


def _touch(model: LoggedModel, fields: list[str]) -> None:
    model.updated_at = timezone.now()
    model.save(update_fields=[*fields, "updated_at"])


def finalize(user, model_id, status) -> LoggedModel:
    if isinstance(status, int) and not isinstance(status, bool) and 0 <= status < len(STATUSES):
        status = STATUSES[status]
    if isinstance(status, str) and f"LOGGED_MODEL_{status}" in STATUSES:
        status = f"LOGGED_MODEL_{status}"
    if status not in STATUSES[1:]:
        raise invalid(f"Invalid value {status!r} for parameter 'status': expected one of {', '.join(STATUSES[1:])}")
    model = _for_write(user, model_id)
    model.status = status
    _touch(model, ["status"])
    return get(user, model.model_id)


def delete(user, model_id) -> None:
    model = _for_write(user, model_id)
    model.deleted_at = timezone.now()
    _touch(model, ["deleted_at"])


def set_tags(user, model_id, tags) -> None:
    values = _pairs(tags, "tags")
    model = _for_write(user, model_id)
    model.tags = {**(model.tags or {}), **values}
    _touch(model, ["tags"])


def delete_tag(user, model_id, key: str) -> None:
    model = _for_write(user, model_id)
    if key not in (model.tags or {}):
        raise not_found(f"No tag with key {key!r} on logged model {model.model_id}")
    model.tags = {k: v for k, v in model.tags.items() if k != key}
    _touch(model, ["tags"])


def log_params(user, model_id, params) -> None:
    values = _pairs(params, "params", MAX_PARAMS_PER_REQUEST)
    model = _for_write(user, model_id)
    model.params = {**(model.params or {}), **values}
    _touch(model, ["params"])


def log_outputs(user, run: Run, outputs) -> None:
    """MLflow's ``runs/outputs``: ``run`` produced these models; a model without a source run gets this one."""
    if not isinstance(outputs, list):
        raise invalid("models: must be a list of {model_id, step}")
    tracking._require_active(run)
    permissions.require(user, "write", run.project)
    for output in outputs:
        if not isinstance(output, dict):
            raise invalid("models: each must be an object with model_id and step")
        tracking._as_int(output.get("step"), "step", default=0)
        model = _for_write(user, output.get("model_id"))
        if model.project_id != run.project_id:
            raise invalid(
                f"models: the logged model {model.model_id} belongs to experiment {model.project_id}, "
                f"not to the run's experiment {run.project_id}"
            )
        if model.run_id is None:
            _attach(user, model, run)


def record_metrics(user, run: Run, metrics) -> None:
    """Metrics of a log-batch that name a ``model_id`` are the model's too (its ``data.metrics``).

    A point sent again is kept once; a model of another experiment, or one not found, is left alone
    (the points are still the run's)."""
    by_model: dict = {}
    for metric in metrics or []:
        if isinstance(metric, dict) and isinstance(metric.get("model_id"), str) and metric["model_id"]:
            by_model.setdefault(metric["model_id"], []).append(metric)
    for model_id, items in by_model.items():
        model = LoggedModel.objects.select_for_update().filter(pk=model_id, project_id=run.project_id).first()
        if model is None or model.deleted_at:
            continue
        stored = list(model.metrics or [])
        seen = {_metric_key(m) for m in stored}
        for item in items:
            value = tracking._as_float(item.get("value"), "value")
            point = {
                "key": item["key"],
                "value": tracking.json_float(value),
                "timestamp": tracking._as_int(item.get("timestamp"), "timestamp"),
                "step": tracking._as_int(item.get("step"), "step", default=0),
                "run_id": run.uuid.hex,
                "model_id": model_id,
            }
            for extra in ("dataset_name", "dataset_digest"):
                if item.get(extra):
                    point[extra] = str(item[extra])
            if _metric_key(point) not in seen:
                seen.add(_metric_key(point))
                stored.append(point)
        model.metrics = stored
        _touch(model, ["metrics"])


def _metric_key(point: dict) -> tuple:
    return (
        point.get("key"),
        point.get("step"),
        point.get("timestamp"),
        str(point.get("value")),
        point.get("dataset_name"),
        point.get("dataset_digest"),
    )


# --- search ---------------------------------------------------------------------------------


def _latest_metrics(model: LoggedModel) -> dict:
    latest: dict = {}
    for point in model.metrics or []:
        rank = (point.get("step", 0), point.get("timestamp", 0))
        if point["key"] not in latest or rank >= latest[point["key"]][0]:
            latest[point["key"]] = (rank, point["value"])
    return {key: _number(value) for key, (_, value) in latest.items()}


def _number(value) -> float:
    if isinstance(value, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(value, math.nan)
    return float(value)


def _field(model: LoggedModel, body: dict, entity: str, key: str):
    """The value a filter or an order compares: a string, a number, or None when the model has none."""
    if entity == "metric":
        return _latest_metrics(model).get(key)
    if entity == "param":
        return (model.params or {}).get(key)
    if entity == "tag":
        return (model.tags or {}).get(key)
    if entity == "attribute" and key in _ATTRIBUTES:
        value = body["info"].get(_ATTRIBUTES[key])
        if key == "status" and isinstance(value, str):
            return value.removeprefix("LOGGED_MODEL_")
        return value
    raise invalid(
        f"Invalid attribute key {key!r} for logged models. Valid keys are {sorted(set(_ATTRIBUTES))}, "
        "metrics.<key>, params.<key> and tags.<key>"
    )


def _row_sort_value(row: tuple, *, entity: str, key: str):
    return _sort_value(row[0], row[1], entity, key)


def _sort_value(model: LoggedModel, body: dict, entity: str, key: str):
    """What an order compares: the model's times to the microsecond (models made within one millisecond
    keep their order), else the value a filter compares."""
    if entity == "attribute" and _ATTRIBUTES.get(key) == "creation_timestamp_ms":
        return model.created_at
    if entity == "attribute" and _ATTRIBUTES.get(key) == "last_updated_timestamp_ms":
        return model.updated_at
    return _field(model, body, entity, key)


def _matches(actual, clause: Clause) -> bool:
    op, value = clause.op, clause.value
    if op == "IS NULL":
        return actual is None
    if op == "IS NOT NULL":
        return actual is not None
    if actual is None:
        return False
    if clause.entity == "attribute" and clause.key == "status":
        value = [str(v).removeprefix("LOGGED_MODEL_") for v in value] if isinstance(value, list) else value
        value = value.removeprefix("LOGGED_MODEL_") if isinstance(value, str) else value
    if op in ("LIKE", "ILIKE"):
        if not isinstance(value, str):
            raise invalid(f"{op} on {clause.key!r} needs a quoted pattern")
        return re.match(like_regex(value, op == "ILIKE"), str(actual)) is not None
    if op in ("IN", "NOT IN"):
        if not isinstance(value, list):
            raise invalid(f"{op} on {clause.key!r} needs a list like ('a', 'b')")
        found = str(actual) in {str(v) for v in value}
        return found if op == "IN" else not found
    if isinstance(actual, (int, float)):
        try:
            value = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise invalid(f"Expected a numeric value for {clause.key!r}, got {value!r}") from None
    elif not isinstance(value, str):
        raise invalid(f"Expected a quoted string value for {clause.key!r}, got {value!r}")
    elif op not in ("=", "!="):
        raise invalid(f"Invalid comparator {op!r} for {clause.key!r}: only =, !=, LIKE, ILIKE, IN and NOT IN")
    return {
        "=": actual == value,
        "!=": actual != value,
        "<": actual < value,
        "<=": actual <= value,
        ">": actual > value,
        ">=": actual >= value,
    }[op]


def _order_keys(order_by) -> list[tuple[str, str, bool]]:
    keys = []
    for item in order_by or []:
        if not isinstance(item, dict) or not isinstance(item.get("field_name"), str):
            raise invalid("order_by: each must be an object with field_name (and ascending)")
        head, dot, rest = item["field_name"].partition(".")
        entity = {"metrics": "metric", "params": "param", "tags": "tag"}.get(head) if dot else None
        if entity is None:
            entity, rest = "attribute", item["field_name"].removeprefix("attributes.")
        keys.append((entity, rest, item.get("ascending", True) is not False))
    return keys or [("attribute", "creation_timestamp", False)]


def search(user, body: dict) -> tuple[list[dict], str | None]:
    """MLflow's search-logged-models over the experiments ``user`` sees: filter, order and pages."""
    ids = body.get("experiment_ids") or []
    if isinstance(ids, str):
        ids = [ids]
    if not ids:
        raise invalid("experiment_ids: at least one experiment id is required")
    projects = [experiments.get(user, i) for i in ids]
    clauses = parse_filter(body.get("filter") or "")
    max_results = tracking._as_int(body.get("max_results"), "max_results", default=100)
    if max_results <= 0:
        raise invalid(f"Invalid value {max_results} for parameter 'max_results': it must be positive")
    max_results = min(max_results, MAX_RESULTS)
    offset = page_offset(body.get("page_token"))
    models = LoggedModel.objects.filter(project__in=projects, deleted_at__isnull=True).select_related("run")
    for clause in clauses:  # narrow in the database where it is cheap; every clause is checked below
        if clause.entity == "attribute" and clause.op == "=" and isinstance(clause.value, str):
            if clause.key == "name":
                models = models.filter(name=clause.value)
            elif clause.key == "model_id":
                models = models.filter(pk=clause.value)
    rows = []
    for model in models.order_by("pk"):
        body_ = to_dict(model)
        if all(_matches(_field(model, body_, c.entity, c.key), c) for c in clauses):
            rows.append((model, body_))
    for entity, key, ascending in reversed([*_order_keys(body.get("order_by")), ("attribute", "model_id", True)]):
        present = [r for r in rows if _field(r[0], r[1], entity, key) is not None]
        missing = [r for r in rows if _field(r[0], r[1], entity, key) is None]
        present.sort(key=functools.partial(_row_sort_value, entity=entity, key=key), reverse=not ascending)
        rows = present + missing  # models lacking the field last, as for runs
    page = [r[1] for r in rows[offset : offset + max_results]]
    more = offset + max_results < len(rows)
    return page, (page_token(offset + max_results) if more else None)


def require_files(model: LoggedModel) -> Run:
    """The run holding the model's files (its source run)."""
    if model.run is None:
        raise MlflowError(
            "NOT_IMPLEMENTED",
            f"Logged model {model.model_id} has no source run: this server keeps a model's files on the run that "
            "produced it. Log the model inside a run (mlflow.start_run()).",
            status=501,
        )
    return model.run

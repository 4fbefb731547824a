"""MLflow runs ↔ Runstore runs: reads, writes (all through ``runs.services``) and search.

Where things live in a run:

* params → ``parameters/<key>`` (strings, exactly as sent; a second, different value is refused);
* tags → ``tags/<key>`` (strings, last write wins); ``mlflow.runName`` is the run's name
  (``sys/name``) and ``mlflow.note.content`` its description (``sys/description``);
* metrics → the float series ``metrics/<key>`` with MLflow's step as the series' step, so charts
  and the query engine see them; MLflow's exact history (any number of points per step, any order)
  is kept beside it (:class:`~runs.mlflow.models.Metric`), and so is each metric's latest point;
* dataset inputs → ``inputs/<name>-<digest>/{name,hash,location,source_type,schema,profile,context}``
  (``hash`` + ``location``: a tracked artifact version the lineage panel lists);
* artifacts → the file set ``artifacts`` (one file per artifact path);
* the ``start_time`` and ``end_time`` the client sends → the datetimes ``mlflow/start_time`` and
  ``mlflow/end_time`` (reported back instead of the run's creation and finish times).
"""

import base64
import functools
import json
import math
import random
import secrets
import uuid as uuid_module
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, connections, transaction
from django.db.models import Q
from django.http import Http404
from django.utils import timezone

from projects import permissions
from projects.models import Project, Workspace

from .. import ingest, services
from .. import series as series_store
from ..errors import ApiError
from ..models import Attribute, AttributeType, Run, RunState
from ..paths import PathError, validate_path
from ..query import QueryError, QueryTimeout, RunQuery, query_budget
from . import experiments
from . import rows as sqlrows
from .errors import MlflowError, invalid, not_found
from .filters import (
    METRIC_PREFIX,
    PARAM_PREFIX,
    STATE_TO_STATUS,
    STATUS_TO_STATE,
    TAG_PREFIX,
    page_offset,
    parse_filter,
    translate,
    translate_order_by,
)
from .models import LatestMetric, Metric

INPUT_PREFIX = "inputs/"
START_TIME_PATH = "mlflow/start_time"
END_TIME_PATH = "mlflow/end_time"
TIME_PATHS = (START_TIME_PATH, END_TIME_PATH)
FINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")
ARTIFACTS_PATH = "artifacts"
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_RESULTS = 1000
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"
STREAM = "mlflow"

_ADJECTIVES = ("amber", "brave", "calm", "clever", "eager", "gentle", "bright", "quiet", "rapid", "silent")
_NOUNS = ("otter", "falcon", "lynx", "heron", "fox", "whale", "owl", "panda", "wolf", "crane")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(dt) -> int | None:
    """Milliseconds since the epoch, exactly (no float rounding: a stored client time reads back as sent)."""
    return None if dt is None else (dt - _EPOCH) // timedelta(milliseconds=1)


def _time_op(path: str, value, name: str) -> dict:
    """The assignment of MLflow milliseconds ``value`` to the datetime field ``path``."""
    ms = _as_int(value, name)
    if not -62135596800000 <= ms <= 253402300799999:
        raise invalid(f"Invalid value {value!r} for parameter '{name}': out of the datetime range")
    stamp = datetime.fromtimestamp(ms // 1000, tz=UTC) + timedelta(milliseconds=ms % 1000)
    return {"op": "assign", "path": path, "value": stamp.isoformat(), "type": "datetime"}


def json_float(value: float):
    """MLflow's JSON for a double: NaN and ±Infinity as the strings protobuf reads."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _as_int(value, name: str, default=None) -> int:
    if value is None or value == "":
        if default is None:
            raise invalid(f"Missing value for required parameter '{name}'")
        return default
    if isinstance(value, bool):
        raise invalid(f"Invalid value {value!r} for parameter '{name}': expected an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid value {value!r} for parameter '{name}': expected an integer") from None
    if not -(2**63) <= number < 2**63:
        raise invalid(f"Invalid value {value!r} for parameter '{name}': out of the 64-bit range")
    return number


def _as_float(value, name: str) -> float:
    if isinstance(value, str):
        special = {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf, "inf": math.inf, "-inf": -math.inf}
        if value.strip().lower() in special:
            return special[value.strip().lower()]
    if isinstance(value, bool) or value is None:
        raise invalid(f"Invalid value {value!r} for parameter '{name}': expected a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid value {value!r} for parameter '{name}': expected a number") from None


def _key(value, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(f"Missing value for required parameter 'key' of a {what}")
    if len(value) > MAX_KEY_LENGTH:
        raise invalid(f"{what} key '{value[:40]}...' had length {len(value)}, which exceeded length limit of 250")
    return value


def _field_path(prefix: str, key: str, what: str) -> str:
    try:
        return validate_path(prefix + key, write=True)
    except PathError as exc:
        raise invalid(f"Invalid {what} name: {key!r} {exc}") from None


# --- look-ups ------------------------------------------------------------------


def get_run(user, run_id) -> Run:
    """The run ``run_id`` (32 hex digits, or a UUID) that ``user`` sees, live or in the trash."""
    text = str(run_id or "").strip()
    if not text:
        raise invalid("Missing value for required parameter 'run_id'")
    try:
        key = uuid_module.UUID(text)
    except ValueError:
        raise not_found(f"Run with id={text[:64]} not found") from None
    # Found by key, then its project checked in one statement (no permission subquery to build).
    run = _run_by_uuid(key)
    if run is None or "view" not in permissions.project_actions(user, run.project_id):
        raise not_found(f"Run with id={text} not found")
    return run


@functools.cache
def _run_sql(db: str) -> str:
    """A run by its key, with its project, workspace and owner (``select_related``'s, as plain SQL)."""
    quote = connections[db].ops.quote_name
    user_model = get_user_model()
    run_project = quote(Run._meta.get_field("project").column)
    run_owner = quote(Run._meta.get_field("owner").column)
    project_workspace = quote(Project._meta.get_field("workspace").column)
    return (
        f"SELECT {sqlrows.columns(Run, 'r', db)}, {sqlrows.columns(Project, 'p', db)}, {sqlrows.columns(Workspace, 'w', db)}, "
        f"{sqlrows.columns(user_model, 'u', db)} FROM {quote(Run._meta.db_table)} r "
        f"JOIN {quote(Project._meta.db_table)} p ON p.{quote(Project._meta.pk.column)} = r.{run_project} "
        f"JOIN {quote(Workspace._meta.db_table)} w ON w.{quote(Workspace._meta.pk.column)} = p.{project_workspace} "
        f"LEFT JOIN {quote(user_model._meta.db_table)} u ON u.{quote(user_model._meta.pk.column)} = r.{run_owner} "
        f"WHERE r.{quote(Run._meta.get_field('uuid').column)} = %s"
    )


def _run_by_uuid(key: uuid_module.UUID) -> Run | None:
    """The run with ``key``, its project, workspace and owner loaded (one statement, no queryset built)."""
    db = sqlrows.read_db(Run)
    with connections[db].cursor() as cursor:
        cursor.execute(_run_sql(db), [Run._meta.get_field("uuid").get_db_prep_value(key, connections[db])])
        row = cursor.fetchone()
    if row is None:
        return None
    user_model = get_user_model()
    edges = [0]
    for model in (Run, Project, Workspace, user_model):
        edges.append(edges[-1] + sqlrows.width(model))
    run = sqlrows.build(Run, "r", db, row[edges[0] : edges[1]])
    project = sqlrows.build(Project, "p", db, row[edges[1] : edges[2]])
    project.workspace = sqlrows.build(Workspace, "w", db, row[edges[2] : edges[3]])
    run.project = project
    run.owner = sqlrows.build(user_model, "u", db, row[edges[3] : edges[4]])
    return run


def _require_active(run: Run) -> None:
    if run.deleted_at is not None:
        raise invalid(f"The run {run.uuid.hex} must be in the 'active' state. Current state is deleted.")


def run_ids_to_human(project, hex_ids: list[str]) -> list[str]:
    keys = []
    for text in hex_ids:
        try:
            keys.append(uuid_module.UUID(text))
        except ValueError:
            continue
    rows = Run.objects.filter(project=project, uuid__in=keys).values_list("number", flat=True)
    return [f"{project.key}-{n}" for n in rows]


# --- reading a run as MLflow's Run ------------------------------------------------


def _text(attr: Attribute) -> str:
    t = attr.type
    if t == AttributeType.STRING:
        return attr.string_value or ""
    if t == AttributeType.INT:
        return str(attr.int_value)
    if t == AttributeType.FLOAT:
        return repr(attr.float_value) if attr.float_value is not None else "nan"
    if t == AttributeType.BOOL:
        return str(attr.bool_value)
    if t == AttributeType.DATETIME:
        return attr.datetime_value.isoformat() if attr.datetime_value else ""
    return json.dumps(attr.json_value)


# What a run's MLflow view reads of its fields and latest metrics: plain rows (named tuples with the
# attribute names the readers below use), not model instances (a search page reads ~10 per run).
class _FieldRow(NamedTuple):
    run_id: int
    path: str
    type: str
    string_value: str | None
    int_value: int | None
    float_value: float | None
    bool_value: bool | None
    datetime_value: datetime | None
    json_value: object


_FIELD_COLUMNS = _FieldRow._fields
_LATEST_COLUMNS = ("run_id", "key", "step", "timestamp", "value", "is_nan")


def _data_of(runs: list[Run]) -> tuple[dict, dict]:
    """Per run pk: its params/tags/inputs fields, and its latest metrics (two queries for any number of
    runs), each in path (key) order."""
    attrs: dict = defaultdict(list)
    latest: dict = defaultdict(list)
    ids = [r.pk for r in runs]
    if ids:
        wanted = (
            Q(path__startswith=PARAM_PREFIX)
            | Q(path__startswith=TAG_PREFIX)
            | Q(path__startswith=INPUT_PREFIX)
            | Q(path__in=TIME_PATHS)
        )
        rows = Attribute.objects.filter(Q(run_id__in=ids) & wanted).order_by("path")
        for attr in rows.values_list(*_FIELD_COLUMNS, named=True):
            attrs[attr.run_id].append(attr)
        metrics = LatestMetric.objects.filter(run_id__in=ids).order_by("key")
        for metric in metrics.values_list(*_LATEST_COLUMNS, named=True):
            latest[metric.run_id].append(metric)
    return attrs, latest


def _inputs(attrs: list[Attribute]) -> list[dict]:
    groups: dict = defaultdict(dict)
    for attr in attrs:
        if attr.path.startswith(INPUT_PREFIX) and attr.type == AttributeType.STRING:
            folder, _, leaf = attr.path[len(INPUT_PREFIX) :].rpartition("/")
            groups[folder][leaf] = attr.string_value or ""
    out = []
    for _, fields in sorted(groups.items()):
        dataset = {
            "name": fields.get("name", ""),
            "digest": fields.get("hash", ""),
            "source_type": fields.get("source_type", ""),
            "source": fields.get("location", ""),
        }
        for extra in ("schema", "profile"):
            if fields.get(extra):
                dataset[extra] = fields[extra]
        tags = [{"key": "mlflow.data.context", "value": fields["context"]}] if fields.get("context") else []
        out.append({"tags": tags, "dataset": dataset})
    return out


def run_info(run: Run, attrs: list[Attribute] | None = None) -> dict:
    """MLflow's RunInfo; ``attrs`` are the run's attributes when already read (else its times are read)."""
    if attrs is None:
        attrs = list(Attribute.objects.filter(run=run, path__in=TIME_PATHS))
    times = {a.path: a.datetime_value for a in attrs if a.path in TIME_PATHS and a.type == AttributeType.DATETIME}
    info = {
        "run_id": run.uuid.hex,
        "run_uuid": run.uuid.hex,
        "run_name": run.name,
        "experiment_id": str(run.project_id),
        "user_id": run.owner.username if run.owner else "",
        "status": STATE_TO_STATUS.get(run.state, "RUNNING"),
        "start_time": _ms(times.get(START_TIME_PATH) or run.created_at),
        "artifact_uri": f"mlflow-artifacts:/{run.project_id}/{run.uuid.hex}/artifacts",
        "lifecycle_stage": "deleted" if run.deleted_at else "active",
    }
    end = times.get(END_TIME_PATH) or run.finished_at
    if end:
        info["end_time"] = _ms(end)
    return info


def run_dict(run: Run, attrs: list, latest: list) -> dict:
    """MLflow's Run; ``attrs`` and ``latest``: its fields and latest metrics (rows or model instances)."""
    params, tags = [], []
    for attr in attrs:
        if attr.path.startswith(PARAM_PREFIX):
            params.append({"key": attr.path[len(PARAM_PREFIX) :], "value": _text(attr)})
        elif attr.path.startswith(TAG_PREFIX):
            tags.append({"key": attr.path[len(TAG_PREFIX) :], "value": _text(attr)})
    tags.append({"key": RUN_NAME_TAG, "value": run.name})
    if run.description:
        tags.append({"key": NOTE_TAG, "value": run.description})
    metrics = [
        {
            "key": m.key,
            "value": json_float(math.nan if m.is_nan else m.value),
            "timestamp": m.timestamp,
            "step": m.step,
        }
        for m in latest
    ]
    return {
        "info": run_info(run, attrs),
        "data": {"metrics": metrics, "params": params, "tags": tags},
        "inputs": {"dataset_inputs": _inputs(attrs)},
    }


def runs_dicts(runs: list[Run]) -> list[dict]:
    attrs, latest = _data_of(runs)
    return [run_dict(run, attrs.get(run.pk, []), latest.get(run.pk, [])) for run in runs]


# --- writes --------------------------------------------------------------------------


def _apply(user, run: Run, ops: list[dict]) -> None:
    """Apply native batch operations through ``runs.services`` (permissions, quotas, idempotent batch key)."""
    if not ops:
        permissions.require(user, "write", run.project)
        return
    services.apply_batch(user, run, stream=STREAM, seq=secrets.randbelow(2**63), raw_ops=ops)


def _random_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(100, 999)}"  # noqa: S311 (a name)


def create_run(user, body: dict) -> Run:
    """A new run of ``body``'s experiment (made on first use when it is the default one), in one
    transaction; its MLflow view is :func:`new_run_dict`."""
    with transaction.atomic():
        return _create_run(user, body)


def _create_run(user, body: dict) -> Run:
    project = experiments.get(user, body.get("experiment_id") or experiments.DEFAULT_ID)
    if experiments.is_deleted(project):
        raise invalid(f"The experiment {project.pk} must be in the 'active' state. Current state is deleted.")
    tags = _tags_of(body.get("tags"))
    name = body.get("run_name") or tags.pop(RUN_NAME_TAG, None) or _random_name()
    tags.pop(RUN_NAME_TAG, None)
    if not isinstance(name, str):
        raise invalid("run_name: must be a string")
    description = tags.pop(NOTE_TAG, "")
    ops = [_tag_op(k, v) for k, v in tags.items()]
    if body.get("start_time") not in (None, ""):
        ops.append(_time_op(START_TIME_PATH, body["start_time"], "start_time"))
    # Creating a run takes its project's run counter (a row lock held until the commit, so that
    # concurrent creations number in turn): all checks above run before it, and after it only the
    # run's own rows are written, in the fewest statements: the run is new and seen by no other
    # transaction, so its fields need no batch key, no lock of its row and no read.
    run, _ = services.create_run(user, project, name=name[:250], description=description)
    run.project = project
    if ops:
        services.apply_batch(user, run, stream=STREAM, seq=None, raw_ops=ops, fields={})
    return run  # as created (its owner the caller); the ops above change no field of the run's row


def new_run_dict(run: Run, body: dict) -> dict:
    """MLflow's Run for ``run`` just made by :func:`create_run` from ``body``, without reading it back:
    its only fields are the tags and start time sent (already checked by ``create_run``)."""
    tags = _tags_of(body.get("tags"))
    tags.pop(RUN_NAME_TAG, None)
    tags.pop(NOTE_TAG, None)
    fields = [
        _FieldRow(run.pk, TAG_PREFIX + key, AttributeType.STRING, value, None, None, None, None, None)
        for key, value in sorted(tags.items())
    ]
    if body.get("start_time") not in (None, ""):
        ms = _as_int(body["start_time"], "start_time")
        stamp = _EPOCH + timedelta(milliseconds=ms)
        fields.append(_FieldRow(run.pk, START_TIME_PATH, AttributeType.DATETIME, None, None, None, None, stamp, None))
    return run_dict(run, fields, [])


def _tags_of(raw) -> dict:
    out: dict = {}
    if raw is None:
        return out
    if not isinstance(raw, list):
        raise invalid("tags: must be a list of {key, value}")
    if len(raw) > MAX_PARAMS_TAGS_PER_BATCH * 10:
        raise invalid("tags: too many tags")
    for tag in raw:
        if not isinstance(tag, dict):
            raise invalid("tags: each tag must be an object with key and value")
        key = _key(tag.get("key"), "tag")
        value = tag.get("value", "")
        value = "" if value is None else str(value)
        if len(value) > MAX_TAG_VALUE_LENGTH:
            raise invalid(
                f"Tag value '{value[:40]}...' had length {len(value)}, which exceeded length limit of {MAX_TAG_VALUE_LENGTH}"
            )
        out[key] = value
    return out


def _tag_op(key: str, value: str) -> dict:
    if key == RUN_NAME_TAG:
        return {"op": "assign", "path": "sys/name", "value": value[:250]}
    if key == NOTE_TAG:
        return {"op": "assign", "path": "sys/description", "value": value}
    return {"op": "assign", "path": _field_path(TAG_PREFIX, key, "tag"), "value": value, "type": "string"}


def update_run(user, run: Run, body: dict) -> Run:
    _require_active(run)
    changes: dict = {}
    status = body.get("status")
    if status:
        if status not in STATUS_TO_STATE and status != "SCHEDULED":
            raise invalid(f"Invalid run status {status!r}")
        changes["state"] = STATUS_TO_STATE.get(status, RunState.RUNNING)
    if body.get("run_name"):
        if not isinstance(body["run_name"], str):
            raise invalid("run_name: must be a string")
        changes["name"] = body["run_name"][:250]
    ops = []
    if body.get("end_time") not in (None, ""):
        ops.append(_time_op(END_TIME_PATH, body["end_time"], "end_time"))
    elif status in FINAL_STATUSES:
        # MLflow's client always sends end_time with a final status; another client gets the server's time,
        # so that every run ended through this API has an end time to filter on.
        ops.append(_time_op(END_TIME_PATH, _ms(timezone.now()), "end_time"))
    with transaction.atomic():
        if changes:
            services.update_run(user, run, **changes)
        _apply(user, run, ops)
    return get_run(user, run.uuid.hex)


def set_deleted(user, run: Run, deleted: bool) -> None:
    if deleted:
        services.delete_run(user, run)
    else:
        services.restore_run(user, run)


def set_tag(user, run: Run, key, value) -> None:
    _require_active(run)
    tags = _tags_of([{"key": key, "value": value}])
    _apply(user, run, [_tag_op(k, v) for k, v in tags.items()])


def delete_tag(user, run: Run, key) -> None:
    _require_active(run)
    key = _key(key, "tag")
    if key == RUN_NAME_TAG:
        raise invalid("mlflow.runName is the run's name; set another name instead")
    path = NOTE_TAG if key == NOTE_TAG else _field_path(TAG_PREFIX, key, "tag")
    if key == NOTE_TAG:
        services.update_run(user, run, description="")
        return
    permissions.require(user, "write", run.project)
    if not Attribute.objects.filter(run=run, path=path).exists():
        raise not_found(f"No tag with name: {key} in run with id {run.uuid.hex}")
    _apply(user, run, [{"op": "delete", "path": path}])


def _params_of(raw) -> dict:
    out: dict = {}
    for param in raw or []:
        if not isinstance(param, dict):
            raise invalid("params: each param must be an object with key and value")
        key = _key(param.get("key"), "param")
        value = param.get("value")
        if value is None:
            raise invalid(f"Missing value for required parameter 'value' of param {key!r}")
        value = str(value) if not isinstance(value, str) else value
        if len(value) > MAX_PARAM_VALUE_LENGTH:
            raise invalid(
                f"Param value '{value[:40]}...' had length {len(value)}, which exceeded length limit of {MAX_PARAM_VALUE_LENGTH}"
            )
        if key in out and out[key] != value:
            raise invalid(f"Duplicate parameter keys have been submitted: {key!r} with different values")
        out[key] = value
    return out


def _param_ops(run: Run, params: dict, stored: dict | None = None) -> list[dict]:
    """Assignments for params not logged yet; a param logged before with another value is refused.
    ``stored``: the run's attributes by path, when read already."""
    paths = {key: _field_path(PARAM_PREFIX, key, "param") for key in params}
    if stored is None:
        stored = {a.path: a for a in Attribute.objects.filter(run=run, path__in=paths.values())}
    ops = []
    for key, value in params.items():
        attr = stored.get(paths[key])
        if attr is None:
            ops.append({"op": "assign", "path": paths[key], "value": value, "type": "string"})
        elif _text(attr) != value:
            raise invalid(
                f"Changing param values is not allowed. Param with key='{key}' was already logged with "
                f"value='{_text(attr)}' for run ID='{run.uuid.hex}'. Attempted logging new value '{value}'."
            )
    return ops


_INT64 = range(-(2**63), 2**63)  # ``n in _INT64`` is one comparison pair for an int


def _metrics_of(raw) -> list[tuple[str, float, int, int]]:
    """``(key, value, timestamp, step)`` of each metric. Up to 1,000 per request: the usual shapes
    (a float value; int64s as protobuf's JSON writes them, decimal strings, or as numbers) are taken
    without a call per field; anything else goes through the checks that name what is wrong."""
    out: list[tuple[str, float, int, int]] = []
    append = out.append
    checked: set[str] = set()
    for metric in raw or []:
        if type(metric) is not dict and not isinstance(metric, dict):
            raise invalid("metrics: each metric must be an object with key, value, timestamp and step")
        key = metric.get("key")
        if type(key) is not str or key not in checked:  # a batch names a few keys many times: each is checked once
            key = _key(key, "metric")
            _field_path(METRIC_PREFIX, key, "metric")
            checked.add(key)
        if "value" not in metric:
            raise invalid(f"Missing value for required parameter 'value' of metric {key!r}")
        value = metric["value"]
        if type(value) is not float:
            value = _as_float(value, "value")
        sent = metric.get("timestamp")
        timestamp = int(sent) if type(sent) is str and sent.isdecimal() else sent if type(sent) is int else None
        if timestamp is None or timestamp not in _INT64:
            timestamp = _as_int(sent, "timestamp")
        sent = metric.get("step")
        step = int(sent) if type(sent) is str and sent.isdecimal() else sent if type(sent) is int else None
        if step is None or step not in _INT64:
            step = _as_int(sent, "step", default=0)
        append((key, value, timestamp, step))
    return out


def _rank_sql(alias: str, lowest: str) -> str:
    """A point's rank in MLflow's order for 'latest' (:func:`_row_rank`), as an SQL row value."""
    return f'({alias}.step, {alias}."timestamp", CASE WHEN {alias}.is_nan THEN {lowest} ELSE {alias}.value END)'


def _upsert_latest_sql(source: str, lowest: str) -> str:
    """``INSERT`` of the points of ``source`` as their metrics' latest, unless the stored latest ranks higher."""
    table = LatestMetric._meta.db_table
    return (
        f'INSERT INTO {table} (run_id, key, step, "timestamp", value, is_nan) {source} '
        'ON CONFLICT (run_id, key) DO UPDATE SET step = excluded.step, "timestamp" = excluded."timestamp", '
        f"value = excluded.value, is_nan = excluded.is_nan "
        f"WHERE {_rank_sql('excluded', lowest)} > {_rank_sql(table, lowest)}"
    )


def _points_and_latest_sql(run: Run, rows: list[tuple]) -> tuple[str, list]:
    """PostgreSQL: the statement that inserts MLflow metric points ``(key, step, timestamp, value,
    is_nan)`` and makes each metric's highest new point its latest (unless the stored latest ranks
    higher); its rows are read by :func:`_points_and_latest_rows`.

    A point stored before (a retried request) is skipped by the unique constraint
    (``ON CONFLICT DO NOTHING``); the new ones go on, in the same statement, to the latest points'
    upsert (one round trip for both tables: a log-batch of a few metrics is mostly round trips)."""
    lowest = "'-Infinity'::float8"
    keys, steps, stamps, values, nans = zip(*rows, strict=True)
    names = list(dict.fromkeys(keys))
    index = {name: str(i) for i, name in enumerate(names, 1)}
    best = (  # each key's highest new point (of equal ranks, a number before a NaN)
        "SELECT DISTINCT ON (key) %s, key, step, timestamp, value, is_nan FROM ins ORDER BY key, step DESC, "
        f"timestamp DESC, CASE WHEN is_nan THEN {lowest} ELSE value END DESC, is_nan"
    )
    sql = (
        "WITH ins AS ("
        f"INSERT INTO {Metric._meta.db_table} (run_id, key, step, timestamp, value, is_nan) "
        "SELECT %s, (%s::varchar[])[k], s, t, v, n FROM UNNEST("
        "%s::int[], %s::bigint[], %s::bigint[], %s::double precision[], %s::boolean[]) AS p(k, s, t, v, n) "
        "ON CONFLICT DO NOTHING RETURNING key, step, timestamp, value, is_nan), "
        f"up AS ({_upsert_latest_sql(best, lowest)} "
        'RETURNING key, step, "timestamp", value, is_nan) '
        "SELECT false, key, step, timestamp, value, is_nan FROM ins "
        'UNION ALL SELECT true, key, step, "timestamp", value, is_nan FROM up'
    )
    # The columns as array literals made by one join each (the driver's list adaptation costs tens of
    # ms per 1,000 points); the batch's few keys as an array the rows index (1-based).
    params = [
        run.pk,
        names,
        _pg_array(map(index.__getitem__, keys)),
        _pg_array(map(str, steps)),
        _pg_array(map(str, stamps)),
        _pg_array(map(repr, values)),  # the shortest exact form; inf and -inf as PostgreSQL reads them
        _pg_array("t" if nan else "f" for nan in nans),
        run.pk,
    ]
    return sql, params


def _points_and_latest_rows(fetched) -> tuple[list[tuple], dict[str, tuple]]:
    """The rows of :func:`_points_and_latest_sql`: the points that were new, and by key the latest
    points that changed."""
    new, newer = [], {}
    for latest, key, step, timestamp, value, is_nan in fetched:
        if latest:
            newer[key] = (key, step, timestamp, value, is_nan)
        else:
            new.append((key, step, timestamp, value, is_nan))
    return new, newer


def _insert_points(run: Run, rows: list[tuple]) -> list[tuple]:
    """SQLite: insert MLflow metric points ``(key, step, timestamp, value, is_nan)``; returns those that
    were new. A point stored before (a retried request) is skipped by the unique constraint, in the
    same statement (``ON CONFLICT DO NOTHING ... RETURNING``), no model instances."""
    table = Metric._meta.db_table
    columns = "run_id, key, step, timestamp, value, is_nan"
    returning = "RETURNING key, step, timestamp, value, is_nan"
    stored: list[tuple] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 500):  # well under SQLite's limit of bound parameters
            chunk = rows[start : start + 500]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join(['(%s, %s, %s, %s, %s, %s)'] * len(chunk))} "
                f"ON CONFLICT DO NOTHING {returning}",
                [v for row in chunk for v in (run.pk, *row)],
            )
            stored += cursor.fetchall()
    return [(k, s, t, v, bool(n)) for k, s, t, v, n in stored]


def _pg_array(items) -> str:
    """A PostgreSQL array literal of ``items``, strings that need no quoting (numbers, t/f)."""
    return "{" + ",".join(items) + "}"


def _row_rank(row: tuple) -> tuple:
    """MLflow's order of points ``(key, step, timestamp, value, is_nan)`` for 'latest': step, then
    timestamp, then value (NaN lowest)."""
    return (row[1], row[2], -math.inf if row[4] else row[3])


def _upsert_latest(run: Run, best: dict[str, tuple]) -> set[str]:
    """SQLite: make each ``best`` point ``(key, step, timestamp, value, is_nan)`` its metric's latest unless
    the stored latest ranks higher (MLflow's order, :func:`_row_rank`), in one statement; returns the keys
    whose latest point changed."""
    rows = list(best.values())
    values = "VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(rows))
    with connection.cursor() as cursor:
        cursor.execute(
            _upsert_latest_sql(values, "-9e999") + " RETURNING key", [v for row in rows for v in (run.pk, *row)]
        )
        return {key for (key,) in cursor.fetchall()}


def _point_rows(points: list[tuple[str, float, int, int]]) -> list[tuple[str, int, int, float, bool]]:
    """``(key, step, timestamp, value, is_nan)`` of each point, the batch's own repeats once, in order."""
    unique: dict[tuple[str, int, int, float, bool], None] = {}
    for key, value, timestamp, step in points:
        nan = value != value  # NaN
        unique[(key, step, timestamp, 0.0 if nan else value, nan)] = None
    return list(unique)


def _metric_ops(run: Run, points: list[tuple[str, float, int, int]], stored: dict, written=None):
    """Store new metric points (a point already stored, e.g. by a retried request, is skipped); returns the
    native series appends and the updates of a series' last point that the batch needs. ``stored``: the
    run's attributes by path (the metrics' series among them); ``written``: the points were stored
    already, these are the rows of :func:`_points_and_latest_sql`."""
    if not points:
        return [], []
    if written is not None:
        new, newer = _points_and_latest_rows(written)
    elif connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(*_points_and_latest_sql(run, _point_rows(points)))
            new, newer = _points_and_latest_rows(cursor.fetchall())
    else:
        new, newer = _insert_points(run, _point_rows(points)), {}
    if not new:
        return [], []
    by_key: dict = defaultdict(list)
    for row in new:
        by_key[row[0]].append(row)
    for rows in by_key.values():
        rows.sort(key=_row_rank, reverse=True)  # MLflow's order, highest first (a stable sort: ties keep theirs)
    if connection.vendor != "postgresql":
        best_of = {key: rows[0] for key, rows in by_key.items()}
        newer = {key: best_of[key] for key in _upsert_latest(run, best_of)}
    ops, last_point_updates = [], []
    for key, rows in by_key.items():
        best = newer.get(key)
        attr = stored.get(METRIC_PREFIX + key)
        last_step = attr.last_step if attr is not None and attr.type == AttributeType.FLOAT_SERIES else None
        per_step: dict = {}  # step -> its highest point, steps descending
        for row in rows:
            step = row[1]
            if last_step is not None and step <= last_step:
                break  # the series holds these steps already (the rest are lower)
            if step in per_step or step < 0 or not 0 <= row[2] < 253402300800000:
                continue  # the native series holds non-negative steps and sane times only
            per_step[step] = row
        if per_step:
            appended = list(per_step.values())[::-1]
            ops.append(
                {
                    "op": "append",
                    "path": METRIC_PREFIX + key,
                    "steps": [row[1] for row in appended],
                    "values": [math.nan if row[4] else row[3] for row in appended],
                    "timestamps": [row[2] / 1000.0 for row in appended],
                }
            )
        elif best is not None and attr is not None and best[1] == last_step:
            last_point_updates.append((attr, best))
    return ops, last_point_updates


def _update_last_points(updates) -> None:
    """A later point at a series' last step is MLflow's latest value: the series' last point follows it."""
    for attr, (_, step, timestamp, value, is_nan) in updates:
        number = math.nan if is_nan else value
        series_store.update_float_point(attr.pk, step, number, timestamp / 1000.0)
        changes = {"float_value": number, "updated_at": timezone.now()}
        if not is_nan:
            changes["min_value"] = min(attr.min_value, number) if attr.min_value is not None else number
            changes["max_value"] = max(attr.max_value, number) if attr.max_value is not None else number
        Attribute.objects.filter(pk=attr.pk).update(**changes)


def _sends_several(cursor) -> bool:
    """Whether ``cursor`` can send several statements in one round trip (PostgreSQL, client-side binding:
    Django's default; a server with ``server_side_binding`` sends one at a time)."""
    if connection.vendor != "postgresql":
        return False
    from psycopg import ClientCursor

    return isinstance(getattr(cursor, "cursor", None), ClientCursor)


class _Statement:
    """A stand-in cursor that keeps the statement it is given instead of running it."""

    def execute(self, sql: str, params) -> None:
        self.sql, self.params = sql, list(params)


def _touch_read_and_write(cursor, run: Run, paths: list[str], points) -> tuple[dict, list | None]:
    """PostgreSQL: a log-batch's first three statements in one round trip (psycopg's client-side
    binding sends several statements at once; each still runs in turn, with its own snapshot): the
    run's row touched, which locks it (``ingest.touch_run``), then the run's attributes at ``paths``
    read, then the metric points and their latest values written (:func:`_points_and_latest_sql`).
    Returns the attributes by path and the rows of the last statement (None without points)."""
    touch = _Statement()
    ingest.touch_run(touch, run, timezone.now())
    statements, params = [touch.sql], touch.params
    if paths:
        statements.append(
            f"SELECT {sqlrows.columns(Attribute, 'a', connection.alias)} FROM {Attribute._meta.db_table} a "
            f"WHERE a.run_id = %s AND a.path IN ({', '.join(['%s'] * len(paths))})"
        )
        params += [run.pk, *paths]
    if points:
        sql, point_params = _points_and_latest_sql(run, _point_rows(points))
        statements.append(sql)
        params += point_params
    cursor.execute("; ".join(statements), params)
    stored: dict = {}
    if paths:
        cursor.nextset()
        for row in cursor.fetchall():
            attr = sqlrows.build(Attribute, "a", connection.alias, row)
            stored[attr.path] = attr
    written = None
    if points:
        cursor.nextset()
        written = cursor.fetchall()
    return stored, written


def log_batch(user, run: Run, *, metrics=None, params=None, tags=None) -> None:
    """MLflow's log-batch (and log-metric, log-parameter, which are batches of one): all or nothing."""
    _require_active(run)
    for name, items in (("metrics", metrics), ("params", params), ("tags", tags)):
        if items is not None and not isinstance(items, list):
            raise invalid(f"{name}: must be a list")
    metrics, params, tags = metrics or [], params or [], tags or []
    if len(metrics) > MAX_METRICS_PER_BATCH:
        raise invalid(
            f"A batch logging request can contain at most {MAX_METRICS_PER_BATCH} metrics. Got {len(metrics)}"
        )
    if len(params) > MAX_PARAMS_TAGS_PER_BATCH:
        raise invalid(
            f"A batch logging request can contain at most {MAX_PARAMS_TAGS_PER_BATCH} params. Got {len(params)}"
        )
    if len(tags) > MAX_PARAMS_TAGS_PER_BATCH:
        raise invalid(f"A batch logging request can contain at most {MAX_PARAMS_TAGS_PER_BATCH} tags. Got {len(tags)}")
    if len(metrics) + len(params) + len(tags) > MAX_ENTITIES_PER_BATCH:
        raise invalid(f"A batch logging request can contain at most {MAX_ENTITIES_PER_BATCH} metrics, params and tags")
    points = _metrics_of(metrics)
    param_values = _params_of(params)
    tag_values = _tags_of(tags)
    permissions.require(user, "write", run.project)
    tag_ops = [_tag_op(k, v) for k, v in tag_values.items()]
    paths = [_field_path(PARAM_PREFIX, k, "param") for k in param_values] + [op["path"] for op in tag_ops]
    paths += [METRIC_PREFIX + key for key in {p[0] for p in points}]
    # No savepoint: a failure rolls back the whole request (the view's transaction), or this one.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        # Lock the run's row first: concurrent batches of one run see each other's metric points. The
        # batch is idempotent by itself (a point stored before is skipped, params refuse a change): it
        # needs no batch key, and the engine gets the fields read here.
        if _sends_several(cursor):
            stored, written = _touch_read_and_write(cursor, run, paths, points)
        else:
            ingest.touch_run(cursor, run, timezone.now())
            stored = {a.path: a for a in Attribute.objects.filter(run=run, path__in=paths)} if paths else {}
            written = None
        ops = _param_ops(run, param_values, stored) + tag_ops
        metric_ops, last_point_updates = _metric_ops(run, points, stored, written)
        if ops or metric_ops:
            services.apply_batch(user, run, stream=STREAM, seq=None, raw_ops=ops + metric_ops, fields=stored)
        _update_last_points(last_point_updates)


def log_inputs(user, run: Run, datasets) -> None:
    _require_active(run)
    if not isinstance(datasets, list):
        raise invalid("datasets: must be a list")
    ops = []
    for item in datasets:
        dataset = (item or {}).get("dataset") if isinstance(item, dict) else None
        if not isinstance(dataset, dict) or not dataset.get("name") or not dataset.get("digest"):
            raise invalid("datasets: each needs a dataset with name and digest")
        tags = _tags_of(item.get("tags"))
        name, digest = str(dataset["name"]), str(dataset["digest"])
        folder = _field_path(INPUT_PREFIX, f"{name}-{digest}".replace("/", "_")[:120], "dataset")
        fields = {
            "name": name,
            "hash": digest,
            "source_type": str(dataset.get("source_type") or ""),
            "location": str(dataset.get("source") or ""),
            "schema": str(dataset.get("schema") or ""),
            "profile": str(dataset.get("profile") or ""),
            "context": tags.get("mlflow.data.context", ""),
        }
        ops += [
            {"op": "assign", "path": f"{folder}/{leaf}", "value": value, "type": "string"}
            for leaf, value in fields.items()
            if value
        ]
    _apply(user, run, ops)


def record_logged_model(user, run: Run, model_json) -> None:
    """MLflow 2's log-model: the model's metadata appended to the tag ``mlflow.log-model.history``."""
    _require_active(run)
    try:
        model = json.loads(model_json) if isinstance(model_json, str) else None
    except ValueError:
        model = None
    if not isinstance(model, dict):
        raise invalid("model_json: must be a JSON object")
    path = _field_path(TAG_PREFIX, "mlflow.log-model.history", "tag")
    stored = Attribute.objects.filter(run=run, path=path).first()
    try:
        history = json.loads(stored.string_value or "[]") if stored else []
    except ValueError:
        history = []
    history.append(model)
    _apply(user, run, [{"op": "assign", "path": path, "value": json.dumps(history), "type": "string"}])


HISTORY_ORDER = ("step", "timestamp", "value", "is_nan")  # MLflow's order, then the unique key's last column


def _history_position(token) -> tuple[int, tuple | None]:
    """The page token's offset (a token this API wrote before keyset pages has only that) and the last
    point of the page before, ``(step, timestamp, value, is_nan)``: the next page starts after it."""
    offset = page_offset(token)
    if not token:
        return 0, None
    after = json.loads(base64.b64decode(token))
    after = after.get("after") if isinstance(after, dict) else None
    if after is None:
        return offset, None
    if (
        not isinstance(after, list)
        or len(after) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in after[:2])
        or isinstance(after[2], bool)
        or not isinstance(after[2], (int, float))
        or not isinstance(after[3], bool)
    ):
        raise invalid(f"Invalid page token {str(token)[:40]!r}: bad position")
    return offset, (after[0], after[1], float(after[2]), after[3])


def _history_token(offset: int, last: tuple) -> str:
    step, timestamp, value, is_nan = last
    raw = json.dumps({"offset": offset, "after": [step, timestamp, value, bool(is_nan)]})
    return base64.b64encode(raw.encode()).decode()


def _history_rows(run: Run, key: str, *, max_results=None, offset=0, after=None):
    """``(step, timestamp, value, is_nan)`` of a page of the metric's points, in MLflow's order, with one
    row more than ``max_results`` when there is a next page; after the point ``after`` when given (keyset:
    the unique index's order, no rows skipped over), else from ``offset``."""
    rows = Metric.objects.filter(run=run, key=key)
    if after is not None:
        rows = rows.extra(where=["(step, timestamp, value, is_nan) > (%s, %s, %s, %s)"], params=list(after))
        offset = 0
    rows = rows.order_by(*HISTORY_ORDER).values_list(*HISTORY_ORDER)
    if max_results is not None:
        return rows[offset : offset + max_results + 1]
    return rows[offset:] if offset else rows


def _json_number(value: float, nan: bool) -> str:
    if nan:
        return '"NaN"'
    if value in (math.inf, -math.inf):
        return '"Infinity"' if value > 0 else '"-Infinity"'
    return repr(float(value))


def _history_json_pg(
    run: Run, prefix: str, key: str, *, max_results=None, offset=0, after=None
) -> tuple[str, tuple | None]:
    """The page's points as JSON objects joined by PostgreSQL (``string_agg``: no row reaches Python), and
    the page's last point when a next page exists. A double's text form is its shortest exact one, as
    Python's ``repr``. A page after a point is read by keyset from the unique index, in its order."""
    limit = "LIMIT %(limit)s" if max_results is not None else ""
    where = "AND (step, timestamp, value, is_nan) > (%(s)s, %(t)s, %(v)s, %(n)s)" if after is not None else ""
    last = "n = %(max)s"
    sql = f"""
        SELECT string_agg(
                   %(prefix)s || CASE WHEN is_nan THEN '"NaN"'
                                      WHEN value = 'Infinity'::float8 THEN '"Infinity"'
                                      WHEN value = '-Infinity'::float8 THEN '"-Infinity"'
                                      ELSE value::text END
                   || ', "timestamp": ' || timestamp || ', "step": ' || step || '}}', ', ' ORDER BY n
               ) FILTER (WHERE %(all)s OR n <= %(max)s),
               count(*),
               min(step) FILTER (WHERE {last}), min(timestamp) FILTER (WHERE {last}),
               min(value) FILTER (WHERE {last}), bool_or(is_nan) FILTER (WHERE {last})
        FROM (
            SELECT *, row_number() OVER (ORDER BY step, timestamp, value, is_nan) AS n
            FROM (
                SELECT step, timestamp, value, is_nan FROM {Metric._meta.db_table}
                WHERE run_id = %(run)s AND key = %(key)s {where}
                ORDER BY step, timestamp, value, is_nan {limit} OFFSET %(offset)s
            ) rows
        ) page"""
    params = {
        "prefix": prefix,
        "run": run.pk,
        "key": key,
        "limit": (max_results or 0) + 1,
        "offset": 0 if after is not None else offset,
        "all": max_results is None,
        "max": max_results or 0,
    }
    if after is not None:
        params.update(zip("stvn", after, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        body, count, *last_row = cursor.fetchone()
    more = max_results is not None and count > max_results
    return body or "", (tuple(last_row) if more else None)


def metric_history_json(run: Run, key, *, max_results=None, page_token=None) -> bytes:
    """The get-history answer as JSON bytes, written straight from the rows (the client pages through
    up to 25,000 points per request), no dict per point; NaN and ±Infinity as the strings protobuf reads.
    The next page token holds the page's last point: the next page is read from the index after it."""
    if not isinstance(key, str) or not key:
        raise invalid("Missing value for required parameter 'metric_key'")
    offset, after = _history_position(page_token)
    prefix = '{"key": ' + json.dumps(key) + ', "value": '
    if connection.vendor == "postgresql":
        body, last = _history_json_pg(run, prefix, key, max_results=max_results, offset=offset, after=after)
    else:
        rows = list(_history_rows(run, key, max_results=max_results, offset=offset, after=after))
        last = rows[max_results - 1] if max_results is not None and len(rows) > max_results else None
        body = ", ".join(
            f'{prefix}{_json_number(value, nan)}, "timestamp": {timestamp}, "step": {step}}}'
            for step, timestamp, value, nan in rows[:max_results]
        )
    tail = f', "next_page_token": {json.dumps(_history_token(offset + max_results, last))}' if last else ""
    return f'{{"metrics": [{body}]{tail}}}'.encode()


# --- search ------------------------------------------------------------------------------


class _TrashAwareQuery(RunQuery):
    """The query engine over live runs, runs in the trash, or both (MLflow's run_view_type)."""

    view_type: str = "ACTIVE_ONLY"

    def __init__(self, *args, view_type: str = "ACTIVE_ONLY", **kwargs):
        super().__init__(*args, **kwargs)
        if view_type != "ACTIVE_ONLY":
            runs = Run.objects.all() if view_type == "ALL" else Run.objects.filter(deleted_at__isnull=False)
            self._runs = permissions.require_in_project(runs, self.user, self.project, "view")


def search_runs(user, body: dict) -> tuple[list[dict], int | None]:
    ids = body.get("experiment_ids") or []
    if isinstance(ids, str):
        ids = [ids]
    if not ids:
        raise invalid("experiment_ids: at least one experiment id is required")
    projects = [experiments.get(user, i) for i in ids]
    view_type = body.get("run_view_type") or "ACTIVE_ONLY"
    if view_type not in ("ACTIVE_ONLY", "DELETED_ONLY", "ALL"):
        raise invalid(f"Invalid run_view_type {view_type!r}")
    max_results = _as_int(body.get("max_results"), "max_results", default=1000)
    if max_results <= 0 or max_results > 50000:
        raise invalid(f"Invalid value {max_results} for parameter 'max_results' supplied: it must be 1 to 50000")
    max_results = min(max_results, MAX_RESULTS)
    offset = page_offset(body.get("page_token"))
    clauses = parse_filter(body.get("filter") or "")
    order = body.get("order_by") or []
    if isinstance(order, str):
        order = [order]
    sort = translate_order_by(order) or ["-sys/creation_time"]
    found: list[Run] = []
    skip, total = offset, 0
    try:
        with query_budget():
            for project in projects:
                text = translate(clauses, run_ids_to_human=lambda hex_ids, p=project: run_ids_to_human(p, hex_ids))
                query = _TrashAwareQuery(user, project, query=text, sort=sort, columns=["sys/id"], view_type=view_type)
                if len(projects) == 1:
                    # One experiment (the usual search): a row past the page says whether another follows,
                    # without counting every matching run.
                    page = list(query.ordered().select_related("owner")[skip : skip + max_results + 1])
                    total = offset + len(page)
                    page = page[:max_results]
                    for run in page:
                        run.project = project
                    found += page
                    break
                count = query.count()
                total += count
                if skip >= count:
                    skip -= count
                    continue
                want = max_results - len(found)
                if want > 0:
                    page = list(query.ordered().select_related("owner")[skip : skip + want])
                    for run in page:
                        run.project = project
                    found += page
                skip = 0
    except QueryTimeout as exc:
        raise MlflowError("TEMPORARILY_UNAVAILABLE", f"the search ran past its time budget: {exc}") from None
    except QueryError as exc:
        raise invalid(f"Invalid filter or order_by: {exc}") from None
    next_offset = offset + len(found)
    return runs_dicts(found), (next_offset if next_offset < total and found else None)


def translate_error(exc) -> MlflowError | None:
    """The MLflow error for an exception from the services or the permission module."""
    if isinstance(exc, MlflowError):
        return exc
    if isinstance(exc, Http404):
        return not_found(str(exc) or "not found")
    if isinstance(exc, ApiError):
        if exc.code == "quota_exceeded":
            return MlflowError("RESOURCE_EXHAUSTED", exc.message, status=exc.status, headers=exc.headers)
        if exc.status == 429:
            return MlflowError("REQUEST_LIMIT_EXCEEDED", exc.message, status=429, headers=exc.headers)
        if exc.status == 404:
            return not_found(exc.message)
        if exc.status == 403:
            return MlflowError("PERMISSION_DENIED", exc.message)
        if exc.status == 503:
            return MlflowError("TEMPORARILY_UNAVAILABLE", exc.message, headers=exc.headers)
        return MlflowError("INVALID_PARAMETER_VALUE", exc.message)
    if isinstance(exc, PermissionDenied):
        return MlflowError("PERMISSION_DENIED", str(exc) or "permission denied")
    if isinstance(exc, ValidationError):
        return invalid("; ".join(exc.messages))
    return None

"""How a run's fields read: typed values for the API, the UI and the client."""

import math

from .models import Attribute, AttributeType, Run, RunState
from .sysfields import SYS_FIELDS


def _float(value):
    return math.nan if value is None else value


def attribute_value(attr: Attribute):
    t = attr.type
    if t == AttributeType.INT:
        return attr.int_value
    if t == AttributeType.FLOAT:
        return _float(attr.float_value)
    if t == AttributeType.BOOL:
        return attr.bool_value
    if t == AttributeType.STRING:
        return attr.string_value
    if t == AttributeType.DATETIME:
        return attr.datetime_value.isoformat() if attr.datetime_value else None
    if t == AttributeType.STRING_SET:
        return list(attr.json_value or [])
    if t == AttributeType.FLOAT_SERIES:
        return {
            "last": _float(attr.float_value),
            "count": attr.count,
            "first_step": attr.first_step,
            "last_step": attr.last_step,
            "min": attr.min_value,
            "max": attr.max_value,
            "avg": (attr.sum_value / attr.finite_count) if attr.finite_count else None,
        }
    if t == AttributeType.STRING_SERIES:
        return {
            "last": attr.string_value,
            "count": attr.count,
            "first_step": attr.first_step,
            "last_step": attr.last_step,
        }
    if t == AttributeType.FILE_SERIES:
        return {
            "count": attr.count,
            "first_step": attr.first_step,
            "last_step": attr.last_step,
            **(attr.json_value or {}),
        }
    return attr.json_value  # file, file_set: {name, size} / {files, size}


def sys_fields(run: Run) -> list[dict]:
    """The server-owned ``sys/`` fields, derived from the run row."""
    values = {
        "sys/id": run.human_id,
        "sys/name": run.name,
        "sys/description": run.description,
        "sys/owner": run.owner.username if run.owner else None,
        "sys/state": run.state,
        "sys/failed": run.state == RunState.FAILED,
        "sys/creation_time": run.created_at.isoformat(),
        "sys/modification_time": run.modified_at.isoformat(),
        "sys/ping_time": run.ping_at.isoformat(),
        "sys/running_time": run.running_time,
        "sys/project": run.project.full_name,
    }
    if run.custom_run_id:
        values["sys/custom_run_id"] = run.custom_run_id
    rows = [(f.path, f.type, values[f.path]) for f in SYS_FIELDS if f.path in values]
    return [{"path": p, "type": t, "value": v} for p, t, v in rows]


def run_fields(run: Run, attributes) -> list[dict]:
    fields = sys_fields(run)
    fields += [{"path": a.path, "type": a.type, "value": attribute_value(a)} for a in attributes]
    fields.sort(key=lambda f: f["path"])
    return fields

"""Field types in a project: the server-owned ``sys/`` fields and the catalogue of logged paths."""

from django.db.models import Case, DurationField, ExpressionWrapper, F, Value, When
from django.db.models.functions import Coalesce, Now

from .. import sysfields
from ..models import ProjectField, RunState

# sys fields of the query language: path -> type (runs.sysfields)
SYS_COLUMNS = sysfields.QUERY_TYPES
NUMERIC = {"int", "float"}
# the attribute column holding a series aggregate (``avg`` is sum_value / finite_count)
AGGREGATE_COLUMNS = {"last": "float_value", "min": "min_value", "max": "max_value", "count": "count"}
SCALAR = {"int", "float", "bool", "string", "datetime"}
SERIES_AGGREGATE_TYPES = {
    "float_series": {"last": "float", "min": "float", "max": "float", "avg": "float", "count": "int"},
    "string_series": {"last": "string", "count": "int"},
    "file_series": {"count": "int"},
}


# sys fields that are run columns as they are
SYS_RUN_COLUMNS = sysfields.RUN_COLUMNS


def sys_expression(path: str):
    """An expression on Run for a sys column (running time in seconds is computed)."""
    if path == "sys/id":
        return F("number")
    if path == "sys/owner":
        return F("owner__username")
    if path == "sys/failed":
        return Case(When(state=RunState.FAILED, then=Value(True)), default=Value(False))
    if path == "sys/running_time":
        return ExpressionWrapper(Coalesce(F("finished_at"), Now()) - F("created_at"), output_field=DurationField())
    return F(SYS_RUN_COLUMNS[path])


def project_types(project, paths) -> dict[str, set[str]]:
    """The types each path has among the project's runs (sys columns included)."""
    wanted = {p for p in paths if p not in SYS_COLUMNS}
    types: dict[str, set[str]] = {p: {SYS_COLUMNS[p]} for p in paths if p in SYS_COLUMNS}
    if wanted:
        for path, type_ in ProjectField.objects.filter(project=project, path__in=wanted).values_list("path", "type"):
            types.setdefault(path, set()).add(type_)
    return types


def project_fields(project, search: str = "", limit: int = 200) -> list[dict]:
    """Paths of the project (sys first), optionally those containing ``search``."""
    rows = [{"path": p, "type": t} for p, t in SYS_COLUMNS.items() if search.lower() in p.lower()]
    queryset = ProjectField.objects.filter(project=project).order_by("path")
    if search:
        queryset = queryset.filter(path__icontains=search)
    rows += [{"path": p, "type": t} for p, t in queryset.values_list("path", "type")[:limit]]
    return rows[:limit]

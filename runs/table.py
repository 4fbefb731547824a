"""The project run table's presentation: column headers and formatted cells of one page.

Filtering, sorting, grouping and column types come from the query engine
(``runs.query.RunQuery``); this module turns a page of runs into display
cells with one query over ``(run in page, path in columns)``.
"""

import datetime
import html
import math
from dataclasses import dataclass
from types import SimpleNamespace

from django.urls import reverse
from django.utils.formats import number_format
from django.utils.html import format_html_join
from django.utils.safestring import SafeData, mark_safe
from django.utils.timesince import timesince

from . import sysfields
from .models import Attribute, AttributeType, Run, RunState
from .sysfields import DEFAULT_COLUMNS, MAX_COLUMNS

PAGE_SIZES = (25, 50, 100)

# sys/ columns read from the run row: (title, ORM field to sort on or None)
SYS_COLUMNS = sysfields.TABLE_COLUMNS


@dataclass
class Column:
    path: str
    title: str
    sortable: bool
    numeric: bool = False
    width: int | None = None
    # a float series column: the series' path and the aggregate it shows (last, min, max, avg)
    series: str = ""
    aggregate: str = ""


def parse_columns(values: list[str]) -> list[str]:
    """Column paths from the ``c`` query parameters (or one comma-separated ``cols``), de-duplicated."""
    out: list[str] = []
    for value in values:
        value = value.strip()
        if value and value not in out and len(value) <= 512:
            out.append(value)
    return out[:MAX_COLUMNS] or list(DEFAULT_COLUMNS)


UNSORTABLE_TYPES = {"string_set", "file", "file_set", "file_series"}
NUMERIC_COLUMN_TYPES = {"int", "float", "float_series", "int/float"}
AGGREGATES = ("last", "min", "max", "avg", "count")


def split_spec(spec: str) -> tuple[str, str | None]:
    """``train/loss:min`` → (``train/loss``, ``min``); a plain path has no aggregate."""
    name, sep, aggregate = spec.rpartition(":")
    if sep and name and aggregate in AGGREGATES:
        return name, aggregate
    return spec, None


def build_columns(column_types: list[dict], widths: dict[str, int] | None = None) -> list[Column]:
    """Table columns from the query engine's ``column_types()`` (path, type)."""
    columns = []
    widths = widths or {}
    for item in column_types:
        path, type_ = item["path"], item["type"] or ""
        if path in SYS_COLUMNS:
            title, field = SYS_COLUMNS[path]
            columns.append(Column(path, title, field is not None, path == "sys/running_time", widths.get(path)))
        else:
            numeric = bool(type_) and set(type_.split("/")) <= {"int", "float", "float_series"}
            sortable = not (set(type_.split("/")) & UNSORTABLE_TYPES) if type_ else False
            name, aggregate = split_spec(path)
            if aggregate is None and "float_series" in type_.split("/"):
                aggregate = "last"  # a series column shows its last value: the header says so
            title = f"{name} ({aggregate})" if aggregate else path
            column = Column(path, title, sortable, numeric, widths.get(path))
            if aggregate in SERIES_AGGREGATES:
                column.series, column.aggregate = name, aggregate
            columns.append(column)
    return columns


# the aggregates a float series column can show, chosen from its header or the column chooser
SERIES_AGGREGATES = ("last", "min", "max", "avg")


def aggregate_spec(name: str, aggregate: str) -> str:
    """The column spec of a series showing ``aggregate``: the plain path for its last value."""
    return name if aggregate == "last" else f"{name}:{aggregate}"


def parse_sort(value: str) -> tuple[str, bool]:
    value = (value or "").strip()
    if not value:
        return "sys/creation_time", True
    return (value[1:], True) if value.startswith("-") else (value, False)


def fmt_number(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return number_format(value)
    return _fmt_float(value)


def _fmt_float(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-3:
        return f"{value:.4g}"
    return f"{value:.6g}"


def format_duration(seconds: float) -> str:
    if 0 < seconds < 0.01:
        return f"{seconds * 1000:.0f}ms" if seconds >= 0.0005 else "<1ms"
    if seconds < 10:
        # short runs keep their fraction: a 0.95 s run is not "0s"
        text = f"{seconds:.2f}" if seconds < 1 else f"{seconds:.1f}"
        return text.rstrip("0").rstrip(".") + "s" if seconds else "0s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def _tags_html(tags) -> str:
    return format_html_join("", '<span class="tag">{}</span>', ((t,) for t in tags or ()))


def _time_html(value: datetime.datetime | None):
    if value is None:
        return "—"
    # built by hand: this runs for every time cell of a page (format_html costs more than the cell)
    ago = timesince(value).split(",")[0]
    return mark_safe(f'<time datetime="{value.isoformat()}" title="{value:%Y-%m-%d %H:%M:%S}">{ago} ago</time>')


def attribute_cell(attr, aggregate: str | None = None):
    """(display text or safe HTML, title) of one attribute value in a table cell."""
    if attr is None:
        return "", ""
    t = attr.type
    if aggregate:
        if aggregate == "count":
            return number_format(attr.count), ""
        if t == AttributeType.FLOAT_SERIES:
            value = {
                "last": attr.float_value,
                "min": attr.min_value,
                "max": attr.max_value,
                "avg": (attr.sum_value / attr.finite_count) if attr.finite_count else None,
            }[aggregate]
            return _fmt_float(math.nan if value is None else value), f"{aggregate} of {attr.count} points"
    if t == AttributeType.INT:
        return number_format(attr.int_value), ""
    if t == AttributeType.FLOAT:
        return _fmt_float(attr.float_value if attr.float_value is not None else math.nan), repr(attr.float_value)
    if t == AttributeType.FLOAT_SERIES:
        return _fmt_float(
            attr.float_value if attr.float_value is not None else math.nan
        ), f"last of {attr.count} points"
    if t == AttributeType.BOOL:
        return ("true" if attr.bool_value else "false"), ""
    if t in (AttributeType.STRING, AttributeType.STRING_SERIES):
        text = attr.string_value or ""
        return (text[:80] + "…" if len(text) > 80 else text), text[:500]
    if t == AttributeType.DATETIME:
        return _time_html(attr.datetime_value), ""
    if t == AttributeType.STRING_SET:
        return _tags_html(attr.json_value), ""
    if t == AttributeType.FILE:
        return (attr.json_value or {}).get("name") or "file", ""
    if t == AttributeType.FILE_SET:
        return f"{(attr.json_value or {}).get('files', 0)} files", ""
    if t == AttributeType.FILE_SERIES:
        return f"{attr.count} files", ""
    return str(attr.json_value), ""


def sys_cell(run: Run, path: str, tags, run_url: str):
    if path == "sys/id":
        return mark_safe(f'<a href="{html.escape(run_url)}">{html.escape(run.human_id)}</a>'), ""
    if path == "sys/name":
        return run.name, run.name
    if path == "sys/owner":
        return run.owner.username if run.owner else "—", ""
    if path == "sys/state":
        state = html.escape(run.state)
        return mark_safe(f'<span class="state state-{state}">{state}</span>'), ""
    if path == "sys/creation_time":
        return _time_html(run.created_at), ""
    if path == "sys/modification_time":
        return _time_html(run.modified_at), ""
    if path == "sys/ping_time":
        return _time_html(run.ping_at), ""
    if path == "sys/running_time":
        return format_duration(run.running_time), f"{run.running_time:.3f} s"
    if path == "sys/description":
        return run.description[:80], run.description[:500]
    if path == "sys/tags":
        return _tags_html(tags), ""
    return "", ""


CELL_FIELDS = (
    "run_id",
    "path",
    "type",
    "int_value",
    "float_value",
    "bool_value",
    "string_value",
    "datetime_value",
    "json_value",
    "count",
    "min_value",
    "max_value",
    "sum_value",
    "finite_count",
)


def _cell_html(text, title, numeric) -> str:
    # one <td> per cell, built here: a template loop over 5,000 cells costs more than the query
    attrs = ' class="num"' if numeric else ""
    if title:
        attrs += f' title="{html.escape(str(title))}"'
    if not isinstance(text, SafeData):
        text = html.escape(str(text))
    return f"<td{attrs}>{text}</td>"


def row_html(row: dict, oob: bool = False, selected: bool = False) -> str:
    """One run's ``<tr>``: the selection box and the row's cells (``runs/run_list.html`` shows it)."""
    run = row["run"]
    run_id = html.escape(run.human_id)
    swap = 'hx-swap-oob="true" ' if oob else ""
    running = ' class="running"' if row["running"] else ""
    checked = " checked" if selected else ""
    return mark_safe(
        f'<tr id="row-{run.pk}" {swap}data-url="{html.escape(row["url"])}" tabindex="-1"{running}>'
        f'<td class="sel"><input type="checkbox" name="runs" value="{run_id}" aria-label="Select {run_id}"{checked}></td>'
        f"{row['cells_html']}</tr>"
    )


def build_rows(runs: list[Run], columns: list[Column], project) -> list[dict]:
    """Rows of cells for one page: one query for every attribute cell, whatever the column count."""
    specs = {c.path: split_spec(c.path) for c in columns}
    attr_paths = {name for path, (name, _) in specs.items() if path not in SYS_COLUMNS} | {"sys/tags"}
    by_run: dict[int, dict[str, Attribute]] = {run.pk: {} for run in runs}
    if runs:
        # plain rows, not model instances: a page of 100 runs x 50 columns is 5,000 of them
        rows = Attribute.objects.filter(run__in=[r.pk for r in runs], path__in=attr_paths).values(*CELL_FIELDS)
        for row in rows:
            by_run[row["run_id"]][row["path"]] = SimpleNamespace(**row)
    base = reverse("runs:run_detail", args=[project.workspace.slug, project.slug, "X-0"])[: -len("X-0/")]
    rows = []
    for run in runs:
        run.project = project
        values = by_run[run.pk]
        tags = values["sys/tags"].json_value if "sys/tags" in values else []
        url = f"{base}{run.human_id}/"
        cells = []
        for column in columns:
            if column.path in SYS_COLUMNS:
                text, title = sys_cell(run, column.path, tags, url)
            else:
                name, aggregate = specs[column.path]
                text, title = attribute_cell(values.get(name), aggregate)
            cells.append(_cell_html(text, title, column.numeric))
        row = {
            "run": run,
            "cells_html": mark_safe("".join(cells)),
            "url": url,
            "running": run.state == RunState.RUNNING,
        }
        row["html"] = row_html(row)
        rows.append(row)
    return rows


def sample_paths(project, query: str = "", limit: int = 300) -> list[str]:
    """Paths for the column chooser, from the project's field catalogue (never a scan of attributes)."""
    return sorted(sample_path_types(project, query, limit))


def sample_path_types(project, query: str = "", limit: int = 300) -> dict[str, str]:
    """{path: type} for the column chooser (sys paths included), from the project's field catalogue."""
    from .query import project_fields

    types = {f["path"]: f["type"] or "" for f in project_fields(project, query, limit)}
    for p in SYS_COLUMNS:
        if not query or query.lower() in p.lower():
            types.setdefault(p, "")
    return types


def group_by_namespace(paths: list[str]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for path in paths:
        groups.setdefault(path.split("/", 1)[0], []).append(path)
    return sorted(groups.items())


__all__ = [
    "DEFAULT_COLUMNS",
    "PAGE_SIZES",
    "SYS_COLUMNS",
    "Column",
    "build_columns",
    "build_rows",
    "group_by_namespace",
    "parse_columns",
    "parse_sort",
    "sample_paths",
    "split_spec",
]

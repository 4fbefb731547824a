"""The run table's current view (filter, columns, sort) as a CSV or Parquet download, streamed.

The runs come from the query engine (:class:`runs.query.RunQuery`, the one the table uses) a page of
:data:`PAGE_SIZE` at a time, with one attribute query per page, so an export of 100,000 runs never
holds more than one page in memory: each CSV page is written out as it is read, each Parquet page
becomes one row group.

A column holds the exact value, not the table's display text: full-precision floats, ISO 8601
times (UTC), running time in seconds. In CSV an empty cell is a missing value and a tag list is a
JSON array; in Parquet columns are typed (int64, double, bool, timestamp, list of strings, string).
"""

import csv
import io
import json
import math
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import F, OrderBy, Q

from . import sysfields
from .models import Attribute, AttributeType, RunState
from .query import QueryError, QuerySyntaxError, RunQuery, query_budget
from .query.engine import OrderedRuns, parse_path_spec
from .table import CELL_FIELDS

User = get_user_model()
PAGE_SIZE = 1000  # runs per query (and per Parquet row group)
FORMATS = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "parquet": ("application/vnd.apache.parquet", "parquet"),
}


class ExportQueryError(Exception):
    """The view's filter, columns or sort cannot run; ``field`` names the URL parameter at fault."""

    def __init__(self, field: str, exc: Exception):
        super().__init__(getattr(exc, "message", str(exc)))
        self.field = field
        self.message = getattr(exc, "message", str(exc))
        self.position = getattr(exc, "position", None)


def build_query(user, project, query: str, columns: list[str], sort: str) -> RunQuery:
    """The query engine for the view; on an error, find which parameter (q, c or sort) holds it."""
    order = [sort or "-sys/creation_time"]
    try:
        return RunQuery(user, project, query=query, columns=columns, sort=order)
    except (QueryError, QuerySyntaxError) as exc:
        error = exc
    for field, kwargs in (
        ("q", {"query": query}),
        ("c", {"columns": columns}),
        ("sort", {"sort": order}),
    ):
        try:
            RunQuery(user, project, **kwargs)
        except (QueryError, QuerySyntaxError) as exc:
            raise ExportQueryError(getattr(exc, "field", None) or field, exc) from None
    raise ExportQueryError(getattr(error, "field", None) or "q", error)


# --- keyset paging -------------------------------------------------------------


def _order_keys(queryset) -> list[tuple[str, bool, bool]] | None:
    """The queryset's order as ``(field or annotation, descending, nulls last)``, or None when an
    order term is not a plain field (then the export pages by offset)."""
    keys = []
    for term in queryset.query.order_by:
        if isinstance(term, str):
            keys.append((term.lstrip("-"), term.startswith("-"), False))
        elif isinstance(term, OrderBy) and isinstance(term.expression, F):
            keys.append((term.expression.name, term.descending, bool(term.nulls_last)))
        else:
            return None
    if not keys or keys[-1][0] not in ("id", "pk"):
        return None  # without the id last, equal sort values could straddle two pages
    return keys


def _after(keys: list[tuple[str, bool, bool]], values: list) -> Q:
    """Runs that come after the run whose sort values are ``values``: for some key, every key
    before it equal and this one further on (a missing value sorts last, so nothing is after it
    but its ties). The first key's bound also stands alone, so an index on it can serve the page."""
    after = Q(pk__in=[])
    equal = Q()
    for (name, descending, nulls_last), value in zip(keys, values, strict=True):
        if value is None:
            beyond, same = None, Q(**{f"{name}__isnull": True})
        else:
            beyond = Q(**{f"{name}__{'lt' if descending else 'gt'}": value})
            if nulls_last:
                beyond |= Q(**{f"{name}__isnull": True})
            same = Q(**{name: value})
        if beyond is not None:
            after |= equal & beyond
        equal &= same
    name, descending, nulls_last = keys[0]
    if values[0] is not None and not nulls_last:
        after &= Q(**{f"{name}__{'lte' if descending else 'gte'}": values[0]})
    return after


# --- column kinds and values ------------------------------------------------

_SYS_KINDS = {"string": "string", "datetime": "datetime", "float": "float", "bool": "bool", "string_set": "list"}


def column_kind(spec: str, type_: str | None) -> str:
    """int, float, bool, datetime, list or string: the type one export column holds."""
    name = parse_path_spec(spec).name
    if name in sysfields.BY_PATH:
        return _SYS_KINDS.get(sysfields.BY_PATH[name].type, "string")
    types = set((type_ or "").split("/")) - {""}
    if not types:
        return "string"
    if types == {"int"}:
        return "int"
    if types <= {"int", "float", "float_series"}:
        return "float"
    for kind in ("bool", "datetime"):
        if types == {kind}:
            return kind
    if types == {"string_set"}:
        return "list"
    return "string"


def _sys_value(run, name: str, tags):
    if name == "sys/tags":
        return tags
    return {
        "sys/id": lambda: run.human_id,
        "sys/name": lambda: run.name,
        "sys/description": lambda: run.description,
        "sys/owner": lambda: run.owner_name,
        "sys/state": lambda: run.state,
        "sys/failed": lambda: run.state == RunState.FAILED,
        "sys/creation_time": lambda: run.created_at,
        "sys/modification_time": lambda: run.modified_at,
        "sys/ping_time": lambda: run.ping_at,
        "sys/running_time": lambda: run.running_time,
        "sys/custom_run_id": lambda: run.custom_run_id or None,
        "sys/project": lambda: run.project.full_name,
    }[name]()


def _attr_value(attr, aggregate: str | None):
    if attr is None:
        return None
    t = attr.type
    if aggregate:
        if aggregate == "count":
            return attr.count
        if aggregate == "avg":
            return (attr.sum_value / attr.finite_count) if attr.finite_count else None
        if aggregate == "min":
            return attr.min_value
        if aggregate == "max":
            return attr.max_value
        return attr.string_value if t == AttributeType.STRING_SERIES else attr.float_value
    if t == AttributeType.INT:
        return attr.int_value
    if t in (AttributeType.FLOAT, AttributeType.FLOAT_SERIES):
        return attr.float_value
    if t == AttributeType.BOOL:
        return attr.bool_value
    if t in (AttributeType.STRING, AttributeType.STRING_SERIES):
        return attr.string_value
    if t == AttributeType.DATETIME:
        return attr.datetime_value
    if t == AttributeType.STRING_SET:
        return list(attr.json_value or [])
    if t == AttributeType.FILE:
        return (attr.json_value or {}).get("name")
    if t == AttributeType.FILE_SET:
        return (attr.json_value or {}).get("files")
    if t == AttributeType.FILE_SERIES:
        return attr.count
    return attr.json_value


def _coerce(value, kind: str):
    """``value`` as the column's kind; a value of another type (a path typed differently in some
    runs) is kept as text in a string column and dropped (missing) in a typed one."""
    if value is None:
        return None
    if kind == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (list, dict)):
            return json.dumps(value)
        if hasattr(value, "isoformat"):
            return value.isoformat()
        return str(value)
    if kind == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if kind == "float":
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if kind == "bool":
        return value if isinstance(value, bool) else None
    if kind == "datetime":
        return value if hasattr(value, "isoformat") else None
    if kind == "list":
        return [str(v) for v in value] if isinstance(value, list) else None
    return value


class Export:
    """One export of the view: its columns and their kinds, and its rows a page at a time."""

    def __init__(self, rq: RunQuery, project, page_size: int | None = None):
        self.rq = rq
        self.project = project
        self.page_size = page_size or PAGE_SIZE
        self.specs = list(rq.columns)
        types = {c["path"]: c["type"] for c in rq.column_types()}
        self.kinds = [column_kind(spec, types.get(spec)) for spec in self.specs]
        self.parsed = [parse_path_spec(spec) for spec in self.specs]

    def pages(self) -> Iterator[list[list]]:
        """Rows (one list of values per run, in column order) a page at a time, in the view's order.

        Each page is one run query and one attribute query. Pages follow each other by keyset (the
        sort values and id of the page's last run), not by OFFSET: page 100 of a 100,000-run export
        costs what page 1 does, and runs created or deleted meanwhile never shift a run into two
        pages or out of all of them."""
        ordered = self.rq.ordered()
        parts = [ordered.present, ordered.missing] if isinstance(ordered, OrderedRuns) else [ordered]
        for queryset in parts:
            keys = _order_keys(queryset)
            if keys is None:
                yield from self._offset_pages(queryset)
                continue
            queryset = queryset.annotate(**{f"export_key{i}": F(name) for i, (name, _, _) in enumerate(keys)})
            last = None
            while True:
                with query_budget():
                    page = queryset if last is None else queryset.filter(_after(keys, last))
                    runs = list(page[: self.page_size])
                    rows = self._rows(runs)
                if rows:
                    yield rows
                if len(runs) < self.page_size:
                    break
                last = [getattr(runs[-1], f"export_key{i}") for i in range(len(keys))]

    def _offset_pages(self, queryset) -> Iterator[list[list]]:
        """Pages by OFFSET, for an order :func:`_order_keys` cannot read (no run repeated)."""
        seen: set[int] = set()
        offset = 0
        while True:
            with query_budget():
                runs = list(queryset[offset : offset + self.page_size])
                rows = self._rows([r for r in runs if r.pk not in seen])
            seen.update(r.pk for r in runs)
            if rows:
                yield rows
            if len(runs) < self.page_size:
                return
            offset += self.page_size

    def _rows(self, runs) -> list[list]:
        names = {p.name for p in self.parsed if p.name not in sysfields.BY_PATH} | {"sys/tags"}
        by_run: dict[int, dict] = {run.pk: {} for run in runs}
        if runs:
            values = Attribute.objects.filter(run__in=[r.pk for r in runs], path__in=names).values(*CELL_FIELDS)
            for cell in values:
                by_run[cell["run_id"]][cell["path"]] = SimpleNamespace(**cell)
        if "sys/owner" in {p.name for p in self.parsed}:
            # owners' names by id in one query: cheaper than a User instance per run
            owner_ids = {r.owner_id for r in runs if r.owner_id is not None}
            owners = dict(User.objects.filter(pk__in=owner_ids).values_list("pk", "username")) if owner_ids else {}
            for run in runs:
                run.owner_name = owners.get(run.owner_id)
        out: list[list] = []
        for run in runs:
            run.project = self.project
            attrs = by_run[run.pk]
            tags = list(attrs["sys/tags"].json_value or []) if "sys/tags" in attrs else []
            row: list[Any] = []
            for path, kind in zip(self.parsed, self.kinds, strict=True):
                if path.name in sysfields.BY_PATH:
                    value = _sys_value(run, path.name, tags)
                else:
                    value = _attr_value(attrs.get(path.name), path.aggregate)
                row.append(_coerce(value, kind))
            out.append(row)
        return out

    # --- formats -------------------------------------------------------------

    def csv(self, pages: Iterator[list[list]]) -> Iterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")

        def take() -> bytes:
            data = buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
            return data

        writer.writerow(self.specs)
        yield take()
        for rows in pages:
            writer.writerows([[_csv_cell(v) for v in row] for row in rows])
            yield take()

    def parquet(self, pages: Iterator[list[list]]) -> Iterator[bytes]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {
            "int": pa.int64(),
            "float": pa.float64(),
            "bool": pa.bool_(),
            "datetime": pa.timestamp("us", tz="UTC"),
            "list": pa.list_(pa.string()),
            "string": pa.string(),
        }
        # column names are unique already (the table's columns are de-duplicated)
        schema = pa.schema([pa.field(spec, types[kind]) for spec, kind in zip(self.specs, self.kinds, strict=True)])
        sink = _Sink()
        writer = pq.ParquetWriter(sink, schema, compression="zstd")
        try:
            for rows in pages:
                columns = [
                    pa.array([row[i] for row in rows], type=schema.field(i).type) for i in range(len(self.specs))
                ]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=len(rows))
                yield sink.take()
        finally:
            writer.close()
        yield sink.take()


def _csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, list):
        return json.dumps(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


class _Sink:
    """A write-only file for ParquetWriter that hands out what was written since the last take()."""

    closed = False

    def __init__(self):
        self.chunks: list[bytes] = []
        self.position = 0

    def write(self, data) -> int:
        data = bytes(data)
        self.chunks.append(data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks = []
        return data

"""The one query engine behind the run table of the UI, the REST API, the client and the CLI.

``RunQuery(user, project, query=..., sort=[...], columns=[...], group_by=[...])``
scopes runs through the permission module, filters with the compiled query,
sorts by any field (runs lacking it last, ties by newest id), pages with
limit/offset, and returns only the requested columns. Sorting and grouping
join one attribute row per path (``FilteredRelation``), so they stay single
SQL statements on both databases.
"""

import json
import math
from dataclasses import dataclass, field

from django.db.models import Aggregate, Avg, Count, F, FilteredRelation, FloatField, Max, Min, Q, Value
from django.db.models.functions import Cast, Coalesce

from projects.permissions import require_in_project

from ..attributes import attribute_value, sys_fields
from ..models import Attribute, Run
from ..sysfields import DEFAULT_COLUMNS, MAX_COLUMNS
from . import parser as ast
from .compiler import Compiler, QueryError
from .compiler import paths_of as compiler_paths
from .fields import (
    AGGREGATE_COLUMNS,
    NUMERIC,
    SERIES_AGGREGATE_TYPES,
    SYS_COLUMNS,
    SYS_RUN_COLUMNS,
    project_types,
    sys_expression,
)

MAX_LIMIT = 1000
MAX_SORT = 5
MAX_GROUP_BY = 3


def parse_path_spec(spec: str, position: int = 0) -> ast.Path:
    """``eval/acc`` or ``train/loss:last`` (backticks allowed) → Path."""
    text = spec.strip()
    if text.startswith("`") and "`" in text[1:]:
        end = text.index("`", 1)
        name, rest = text[1:end], text[end + 1 :]
    else:
        name, _, rest = text.partition(":")
        rest = f":{rest}" if _ else ""
    aggregate = None
    if rest:
        if not rest.startswith(":") or rest[1:] not in ast.AGGREGATES:
            raise QueryError(f"{spec!r}: after ':' comes a series aggregate ({', '.join(ast.AGGREGATES)})", position)
        aggregate = rest[1:]
    if not name:
        raise QueryError("empty field path", position)
    return ast.Path(name, aggregate, position, position + len(spec))


@dataclass
class RunQuery:
    user: object
    project: object
    query: str = ""
    sort: list[str] = field(default_factory=lambda: ["-sys/creation_time"])
    columns: list[str] = field(default_factory=lambda: list(DEFAULT_COLUMNS))
    group_by: list[str] = field(default_factory=list)
    group: list | None = None  # the key of one group, to list its runs
    aggregates: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._runs = require_in_project(Run.objects.filter(deleted_at__isnull=True), self.user, self.project, "view")
        if len(self.columns) > MAX_COLUMNS:
            raise QueryError(f"at most {MAX_COLUMNS} columns", 0)
        if len(self.sort) > MAX_SORT:
            raise QueryError(f"at most {MAX_SORT} sort keys", 0)
        if len(self.group_by) > MAX_GROUP_BY:
            raise QueryError(f"at most {MAX_GROUP_BY} group-by fields", 0)
        if self.group is not None:
            self.group = _group_key(self.group, self.group_by)
        tree = ast.parse(self.query or "")
        named = [
            parse_path_spec(p).name
            for p in [*self.columns, *self.group_by, *self.aggregates, *[s.lstrip("-+") for s in self.sort]]
        ]
        # one catalogue look-up for the filter's paths and the columns, sort and group fields
        self.types = project_types(self.project, {*named, *compiler_paths(tree)})
        self.compiler = Compiler(self.project, types=self.types)
        self.filter_q = self.compiler.compile(tree)
        self._aliases = 0
        self._base = None
        self._total = None

    @property
    def warnings(self) -> list[str]:
        return self.compiler.warnings

    # --- building blocks ---------------------------------------------------

    def base(self):
        if self._base is None:
            self._base = self._runs.filter(self.filter_q)
        return self._base

    def _value_expression(self, queryset, spec: str):
        """Annotate ``queryset`` with the value of ``spec``; return (queryset, expression name)."""
        path = parse_path_spec(spec)
        self._aliases += 1
        name = f"v{self._aliases}"
        if path.name in SYS_COLUMNS:
            return queryset.annotate(**{name: sys_expression(path.name)}), name
        types = self.types.get(path.name, set())
        relation = f"r{self._aliases}"
        queryset = queryset.annotate(
            **{relation: FilteredRelation("attributes", condition=Q(attributes__path=path.name))}
        )
        expression = self._column_for(relation, path, types)
        return queryset.annotate(**{name: expression}), name

    @staticmethod
    def _column_for(relation: str, path: ast.Path, types: set[str]):
        if path.aggregate:
            column = AGGREGATE_COLUMNS.get(path.aggregate)
            if path.aggregate == "avg":
                return Cast(F(f"{relation}__sum_value"), FloatField()) / F(f"{relation}__finite_count")
            if path.aggregate == "last" and "string_series" in types:
                return F(f"{relation}__string_value")
            return F(f"{relation}__{column}")
        if types <= NUMERIC and types:
            if types == {"int"}:
                return F(f"{relation}__int_value")
            if types == {"float"}:
                return F(f"{relation}__float_value")
            return Coalesce(Cast(F(f"{relation}__int_value"), FloatField()), F(f"{relation}__float_value"))
        for kind, column in (
            ("float_series", "float_value"),
            ("string", "string_value"),
            ("string_series", "string_value"),
            ("bool", "bool_value"),
            ("datetime", "datetime_value"),
            ("float", "float_value"),
            ("int", "int_value"),
        ):
            if kind in types:
                return F(f"{relation}__{column}")
        return Value(None, output_field=FloatField())

    # --- results -----------------------------------------------------------

    def count(self) -> int:
        if self.group is None and self._total is not None:
            return self._total  # the groups already counted every matching run
        return self._grouped_runs(self.base()).count()

    def _grouped_runs(self, queryset):
        if self.group is None or not self.group_by:
            return queryset
        self.group = _group_key(self.group, self.group_by)  # also when set after construction (the UI's groups)
        for spec, value in zip(self.group_by, self.group, strict=True):
            queryset, name = self._value_expression(queryset, spec)
            try:
                queryset = queryset.filter(**{f"{name}__isnull": True} if value is None else {name: value})
            except (TypeError, ValueError, OverflowError) as exc:
                raise QueryError(
                    f"group: {value!r} does not fit the field {spec!r} ({exc})", 0, field="group"
                ) from None
        return queryset

    def ordered(self):
        """The matching runs in the query's order: a QuerySet, or for a single indexed field sort an
        :class:`OrderedRuns` (sliced, filtered and counted like one)."""
        queryset = self._grouped_runs(self.base())
        indexed = self._indexed_sort(queryset)
        if indexed is not None:
            return indexed
        order = []
        for spec in self.sort:
            descending = spec.startswith("-")
            path = spec.lstrip("-+")
            if path in _NOT_NULL_SYS_COLUMNS:
                # a plain column order lets the run table's (project, created_at) index serve the page;
                # "NULLS LAST" on a column without nulls would make the database sort every run
                column = _NOT_NULL_SYS_COLUMNS[path]
                order.append(F(column).desc() if descending else F(column).asc())
                continue
            queryset, name = self._value_expression(queryset, path)
            order.append(F(name).desc(nulls_last=True) if descending else F(name).asc(nulls_last=True))
        return queryset.order_by(*order, "-id")

    def _indexed_sort(self, queryset):
        """Runs having the one sort field come from its (project, path, value, run) index in order,
        so a first page reads a few index entries instead of joining every matching run; the runs
        lacking it follow, newest first (the same order :meth:`ordered` gives in SQL)."""
        if len(self.sort) != 1:
            return None
        spec = self.sort[0]
        descending = spec.startswith("-")
        path = parse_path_spec(spec.lstrip("-+"))
        if path.name in SYS_COLUMNS:
            return None
        column = _INDEXED_COLUMN.get((frozenset(self.types.get(path.name, ())), path.aggregate))
        if column is None:
            return None
        relation = FilteredRelation(
            "attributes", condition=Q(attributes__path=path.name, attributes__project=self.project)
        )
        value = f"s__{column}"
        present = queryset.annotate(s=relation).filter(**{f"{value}__isnull": False})
        # "value DESC, id DESC" is the index read backwards; ascending reads it forwards
        present = present.order_by(F(value).desc() if descending else F(value).asc(), "-id")
        having = Attribute.objects.filter(project=self.project, path=path.name, **{f"{column}__isnull": False}).values(
            "run_id"
        )
        missing = queryset.exclude(pk__in=having).order_by("-id")
        return OrderedRuns(present, missing, queryset)

    def page(self, limit: int = 50, offset: int = 0) -> list[dict]:
        limit = max(1, min(int(limit), MAX_LIMIT))
        offset = max(0, int(offset))
        runs = list(self.ordered().select_related("owner")[offset : offset + limit])
        for run in runs:
            run.project = self.project  # every run is of this project: no join for it
        return self.rows(runs)

    def rows(self, runs, *, tags: bool = False) -> list[dict]:
        """The page's column values per run. With ``tags``, each run's ``sys/tags`` field comes in
        the same statement and is set as ``run.tag_attributes`` (what the run serializer reads)."""
        specs = [parse_path_spec(c) for c in self.columns]
        wanted = {p.name for p in specs if p.name not in SYS_COLUMNS}
        by_run: dict = {}
        if runs and (wanted or tags):
            paths = wanted | {"sys/tags"} if tags else wanted
            for attr in Attribute.objects.filter(run_id__in=[r.pk for r in runs], path__in=paths):
                by_run.setdefault(attr.run_id, {})[attr.path] = attr
        if tags:
            for run in runs:
                found = by_run.get(run.pk, {}).get("sys/tags")
                run.tag_attributes = [found] if found is not None else []
        rows = []
        for run in runs:
            system = (
                {f["path"]: f["value"] for f in sys_fields(run)} if any(p.name in SYS_COLUMNS for p in specs) else {}
            )
            attributes = by_run.get(run.pk, {})
            values = {}
            for spec, path in zip(self.columns, specs, strict=True):
                if path.name in SYS_COLUMNS:
                    values[spec] = system.get(path.name)
                    continue
                attr = attributes.get(path.name)
                values[spec] = None if attr is None else _cell(attr, path.aggregate)
            rows.append({"id": run.human_id, "uuid": str(run.uuid), "state": run.state, "fields": values})
        return rows

    def column_types(self) -> list[dict]:
        out = []
        for spec in self.columns:
            path = parse_path_spec(spec)
            types = self.types.get(path.name, set())
            if path.aggregate:
                types = {SERIES_AGGREGATE_TYPES.get(t, {}).get(path.aggregate) for t in types} - {None}
            out.append({"path": spec, "type": "/".join(sorted(types)) or None})
        return out

    def groups(self, limit: int = 100) -> list[dict]:
        """Groups by the ``group_by`` fields, with counts and avg/min/max of ``aggregates``."""
        if not self.group_by:
            raise QueryError("group_by is empty", 0)
        queryset = self.base()
        keys = []
        for spec in self.group_by:
            queryset, name = self._value_expression(queryset, spec)
            keys.append(name)
        metrics = {}
        for spec in self.aggregates:
            path = parse_path_spec(spec)
            types = self.types.get(path.name, set())
            if not path.aggregate and not types <= (NUMERIC | {"float_series"}):
                raise QueryError(f"aggregates need numeric fields; {spec!r} is {'/'.join(sorted(types))}", 0)
            queryset, name = self._value_expression(queryset, spec)
            metrics[spec] = name
        annotations: dict[str, Aggregate] = {"n": Count("pk")}
        for name in metrics.values():
            annotations[f"{name}_avg"] = Avg(name)
            annotations[f"{name}_min"] = Min(name)
            annotations[f"{name}_max"] = Max(name)
        rows = (
            queryset.order_by()
            .values(*keys)
            .annotate(**annotations)
            .order_by(*[F(k).asc(nulls_last=True) for k in keys])
        )
        limit = max(1, min(limit, MAX_LIMIT))
        rows = list(rows[: limit + 1])
        if len(rows) <= limit:
            self._total = sum(row["n"] for row in rows)
        result = []
        for row in rows[:limit]:
            result.append(
                {
                    "key": [_plain(row[k]) for k in keys],
                    "count": row["n"],
                    "aggregates": {
                        spec: {s: _finite(row[f"{name}_{s}"]) for s in ("avg", "min", "max")}
                        for spec, name in metrics.items()
                    },
                }
            )
        return result


# sys fields that are NOT NULL run columns
_NOT_NULL_SYS_COLUMNS = {
    path: column
    for path, column in {"sys/id": "number", **SYS_RUN_COLUMNS}.items()
    if not getattr(Run._meta.get_field(column), "null", False)
}

# field types (in the project) and series aggregate -> the attribute column an index orders
_INDEXED_COLUMN = {
    (frozenset({"float"}), None): "float_value",
    (frozenset({"int"}), None): "int_value",
    (frozenset({"datetime"}), None): "datetime_value",
    (frozenset({"float_series"}), None): "float_value",
    (frozenset({"float_series"}), "last"): "float_value",
}


class OrderedRuns:
    """Runs in sort order from two querysets, those having the sort value and those lacking it.

    Supports what callers do with :meth:`RunQuery.ordered`: ``filter``, ``select_related``,
    ``prefetch_related``, ``count`` and slicing (a slice becomes one query, or two where the page
    crosses from the first set into the second).
    """

    def __init__(self, present, missing, everything):
        self.present, self.missing, self.everything = present, missing, everything

    def _apply(self, method, *args, **kwargs):
        return OrderedRuns(
            *(getattr(qs, method)(*args, **kwargs) for qs in (self.present, self.missing, self.everything))
        )

    def filter(self, *args, **kwargs):
        return self._apply("filter", *args, **kwargs)

    def select_related(self, *fields):
        return self._apply("select_related", *fields)

    def prefetch_related(self, *lookups):
        return self._apply("prefetch_related", *lookups)

    def count(self) -> int:
        return self.everything.count()

    def __iter__(self):
        yield from self.present
        yield from self.missing

    def __getitem__(self, item):
        if not isinstance(item, slice) or item.step is not None:
            raise TypeError("OrderedRuns supports slices without a step")
        start = item.start or 0
        if start < 0 or (item.stop is not None and item.stop < 0):
            raise ValueError("negative slices are not supported")
        if item.stop is None:
            return list(self)[start:]
        stop = item.stop
        if stop <= start:
            return []
        first = list(self.present[start:stop])
        if len(first) == stop - start:
            return first
        present_total = start + len(first) if first or start == 0 else self.present.count()
        return first + list(self.missing[max(0, start - present_total) : stop - present_total])


def _group_key(key, group_by: list[str]) -> list:
    """A group key: one JSON scalar per group-by field, integers within 64 bits."""
    if not isinstance(key, list) or len(key) != len(group_by):
        raise QueryError(f"group: the key needs {len(group_by)} value(s), one per group_by field", 0, field="group")
    for value in key:
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise QueryError("group: each key value is a string, number, boolean or null", 0, field="group")
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            raise QueryError("group: an integer key value is out of the 64-bit range", 0, field="group")
    return key


def _plain(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "total_seconds"):
        return value.total_seconds()
    return value


def _finite(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _cell(attr: Attribute, aggregate: str | None):
    value = attribute_value(attr)
    if aggregate and isinstance(value, dict):
        return value.get(aggregate)
    return value


def parse_list(raw) -> list[str]:
    """``a,b`` or a JSON list → list of strings (paths may contain commas only in JSON form)."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, (list, tuple)):
        return [str(x) for x in raw]
    text = str(raw).strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise QueryError(f"malformed JSON list: {exc.msg}", exc.pos) from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise QueryError("expected a JSON list of strings", 0)
        return value
    return [part.strip() for part in text.split(",") if part.strip()]

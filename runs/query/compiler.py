"""Compile a parsed filter into a Django Q over runs, with types from the project's data.

Each test on a logged field becomes ``EXISTS (attribute of this run at that
path satisfying ...)``: true only for runs that have the field; ``not``
is the complement (so it includes runs lacking the field). Values are bound
parameters; no SQL is built from user text.
"""

import math
from datetime import UTC, datetime, timedelta

from django.db import connections, router
from django.db.models import Exists, F, OuterRef, Q, TextField, Value
from django.db.models.functions import StrIndex, Substr
from django.db.models.lookups import Exact, GreaterThan, GreaterThanOrEqual, LessThan, LessThanOrEqual

from ..artifacts.models import RunArtifact
from ..models import STRING_INDEX_CHARS, Attribute
from . import lookups  # noqa: F401  (registers json_value__has_member)
from . import parser as ast
from .fields import (
    AGGREGATE_COLUMNS,
    NUMERIC,
    SERIES_AGGREGATE_TYPES,
    SYS_COLUMNS,
    SYS_RUN_COLUMNS,
    project_types,
    sys_expression,
)


class QueryError(ValueError):
    """A query that parses but cannot run: names the position and the reason."""

    def __init__(self, message: str, position: int, expected: str | None = None, field: str | None = None):
        super().__init__(f"{message} at position {position}")
        self.message = message
        self.position = position
        self.expected = expected
        self.field = field  # the request parameter at fault when it is not the query itself


_COMPARE = {"=": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}


def _paths(node, out):
    if isinstance(node, (ast.Comparison, ast.Exists, ast.Truthy)):
        out.add(node.path.name)
    elif isinstance(node, ast.Not):
        _paths(node.operand, out)
    elif isinstance(node, ast.BoolOp):
        for operand in node.operands:
            _paths(operand, out)
    return out


def _value_type(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "string"


def parse_datetime(value, position: int) -> datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or abs(value) > 253402300799:
            raise QueryError("timestamp out of range", position)
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise QueryError(
                f'{value!r} is not a date or datetime (use ISO 8601, e.g. "2026-01-31")', position
            ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise QueryError("a datetime is compared with an ISO 8601 string or unix seconds", position)


def paths_of(tree) -> set[str]:
    """The field paths a parsed filter tests."""
    return set() if tree is None else _paths(tree, set())


class Compiler:
    def __init__(self, project, types: dict[str, set[str]] | None = None):
        self.project = project
        self.warnings: list[str] = []
        self.types: dict[str, set[str]] = {}
        self._known_types = types  # the caller's catalogue look-up, when it covers the filter's paths
        # id(Q) -> (that Q, kept alive so its id is not reused; path; row condition)
        self._attribute_tests: dict[int, tuple[Q, str, Q]] = {}

    def compile(self, tree) -> Q:
        if tree is None:
            return Q()
        paths = _paths(tree, set())
        known = self._known_types
        self.types = (
            {p: known[p] for p in paths if p in known} if known is not None else project_types(self.project, paths)
        )
        return self._node(tree)

    def _node(self, node) -> Q:
        if isinstance(node, ast.BoolOp):
            operands = [self._node(operand) for operand in node.operands]
            if node.op == "and":
                operands = self._join_attribute_tests(operands)
            result = operands[0]
            for operand in operands[1:]:
                result = (result & operand) if node.op == "and" else (result | operand)
            return result
        if isinstance(node, ast.Not):
            return ~self._node(node.operand)
        if isinstance(node, ast.ArtifactTest):
            return self._artifact_test(node)
        if isinstance(node, ast.Exists):
            return self._exists(node.path)
        if isinstance(node, ast.Truthy):
            return self._comparison(ast.Comparison(node.path, "=", True, node.path.start))
        return self._comparison(node)

    # --- helpers -------------------------------------------------------------

    def _attribute_exists(self, path: str, condition: Q) -> Q:
        # "run IN (runs whose attribute at path satisfies ...)": both databases evaluate the
        # subquery once from the (project, path, value) indexes and probe it per run.
        subquery = Attribute.objects.filter(project_id=self.project.pk, path=path).filter(condition).values("run_id")
        test = Q(pk__in=subquery)
        self._attribute_tests[id(test)] = (test, path, condition)
        return test

    def _join_attribute_tests(self, operands: list[Q]) -> list[Q]:
        """On PostgreSQL, the field tests of one ``and`` become one subquery over the attribute rows:
        the first test's rows having (``EXISTS``) a row of the same run passing each other test, in
        place of one "run IN (...)" per test. The runs are then joined once, for the runs that pass
        every test (not all of them hashed first), and the planner weighs fewer joins: while the
        visibility map of a bulk write is empty (index-only scans fetch every entry from the heap)
        the sentence's statement reads half the pages and plans in half the time; vacuumed, the same.
        SQLite keeps one "run IN" per test (it would probe in the order written)."""
        tests = [entry[1:] if (entry := self._attribute_tests.get(id(q))) and entry[0] is q else None for q in operands]
        found = [t for t in tests if t is not None]
        if len(found) < 2 or connections[router.db_for_read(Attribute)].vendor != "postgresql":
            return operands
        (path, condition), *others = found
        rows = Attribute.objects.filter(project_id=self.project.pk, path=path).filter(condition)
        for other_path, other_condition in others:
            same_run = Attribute.objects.filter(run_id=OuterRef("run_id"), project_id=self.project.pk, path=other_path)
            rows = rows.filter(Exists(same_run.filter(other_condition)))
        joined = Q(pk__in=rows.values("run_id"))
        return [joined, *(q for q, t in zip(operands, tests, strict=True) if t is None)]

    def _links(self, **conditions) -> Q:
        # The project's links only: a version is matched by what this project's runs recorded.
        return Q(pk__in=RunArtifact.objects.filter(project_id=self.project.pk, **conditions).values("run_id"))

    def _artifact_test(self, node: ast.ArtifactTest) -> Q:
        if node.by == "artifact":
            return self._links(role=node.role, artifact__name=node.value)
        return self._links(role=node.role, version__hash=node.value)

    def _artifact_hash(self, node: ast.Comparison) -> Q:
        """``field:hash = "..."``: the version the run recorded under the field (tracked or uploaded)."""
        values = node.value if node.op == "in" else (node.value,)
        if node.op not in ("=", "!=", "in") or not all(isinstance(v, str) for v in values):
            raise QueryError(
                f'{node.path} is a version hash: compare it with =, != or in and a "string"', node.value_start
            )
        if node.op == "!=":
            return self._links(path=node.path.name) & ~self._links(path=node.path.name, version__hash=values[0])
        return self._links(path=node.path.name, version__hash__in=list(values))

    def _exists(self, path: ast.Path) -> Q:
        if path.aggregate == "hash":
            return self._links(path=path.name)
        if path.name in SYS_COLUMNS:
            return Q()
        return self._attribute_exists(path.name, Q())

    def _types_for(self, node: ast.Comparison) -> set[str]:
        path = node.path
        types = self.types.get(path.name)
        if not types:
            self.warnings.append(f"no run in this project has the field {path.name!r}")
            return set()
        if path.aggregate:
            series = [t for t in types if t in SERIES_AGGREGATE_TYPES]
            if not series:
                raise QueryError(
                    f"{path.name!r} is a {'/'.join(sorted(types))} field, not a series; drop ':{path.aggregate}'",
                    path.start,
                )
            resolved = {SERIES_AGGREGATE_TYPES[t].get(path.aggregate) for t in series} - {None}
            if not resolved:
                raise QueryError(f"':{path.aggregate}' does not apply to a {series[0]}", path.start)
            return {f"{t}:{path.aggregate}" for t in series if path.aggregate in SERIES_AGGREGATE_TYPES[t]}
        return types

    def _comparison(self, node: ast.Comparison) -> Q:
        if node.path.aggregate == "hash":
            return self._artifact_hash(node)
        if node.path.name in SYS_COLUMNS:
            if node.path.aggregate:
                raise QueryError(f"{node.path.name} is not a series", node.path.start)
            return self._sys(node)
        types = self._types_for(node)
        if not types:
            return Q(pk__in=[])  # an unknown field matches no run
        self._several_types = len(types) > 1
        self._value_start = node.value_start
        conditions = [c for c in (self._condition(node, t) for t in sorted(types)) if c is not None]
        if not conditions:
            kinds = "/".join(sorted(t.split(":")[0] for t in types))
            raise QueryError(
                f"cannot compare {node.path} ({kinds}) with {_value_type(node.value if node.op != 'in' else node.value[0])} "
                f"using {node.op.replace('_', ' ')}",
                node.value_start if node.op not in ("contains", "matches", "starts_with") else node.path.start,
            )
        combined = conditions[0]
        for condition in conditions[1:]:
            combined |= condition
        return self._attribute_exists(node.path.name, combined)

    def _type(self, base: str) -> Q:
        # With one type per path in the project the typed column alone decides, and the
        # subquery stays inside the index; a type test is needed only to tell types apart.
        return Q(type=base) if self._several_types else Q()

    def _condition(self, node: ast.Comparison, type_: str) -> Q | None:
        """The attribute-row condition for ``node`` if the field type accepts it, else None."""
        base, _, aggregate = type_.partition(":")
        Q_type = self._type
        op, value = node.op, node.value
        values = value if op == "in" else (value,)
        kinds = {_value_type(v) for v in values}
        if aggregate:
            if base == "string_series" and aggregate == "last":
                return self._string_condition(node, "string_value", Q_type(base))
            if aggregate == "avg":
                if kinds != {"number"} or op in ("contains", "matches", "starts_with"):
                    return None
                return self._numeric(Q_type(base) & Q(finite_count__gt=0), "avg", op, values, annotate=True)
            if kinds != {"number"} or op in ("contains", "matches", "starts_with"):
                return None
            return self._numeric(Q_type(base), AGGREGATE_COLUMNS[aggregate], op, values)
        if base in NUMERIC:
            if kinds != {"number"} or op in ("contains", "matches", "starts_with"):
                return None
            return self._numeric(Q_type(base), f"{base}_value", op, values)
        if base == "float_series":
            if kinds != {"number"} or op in ("contains", "matches", "starts_with"):
                return None
            return self._numeric(Q_type(base), "float_value", op, values)  # a series compares by its last value
        if base in ("string", "string_series"):
            if kinds != {"string"}:
                return None
            return self._string_condition(node, "string_value", Q_type(base))
        if base == "bool":
            if kinds != {"bool"} or op not in ("=", "!=", "in"):
                return None
            return self._numeric(Q_type(base), "bool_value", op, values)
        if base == "datetime":
            if op in ("contains", "matches", "starts_with") or kinds == {"bool"}:
                return None
            parsed = tuple(parse_datetime(v, node.value_start) for v in values)
            return self._numeric(Q_type(base), "datetime_value", op, parsed)
        if base == "string_set":
            if op != "contains" or kinds != {"string"}:
                return None
            return Q_type(base) & Q(json_value__has_member=value)
        return None

    def _numeric(self, base: Q, column: str, op: str, values, annotate=False) -> Q | None:
        position = getattr(self, "_value_start", 0)
        if column in _INT_COLUMNS:
            values = _int_operands(op, values, position)
            if values is None:  # "!=" a number no integer equals
                return base & Q(**{f"{column}__isnull": False})
            if not values:  # "=" or "in" numbers no integer equals
                return Q(pk__in=[])
        elif column in _FLOAT_COLUMNS or annotate:
            values = tuple(_float_operand(v, position) for v in values)
        if annotate:
            # avg of a series: sum / finite count, compared as "sum op value * count"
            if op == "in":
                return None
            target = values[0]
            lookup = {"=": "exact", "!=": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[op]
            condition = Q(**{f"sum_value__{lookup}": F("finite_count") * target})
            return base & (~condition if op == "!=" else condition)
        if op == "in":
            return base & Q(**{f"{column}__in": list(values)})
        if op == "!=":
            return base & ~Q(**{column: values[0]}) & Q(**{f"{column}__isnull": False})
        return base & Q(**{f"{column}__{_COMPARE[op]}": values[0]})

    def _string_condition(self, node: ast.Comparison, column: str, base: Q) -> Q | None:
        op, value = node.op, node.value
        if op == "contains":
            return base & _contains(column, value)
        if op == "starts_with":
            return base & _starts_with(column, value)
        if op == "matches":
            _check_regex(value, node.value_start)
            return base & Q(**{f"{column}__regex": value})
        if op in ("=", "!=", "in"):
            values = node.value if op == "in" else (value,)
            matches = Q(pk__in=[])
            for v in values:
                matches |= _string_equals(column, v)
            if op == "!=":
                return base & Q(**{f"{column}__isnull": False}) & ~matches
            return base & matches
        return self._numeric(base, column, op, (value,))

    def _sys(self, node: ast.Comparison) -> Q:
        path, op, value = node.path.name, node.op, node.value
        type_ = SYS_COLUMNS[path]
        values = value if op == "in" else (value,)
        kinds = {_value_type(v) for v in values}
        if path == "sys/id":
            numbers = []
            for v in values:
                if isinstance(v, str):
                    key, _, number = v.rpartition("-")
                    if key != self.project.key or not number.isdigit():
                        raise QueryError(
                            f"{v!r} is not a run id of this project (like {self.project.key}-12)", node.value_start
                        )
                    numbers.append(int(number))
                elif isinstance(v, int) and not isinstance(v, bool):
                    numbers.append(v)
                else:
                    raise QueryError('sys/id is compared with a run id like "VIS-12"', node.value_start)
                if not 0 <= numbers[-1] <= INT_MAX:
                    raise _out_of_range(numbers[-1], node.value_start, f"a run number (0..{INT_MAX})")
            return _column_q("number", op, numbers)
        if path == "sys/running_time":
            if kinds != {"number"} or op in ("contains", "matches", "starts_with"):
                raise QueryError("sys/running_time (seconds) is compared with a number", node.value_start)
            for v in values:
                if not (math.isfinite(v) and abs(v) <= RUNNING_TIME_MAX):
                    raise _out_of_range(v, node.value_start, f"sys/running_time (±{RUNNING_TIME_MAX} seconds)")
            return _expression_q(sys_expression(path), op, [timedelta(seconds=v) for v in values])
        if path == "sys/failed":
            if kinds != {"bool"} or op not in ("=", "!=", "in"):
                raise QueryError("sys/failed is compared with true or false", node.value_start)
            failed = Q(state="failed")
            if op == "in":
                return failed if values == (True,) else ~failed if values == (False,) else Q()
            wanted = value if op == "=" else not value
            return failed if wanted else ~failed
        column = {"sys/owner": "owner__username", **SYS_RUN_COLUMNS}[path]
        if type_ == "datetime":
            if op in ("contains", "matches", "starts_with"):
                raise QueryError(f"{path} is a datetime", node.value_start)
            return _column_q(column, op, [parse_datetime(v, node.value_start) for v in values])
        if kinds != {"string"}:
            raise QueryError(f'{path} is a string; compare it with a "string"', node.value_start)
        if op == "contains":
            return _contains(column, value)
        if op == "starts_with":
            return _starts_with(column, value)
        if op == "matches":
            _check_regex(value, node.value_start)
            return Q(**{f"{column}__regex": value})
        return _column_q(column, op, list(values))


INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # the integer columns are 64-bit
RUNNING_TIME_MAX = 10**12  # seconds (~31,700 years): beyond what a duration holds on both databases
_INT_COLUMNS = {"int_value", "count"}
_FLOAT_COLUMNS = {"float_value", "min_value", "max_value"}


def _out_of_range(value, position: int, what: str) -> QueryError:
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    if len(shown) > 30:
        shown = f"{shown[:12]}... ({len(shown)} digits)"
    return QueryError(f"{shown} is out of range for {what}", position)


def _int_operands(op: str, values, position: int):
    """Operands for a 64-bit integer column: a value outside it is an error; a fractional bound is
    rounded the way the comparison means it (n > 2.5 is n > 2, n >= 2.5 is n >= 3). Returns None
    for "!=" a fraction (every value differs) and drops fractions from "=" and "in"."""
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(value)
            continue
        if isinstance(value, float):
            if not math.isfinite(value) or not INT_MIN <= value <= INT_MAX:
                raise _out_of_range(value, position, f"an integer field ({INT_MIN}..{INT_MAX})")
            if not value.is_integer():
                if op == "!=":
                    return None
                if op in ("=", "in"):
                    continue
                value = math.floor(value) if op in (">", "<=") else math.ceil(value)
            value = int(value)
        if not INT_MIN <= value <= INT_MAX:
            raise _out_of_range(value, position, f"an integer field ({INT_MIN}..{INT_MAX})")
        out.append(value)
    return tuple(out)


def _float_operand(value, position: int):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except OverflowError:
        raise _out_of_range(value, position, "a float field (about ±1.8e308)") from None


def _check_regex(pattern: str, position: int) -> None:
    from .budget import check_regex  # budget imports QueryError from here

    check_regex(pattern, position)


def _column_q(column: str, op: str, values) -> Q:
    if op == "in":
        return Q(**{f"{column}__in": values})
    if op == "!=":
        return ~Q(**{column: values[0]}) & Q(**{f"{column}__isnull": False})
    return Q(**{f"{column}__{_COMPARE[op]}": values[0]})


def _expression_q(expression, op: str, values) -> Q:
    comparisons = {"=": Exact, "<": LessThan, "<=": LessThanOrEqual, ">": GreaterThan, ">=": GreaterThanOrEqual}
    if op == "in":
        result = Q(pk__in=[])
        for v in values:
            result |= Q(Exact(expression, v))
        return result
    if op == "!=":
        return ~Q(Exact(expression, values[0]))
    return Q(comparisons[op](expression, values[0]))


def _string_equals(column: str, value: str) -> Q:
    """Equality through the indexed ``string_prefix`` (the first STRING_INDEX_CHARS characters)."""
    prefix = Q(string_prefix=value[:STRING_INDEX_CHARS])
    if len(value) < STRING_INDEX_CHARS:
        return prefix  # a shorter prefix can only equal the whole string
    return prefix & Q(**{column: value})


def _contains(column: str, value: str) -> Q:
    # strpos/instr are case-sensitive on both databases, unlike LIKE on SQLite.
    present = Q(**{f"{column}__isnull": False})
    if not value:
        return present
    return present & Q(GreaterThan(StrIndex(F(column), _text(value)), 0))


def _starts_with(column: str, value: str) -> Q:
    present = Q(**{f"{column}__isnull": False})
    if not value:
        return present
    return present & Q(Exact(Substr(F(column), 1, len(value)), _text(value)))


def _text(value: str):
    return Value(value, output_field=TextField())

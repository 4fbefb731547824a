"""Suggestions for the query editor: what can come at the cursor."""

from django.db import connections, router
from django.db.models import Count

from ..models import STRING_INDEX_CHARS, Attribute, ProjectField
from . import parser as ast
from .fields import SYS_COLUMNS, project_types

OPERATORS_BY_TYPE = {
    "int": ["=", "!=", "<", "<=", ">", ">=", "in"],
    "float": ["=", "!=", "<", "<=", ">", ">=", "in"],
    "datetime": ["=", "!=", "<", "<=", ">", ">="],
    "string": ["=", "!=", "contains", "starts with", "matches", "in"],
    "bool": ["=", "!="],
    "string_set": ["contains"],
    "float_series": [":last", ":min", ":max", ":avg", ":count", "<", "<=", ">", ">=", "=", "!="],
    "string_series": [":last", ":count", "=", "!=", "contains", "starts with", "matches"],
    "file_series": [":count"],
}
CONNECTIVES = ["and", "or", ")"]
MAX_ITEMS = 20


def _lenient_tokens(text: str):
    """Tokens of ``text``; an unterminated string at the end becomes a partial string token."""
    try:
        return ast.tokenize(text)[:-1], None
    except ast.QuerySyntaxError as exc:
        if exc.message == "unterminated string":
            head = ast.tokenize(text[: exc.position])[:-1] if exc.position else []
            return head, (exc.position, text[exc.position + 1 :])
        raise


def suggest(project, text: str, cursor: int | None = None) -> dict:
    cursor = len(text) if cursor is None else max(0, min(cursor, len(text)))
    before = text[:cursor]
    try:
        tokens, open_string = _lenient_tokens(before)
    except ast.QuerySyntaxError as exc:
        return {"context": "error", "from": exc.position, "to": cursor, "items": [], "error": str(exc)}
    if open_string is not None:
        start, prefix = open_string
        path = _last_path(tokens)
        return _values(project, path, prefix, start, cursor)
    partial = None
    if tokens and not before[-1:].isspace() and tokens[-1].kind == "path" and tokens[-1].end == cursor:
        partial = tokens.pop()
    previous = tokens[-1] if tokens else None
    start = partial.start if partial else cursor
    prefix = partial.value if partial else ""
    if (
        previous is None
        or previous.kind in ("lparen",)
        or (previous.kind == "keyword" and previous.value in ("and", "or", "not", "exists"))
    ):
        return _paths(project, prefix, start, cursor)
    if previous.kind == "path" and (len(tokens) < 2 or tokens[-2].kind != "colon"):
        return _operators(project, previous.value, prefix, start, cursor)
    if previous.kind == "path":  # after an aggregate: comparison operators
        return _items(
            "operator",
            start,
            cursor,
            [
                {"label": o, "insert": o, "detail": "operator"}
                for o in ["<", "<=", ">", ">=", "=", "!="]
                if o.startswith(prefix)
            ],
        )
    if (
        previous.kind == "op"
        or (previous.kind == "keyword" and previous.value in ("contains", "matches", "with", "in"))
        or previous.kind in ("comma",)
    ):
        return _values(project, _last_path(tokens), prefix, start, cursor)
    return _items(
        "connective",
        start,
        cursor,
        [{"label": c, "insert": c, "detail": "keyword"} for c in CONNECTIVES if c.startswith(prefix.lower())],
    )


def _last_path(tokens) -> str | None:
    for token in reversed(tokens):
        if token.kind == "path" and token.value not in ast.AGGREGATES:
            return token.value
    return None


def _items(context, start, end, items):
    return {"context": context, "from": start, "to": end, "items": items[:MAX_ITEMS]}


def _paths(project, prefix: str, start: int, end: int) -> dict:
    lowered = prefix.lower()
    items = [{"label": p, "insert": p, "detail": t} for p, t in SYS_COLUMNS.items() if lowered in p.lower()]
    queryset = ProjectField.objects.filter(project=project)
    if prefix:
        starts = list(queryset.filter(path__startswith=prefix).order_by("path").values_list("path", "type")[:MAX_ITEMS])
        seen = {p for p, _ in starts}
        rest = [
            r
            for r in queryset.filter(path__icontains=prefix).order_by("path").values_list("path", "type")[:MAX_ITEMS]
            if r[0] not in seen
        ]
        rows = starts + rest
    else:
        rows = list(queryset.order_by("path").values_list("path", "type")[:MAX_ITEMS])
    items += [{"label": p, "insert": p if _plain_path(p) else f"`{p}`", "detail": t} for p, t in rows]
    items.sort(key=lambda i: (not i["label"].lower().startswith(lowered), i["label"]))
    items += [
        {"label": k, "insert": k, "detail": "keyword"} for k in ("not", "exists") if k.startswith(lowered) and prefix
    ]
    return _items("path", start, end, items)


def _plain_path(path: str) -> bool:
    return all(c.isalnum() or c in "_.-/" for c in path)


def _operators(project, path: str, prefix: str, start: int, end: int) -> dict:
    types = project_types(project, [path]).get(path, set())
    operators: list[str] = []
    for t in sorted(types):
        operators += [o for o in OPERATORS_BY_TYPE.get(t, []) if o not in operators]
    if not types:
        operators = ["="]
    items = [
        {"label": o, "insert": o, "detail": "/".join(sorted(types)) or "unknown field"}
        for o in operators
        if o.startswith(prefix.lower())
    ]
    return _items("operator", start, end, items)


def _values(project, path: str | None, prefix: str, start: int, end: int) -> dict:
    if path is None:
        return _items("value", start, end, [])
    if path in SYS_COLUMNS:
        if path == "sys/failed":
            return _items(
                "value",
                start,
                end,
                [{"label": v, "insert": v, "detail": "bool"} for v in ("true", "false") if v.startswith(prefix)],
            )
        if path in ("sys/state",):
            states = ["running", "finished", "failed", "aborted", "crashed"]
            return _items(
                "value",
                start,
                end,
                [{"label": s, "insert": f'"{s}"', "detail": "string"} for s in states if s.startswith(prefix)],
            )
        if path == "sys/owner":
            from django.db.models import F

            from ..models import Run

            rows = (
                Run.objects.filter(project=project, deleted_at__isnull=True, owner__username__startswith=prefix)
                .values(username=F("owner__username"))
                .annotate(n=Count("id"))
                .order_by("-n")[:MAX_ITEMS]
            )
            return _items(
                "value",
                start,
                end,
                [{"label": r["username"], "insert": _quote(r["username"]), "detail": f"{r['n']} runs"} for r in rows],
            )
        return _items("value", start, end, [])
    types = project_types(project, [path]).get(path, set())
    if "bool" in types:
        return _items(
            "value",
            start,
            end,
            [{"label": v, "insert": v, "detail": "bool"} for v in ("true", "false") if v.startswith(prefix)],
        )
    if "string" in types or "string_set" in types:
        if "string_set" in types:
            return _items("value", start, end, _set_values(project, path, prefix))
        return _items("value", start, end, _string_values(project, path, prefix))
    return _items("value", start, end, [])


# Value suggestions walk at most this many distinct values of a field, and count each value's runs
# up to this many (shown as "1000+ runs"): a few index probes per value instead of every run's entry.
DISTINCT_WALK = 200
COUNT_CAP = 1000


def _string_values(project, path: str, prefix: str) -> list[dict]:
    """The field's most common values starting with ``prefix``, read from the (project, path,
    string_prefix, run) index alone; a value as long as the stored prefix may be cut short, so it is
    not offered.

    A field with up to DISTINCT_WALK distinct values (a data set, an optimizer, a version) is walked
    value by value (a loose index scan: one probe per value) and each value's runs are counted up to
    COUNT_CAP, so the cost does not grow with the number of runs (nor with heap fetches while the
    visibility map is behind). A field with more distinct values is grouped over all its entries."""
    table = Attribute._meta.db_table
    connection = connections[router.db_for_read(Attribute)]
    probe = f"SELECT a.string_prefix FROM {table} a WHERE a.project_id = %s AND a.path = %s AND a.string_prefix"
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH RECURSIVE walk(v, depth) AS ("
            f" SELECT ({probe} IS NOT NULL ORDER BY a.string_prefix LIMIT 1), 1"
            f" UNION ALL SELECT ({probe} > walk.v ORDER BY a.string_prefix LIMIT 1), walk.depth + 1"
            " FROM walk WHERE walk.v IS NOT NULL AND walk.depth <= %s)"
            " SELECT walk.v, walk.depth, CASE WHEN walk.v IS NOT NULL AND substr(walk.v, 1, %s) = %s"
            f" AND length(walk.v) < %s THEN (SELECT count(*) FROM (SELECT 1 FROM {table} a"
            " WHERE a.project_id = %s AND a.path = %s AND a.string_prefix = walk.v LIMIT %s) capped) END"
            " FROM walk",
            [
                project.pk,
                path,
                project.pk,
                path,
                DISTINCT_WALK,
                len(prefix),
                prefix,
                STRING_INDEX_CHARS,
                project.pk,
                path,
                COUNT_CAP,
            ],
        )
        walked = cursor.fetchall()
    if walked and walked[-1][0] is not None:  # more distinct values than the walk takes
        rows = Attribute.objects.filter(project=project, path=path, string_prefix__isnull=False)
        if prefix:
            rows = rows.filter(string_prefix__startswith=prefix)
        grouped = (
            rows.values_list("string_prefix")
            .annotate(n=Count("string_prefix"))
            .order_by("-n", "string_prefix")[: MAX_ITEMS * 2]
        )
        counted = [(value, n) for value, n in grouped if len(value) < STRING_INDEX_CHARS]
        cap = None  # grouped over every entry: the counts are exact
    else:
        counted = sorted(((value, n) for value, _, n in walked if n), key=lambda row: (-row[1], row[0]))
        cap = COUNT_CAP
    return [
        {"label": value, "insert": _quote(value), "detail": f"{cap}+ runs" if cap and n >= cap else f"{n} runs"}
        for value, n in counted[:MAX_ITEMS]
    ]


def _set_values(project, path, prefix):
    from collections import Counter

    counts: Counter = Counter()
    for values in Attribute.objects.filter(project=project, path=path, type="string_set").values_list(
        "json_value", flat=True
    )[:20_000]:
        counts.update(v for v in values or [] if v.startswith(prefix))
    return [{"label": v, "insert": _quote(v), "detail": f"{n} runs"} for v, n in counts.most_common(MAX_ITEMS)]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

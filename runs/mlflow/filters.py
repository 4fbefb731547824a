"""MLflow search filter strings and ``order_by`` clauses, translated into the Runstore query language.

``metrics.acc > 0.9 AND params.optimizer = 'adam' AND tags.team LIKE 'vis%'`` becomes
``metrics/acc > 0.9 and parameters/optimizer = "adam" and tags/team matches "(?s)^vis.*$"``, which
``runs.query.RunQuery`` parses, type-checks against the project's fields and compiles; this module
only rewrites syntax (no second engine). MLflow's grammar: conjunctions of ``<entity>.<key> <op>
<value>`` with entities ``metrics``, ``params``, ``tags``, ``attributes`` (and their aliases), keys
plain or quoted with backticks or double quotes, values quoted strings, numbers or ``(...)`` lists.
"""

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass

from .errors import MlflowError

METRIC_PREFIX = "metrics/"
PARAM_PREFIX = "parameters/"
TAG_PREFIX = "tags/"

_ENTITIES = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
    "dataset": "dataset",
    "datasets": "dataset",
}
_ATTRIBUTE_ALIASES = {"created": "start_time", "Created": "start_time", "run name": "run_name", "Run name": "run_name"}
_ATTRIBUTE_ALIASES["Run Name"] = "run_name"
STATUS_TO_STATE = {"RUNNING": "running", "FINISHED": "finished", "FAILED": "failed", "KILLED": "aborted"}
STATE_TO_STATUS = {v: k for k, v in STATUS_TO_STATE.items()}

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<lparen>\()|(?P<rparen>\))|(?P<comma>,)
    | (?P<op>!=|<>|>=|<=|=|<|>)
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<backtick>`[^`]*`)
    | (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![\w.]))
    | (?P<word>[A-Za-z_][\w.\-:/]*)
    | (?P<dot>\.)
    )""",
    re.VERBOSE,
)


def invalid(message: str) -> MlflowError:
    return MlflowError("INVALID_PARAMETER_VALUE", message)


@dataclass
class Token:
    kind: str
    text: str


def _tokens(text: str) -> list[Token]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise invalid(f"Invalid filter string {text!r}: cannot parse at position {pos}: {text[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        out.append(Token(kind, match.group(kind)))
        pos = match.end()
    return out


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body) if text[0] in "'\"" else body


@dataclass
class Clause:
    entity: str  # metric, param, tag, attribute, dataset
    key: str
    op: str  # = != < <= > >= LIKE ILIKE IN NOT IN, IS NULL, IS NOT NULL
    value: object = None


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise invalid(f"Invalid filter string {self.text!r}: it ends too early")
        self.pos += 1
        return token

    def word(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text.upper() in words

    def clauses(self) -> list[Clause]:
        out = [self.clause()]
        while self.peek() is not None:
            if self.word("AND"):
                self.take()
                out.append(self.clause())
            elif self.word("OR"):
                raise invalid(f"Invalid filter string {self.text!r}: OR is not supported, only AND")
            else:
                raise invalid(f"Invalid filter string {self.text!r}: expected AND, got {self.peek().text!r}")  # type: ignore[union-attr]
        return out

    def identifier(self) -> tuple[str, str]:
        token = self.take()
        if token.kind == "backtick" or token.kind == "string":
            return "attribute", _unquote(token.text)
        if token.kind != "word":
            raise invalid(f"Invalid filter string {self.text!r}: expected an identifier, got {token.text!r}")
        head, dot, rest = token.text.partition(".")
        if not dot:
            return "attribute", head
        entity = _ENTITIES.get(head)
        if entity is None:
            raise invalid(
                f"Invalid entity type {head!r}. Valid values are ['metric', 'parameter', 'tag', 'attribute', 'dataset']"
            )
        if rest:
            return entity, rest
        key = self.take()  # metrics.`a b` or tags."x.y" (the word ended at the dot)
        if key.kind not in ("backtick", "string"):
            raise invalid(f"Invalid filter string {self.text!r}: expected a key after {token.text!r}")
        return entity, _unquote(key.text)

    def value(self):
        token = self.take()
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "number":
            return float(token.text)
        if token.kind == "lparen":
            items = []
            while True:
                item = self.take()
                if item.kind not in ("string", "number"):
                    raise invalid(f"Invalid filter string {self.text!r}: expected a quoted value in (...)")
                items.append(_unquote(item.text) if item.kind == "string" else item.text)
                sep = self.take()
                if sep.kind == "rparen":
                    return items
                if sep.kind != "comma":
                    raise invalid(f"Invalid filter string {self.text!r}: expected ',' or ')' in a list")
        raise invalid(f"Invalid filter string {self.text!r}: expected a value, got {token.text!r}")

    def clause(self) -> Clause:
        entity, key = self.identifier()
        if entity == "attribute":
            key = _ATTRIBUTE_ALIASES.get(key, key)
        token = self.take()
        if token.kind == "op":
            op = "!=" if token.text == "<>" else token.text
        elif token.kind == "word" and token.text.upper() in ("LIKE", "ILIKE", "IN"):
            op = token.text.upper()
        elif token.kind == "word" and token.text.upper() == "NOT" and self.word("IN"):
            self.take()
            op = "NOT IN"
        elif token.kind == "word" and token.text.upper() == "IS":
            negated = self.word("NOT")
            if negated:
                self.take()
            if not self.word("NULL"):
                raise invalid(f"Invalid filter string {self.text!r}: expected NULL after IS")
            self.take()
            return Clause(entity, key, "IS NOT NULL" if negated else "IS NULL")
        else:
            raise invalid(f"Invalid comparator {token.text!r} in filter string {self.text!r}")
        return Clause(entity, key, op, self.value())


def parse_filter(text: str) -> list[Clause]:
    """The clauses of an MLflow filter string (all joined by AND); an empty filter has none."""
    if not text or not text.strip():
        return []
    return _Parser(text).clauses()


def _path(path: str) -> str:
    return f"`{path}`"


def _string(value: str) -> str:
    return json.dumps(value)  # the query language reads "..." with \" and \\ escapes; JSON's are the same


def like_regex(pattern: str, ignore_case: bool = False) -> str:
    """SQL LIKE (``%`` any run, ``_`` one character) as an anchored RE2 pattern."""
    out = []
    for char in pattern:
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
    return ("(?is)" if ignore_case else "(?s)") + "^" + "".join(out) + "$"


def _number(value, what: str) -> str:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise invalid(f"Expected a numeric value for {what}, got {value!r}") from None
    if not isinstance(value, float) or not math.isfinite(value):
        raise invalid(f"Expected a finite numeric value for {what}, got {value!r}")
    return repr(value)


def _compare(path: str, op: str, value, *, numeric: bool, what: str) -> str:
    """``path op value`` in the query language for the comparison operators, LIKE, ILIKE and IN."""
    p = _path(path)
    if op in ("LIKE", "ILIKE"):
        if not isinstance(value, str):
            raise invalid(f"{op} on {what} needs a quoted pattern")
        return f"{p} matches {_string(like_regex(value, op == 'ILIKE'))}"
    if op in ("IN", "NOT IN"):
        if not isinstance(value, list):
            raise invalid(f"{op} on {what} needs a list like ('a', 'b')")
        items = ", ".join(_number(v, what) if numeric else _string(str(v)) for v in value)
        test = f"{p} in ({items})"
        return test if op == "IN" else f"(exists {p} and not {test})"
    if isinstance(value, list):
        raise invalid(f"{op} on {what} takes one value, not a list")
    if numeric:
        return f"{p} {op} {_number(value, what)}"
    if not isinstance(value, str):
        raise invalid(f"Expected a quoted string value for {what}, got {value!r}")
    if op not in ("=", "!="):
        raise invalid(f"Invalid comparator {op!r} for {what}: only =, !=, LIKE, ILIKE, IN and NOT IN")
    return f"{p} {op} {_string(value)}"


def translate(clauses: list[Clause], *, run_ids_to_human=None) -> str:
    """The Runstore query for MLflow ``clauses``; ``run_ids_to_human(hex_ids)`` maps run ids to ``VIS-12``."""
    parts = []
    for clause in clauses:
        entity, key, op, value = clause.entity, clause.key, clause.op, clause.value
        what = f"{entity} {key!r}"
        if entity == "dataset":
            raise invalid("Filtering runs by dataset is not supported by this server")
        if op in ("IS NULL", "IS NOT NULL"):
            if entity not in ("param", "tag"):
                raise invalid(f"{op} applies to params and tags, not to {what}")
            path = _run_field_path(entity, key)
            parts.append(f"exists {_path(path)}" if op == "IS NOT NULL" else f"not exists {_path(path)}")
            continue
        if entity == "metric":
            if op not in ("=", "!=", "<", "<=", ">", ">="):
                raise invalid(f"Invalid comparator {op!r} for metric {key!r}: only =, !=, <, <=, >, >=")
            parts.append(_compare(METRIC_PREFIX + key, op, value, numeric=True, what=what))
        elif entity in ("param", "tag"):
            if op in ("<", "<=", ">", ">="):
                raise invalid(f"Invalid comparator {op!r} for {what}: only =, !=, LIKE, ILIKE, IN, NOT IN")
            parts.append(_compare(_run_field_path(entity, key), op, value, numeric=False, what=what))
        else:
            parts.append(_attribute(key, op, value, run_ids_to_human))
    return " and ".join(parts)


def _run_field_path(entity: str, key: str) -> str:
    if entity == "tag" and key == "mlflow.runName":
        return "sys/name"
    if entity == "tag" and key == "mlflow.note.content":
        return "sys/description"
    return (PARAM_PREFIX if entity == "param" else TAG_PREFIX) + key


def _attribute(key: str, op: str, value, run_ids_to_human) -> str:
    what = f"attribute {key!r}"
    if key == "run_name":
        return _compare("sys/name", op, value, numeric=False, what=what)
    if key == "user_id":
        return _compare("sys/owner", op, value, numeric=False, what=what)
    if key == "status":
        if op in ("LIKE", "ILIKE"):
            return _compare("sys/state", "ILIKE", value, numeric=False, what=what)
        values = value if isinstance(value, list) else [value]
        mapped = [STATUS_TO_STATE.get(str(v).upper(), str(v).lower()) for v in values]
        return _compare("sys/state", op, mapped if isinstance(value, list) else mapped[0], numeric=False, what=what)
    if key in ("start_time", "end_time"):
        if op not in ("=", "!=", "<", "<=", ">", ">="):
            raise invalid(f"Invalid comparator {op!r} for {what}")
        seconds = float(_number(value, what)) / 1000.0
        # start_time compares the run's creation time (every run has one); end_time the time the client
        # sent when it ended the run (mlflow/end_time; a run still running has none and matches nothing).
        path = "sys/creation_time" if key == "start_time" else "mlflow/end_time"
        return f"{_path(path)} {op} {seconds!r}"
    if key in ("run_id", "run_uuid"):
        if op in ("LIKE", "ILIKE"):
            raise invalid(f"{op} is not supported on {what}")
        values = value if isinstance(value, list) else [value]
        human = run_ids_to_human([str(v) for v in values]) if run_ids_to_human else []
        test = "sys/id in (" + ", ".join(_string(h) for h in human) + ")" if human else "not exists sys/id"
        return test if op in ("=", "IN") else f"not ({test})"
    raise invalid(
        f"Invalid attribute key {key!r} specified. Valid keys are "
        "['run_name', 'status', 'start_time', 'end_time', 'user_id', 'run_id']"
    )


_ORDER = re.compile(r"^\s*(?P<key>.+?)\s*(?:\s(?P<dir>ASC|DESC|asc|desc))?\s*$")


def translate_order_by(order_by: list[str]) -> list[str]:
    """MLflow ``order_by`` clauses (``metrics.acc DESC``) as Runstore sort keys (``-metrics/acc``)."""
    out = []
    for item in order_by or []:
        match = _ORDER.match(item or "")
        if not match:
            raise invalid(f"Invalid order_by clause {item!r}")
        parser = _Parser(match.group("key"))
        entity, key = parser.identifier()
        if parser.peek() is not None:
            raise invalid(f"Invalid order_by clause {item!r}")
        if entity == "attribute":
            key = _ATTRIBUTE_ALIASES.get(key, key)
            paths = {"start_time": "sys/creation_time", "run_name": "sys/name", "status": "sys/state"}
            paths["end_time"] = "mlflow/end_time"
            paths["user_id"] = "sys/owner"
            if key not in paths:
                raise invalid(f"Invalid order_by key {item!r}: ordering by attribute {key!r} is not supported")
            path = paths[key]
        elif entity == "metric":
            path = METRIC_PREFIX + key
        elif entity in ("param", "tag"):
            path = _run_field_path(entity, key)
        else:
            raise invalid(f"Invalid order_by clause {item!r}")
        descending = (match.group("dir") or "ASC").upper() == "DESC"
        out.append(("-" if descending else "") + (path if path.startswith("sys/") else f"`{path}`"))
    return out


def page_offset(token: str | None) -> int:
    """The offset in MLflow's page tokens (base64 of ``{"offset": N}``)."""
    if not token:
        return 0
    try:
        offset = json.loads(base64.b64decode(token, validate=False))["offset"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise invalid(f"Invalid page token {token[:40]!r}") from None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise invalid(f"Invalid page token {token[:40]!r}: bad offset")
    return offset


def page_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()

"""The filter language: tokenizer and recursive-descent parser.

Grammar (keywords are case-insensitive)::

    expr       := or
    or         := and ("or" and)*
    and        := unary ("and" unary)*
    unary      := "not" unary | primary
    primary    := "(" expr ")" | "exists" path | comparison | path
    comparison := path OP value | path "in" "(" value ("," value)* ")"
                | path ("contains" | "matches") value | path "starts" "with" value
                | ("inputs" | "outputs") "contains" ("artifact" | "hash") "string"
    path       := NAME (":" AGG | ":hash")?    NAME: letters, digits, _ . - / ; or `backticked`
    OP         := = | != | < | <= | > | >=
    value      := "string" | 'string' | number | true | false

A bare path is a boolean test (``not sys/failed``). Every error names the
character position (0-based) and what was expected there.

Artifact versions (``runs.artifacts``): ``inputs contains artifact "imagenet"``
(the run consumed a version of that name), ``outputs contains hash "ab12..."``
(it produced that version), ``data/train:hash = "ab12..."`` (the version the run
recorded under that field, tracked or uploaded).
"""

import re
from dataclasses import dataclass
from typing import Any

AGGREGATES = ("last", "min", "max", "avg", "count")
KEYWORDS = {"and", "or", "not", "exists", "in", "contains", "matches", "starts", "with", "true", "false"}
OPERATORS = ("<=", ">=", "!=", "=", "<", ">")


class QuerySyntaxError(ValueError):
    def __init__(self, message: str, position: int, expected: str | None = None):
        super().__init__(f"{message} at position {position}" + (f"; expected {expected}" if expected else ""))
        self.message = message
        self.position = position
        self.expected = expected


@dataclass(frozen=True)
class Token:
    kind: str  # path, string, number, op, lparen, rparen, comma, keyword, end
    text: str
    value: Any  # str for paths and strings, float for numbers, bool/None for keywords
    start: int
    end: int


@dataclass(frozen=True)
class Path:
    name: str
    aggregate: str | None
    start: int
    end: int

    def __str__(self):
        return f"{self.name}:{self.aggregate}" if self.aggregate else self.name


@dataclass(frozen=True)
class Comparison:
    path: Path
    op: str  # = != < <= > >= contains starts_with matches in
    value: Any  # a literal, or a tuple for "in"
    value_start: int


@dataclass(frozen=True)
class ArtifactTest:
    role: str  # input | output
    by: str  # artifact (a name) | hash
    value: str
    start: int


@dataclass(frozen=True)
class Exists:
    path: Path


@dataclass(frozen=True)
class Truthy:
    path: Path


@dataclass(frozen=True)
class Not:
    operand: object


@dataclass(frozen=True)
class BoolOp:
    op: str  # and | or
    operands: tuple


_NAME = re.compile(r"[A-Za-z0-9_.\-/]+")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![A-Za-z0-9_/])")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL and lone surrogates: no database stores them


def tokenize(text: str) -> list[Token]:
    bad = _UNSTORABLE.search(text)
    if bad:
        raise QuerySyntaxError(
            f"the query contains the character {bad.group()!r}, which no field can hold", bad.start()
        )
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "()":
            tokens.append(Token("lparen" if c == "(" else "rparen", c, c, i, i + 1))
            i += 1
            continue
        if c == ",":
            tokens.append(Token("comma", c, c, i, i + 1))
            i += 1
            continue
        if c == ":":
            tokens.append(Token("colon", c, c, i, i + 1))
            i += 1
            continue
        op = next((o for o in OPERATORS if text.startswith(o, i)), None)
        if op:
            tokens.append(Token("op", op, op, i, i + len(op)))
            i += len(op)
            continue
        if c in "\"'":
            j, chars = i + 1, []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    chars.append(_ESCAPES.get(text[j + 1], text[j + 1]))
                    j += 2
                else:
                    chars.append(text[j])
                    j += 1
            if j >= n:
                raise QuerySyntaxError("unterminated string", i, f"a closing {c}")
            tokens.append(Token("string", text[i : j + 1], "".join(chars), i, j + 1))
            i = j + 1
            continue
        if c == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise QuerySyntaxError("unterminated quoted path", i, "a closing `")
            if j == i + 1:
                raise QuerySyntaxError("empty quoted path", i)
            tokens.append(Token("path", text[i : j + 1], text[i + 1 : j], i, j + 1))
            i = j + 1
            continue
        number = _NUMBER.match(text, i)
        if number and (c.isdigit() or c in "+-."):
            raw = number.group()
            if len(raw) > 400:
                raise QuerySyntaxError("number has too many digits (at most 400)", i)
            value = float(raw) if any(ch in raw for ch in ".eE") else int(raw)
            tokens.append(Token("number", raw, value, i, number.end()))
            i = number.end()
            continue
        name = _NAME.match(text, i)
        if name:
            word = name.group()
            if word.lower() in KEYWORDS:
                tokens.append(Token("keyword", word, word.lower(), i, name.end()))
            else:
                tokens.append(Token("path", word, word, i, name.end()))
            i = name.end()
            continue
        raise QuerySyntaxError(f"unexpected character {c!r}", i)
    tokens.append(Token("end", "", None, n, n))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def is_keyword(self, *words) -> bool:
        return self.token.kind == "keyword" and self.token.value in words

    def fail(self, expected: str):
        token = self.token
        found = "the end of the query" if token.kind == "end" else repr(token.text)
        raise QuerySyntaxError(f"unexpected {found}", token.start, expected)

    def parse(self):
        if self.token.kind == "end":
            return None
        node = self.parse_or()
        if self.token.kind != "end":
            self.fail("'and', 'or' or the end of the query")
        return node

    def parse_or(self):
        operands = [self.parse_and()]
        while self.is_keyword("or"):
            self.advance()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else BoolOp("or", tuple(operands))

    def parse_and(self):
        operands = [self.parse_unary()]
        while self.is_keyword("and"):
            self.advance()
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else BoolOp("and", tuple(operands))

    def parse_unary(self):
        if self.is_keyword("not"):
            self.advance()
            return Not(self.parse_unary())
        return self.parse_primary()

    def parse_primary(self):
        token = self.token
        if token.kind == "lparen":
            self.advance()
            node = self.parse_or()
            if self.token.kind != "rparen":
                self.fail("')'")
            self.advance()
            return node
        if self.is_keyword("exists"):
            self.advance()
            return Exists(self.parse_path())
        if token.kind == "path":
            return self.parse_comparison()
        self.fail("a field path, 'not', 'exists' or '('")

    def parse_path(self) -> Path:
        token = self.token
        if token.kind != "path":
            self.fail("a field path")
        self.advance()
        aggregate, end = None, token.end
        if self.token.kind == "colon":
            self.advance()
            agg = self.token
            if agg.kind != "path" or agg.value not in (*AGGREGATES, "hash"):
                self.fail(f"a series aggregate ({', '.join(AGGREGATES)}) or hash")
            self.advance()
            aggregate, end = agg.value, agg.end
        return Path(token.value, aggregate, token.start, end)

    def parse_value(self):
        token = self.token
        if token.kind in ("string", "number"):
            self.advance()
            return token.value, token.start
        if self.is_keyword("true", "false"):
            self.advance()
            return token.value == "true", token.start
        self.fail('a value (a "string", a number, true or false)')

    def parse_comparison(self):
        path = self.parse_path()
        token = self.token
        if token.kind == "op":
            self.advance()
            value, start = self.parse_value()
            return Comparison(path, token.value, value, start)
        if self.is_keyword("contains", "matches"):
            self.advance()
            artifact = self._artifact_test(path, token)
            if artifact is not None:
                return artifact
            value, start = self.parse_value()
            return Comparison(path, token.value, value, start)
        if self.is_keyword("starts"):
            self.advance()
            if not self.is_keyword("with"):
                self.fail("'with' after 'starts'")
            self.advance()
            value, start = self.parse_value()
            return Comparison(path, "starts_with", value, start)
        if self.is_keyword("in"):
            self.advance()
            if self.token.kind != "lparen":
                self.fail("'(' after 'in'")
            start = self.advance().start
            values = [self.parse_value()[0]]
            while self.token.kind == "comma":
                self.advance()
                values.append(self.parse_value()[0])
            if self.token.kind != "rparen":
                self.fail("',' or ')'")
            self.advance()
            return Comparison(path, "in", tuple(values), start)
        return Truthy(path)

    def _artifact_test(self, path: Path, keyword: Token) -> ArtifactTest | None:
        """``inputs|outputs contains artifact|hash "..."``; None when ``path contains`` is a plain test."""
        word = self.token
        if keyword.value != "contains" or path.aggregate or path.name not in ("inputs", "outputs"):
            return None
        if word.kind != "path" or word.value not in ("artifact", "hash"):
            return None
        self.advance()
        if self.token.kind != "string":
            self.fail(f'the {word.value} as a "string"')
        value = self.advance()
        return ArtifactTest("input" if path.name == "inputs" else "output", word.value, value.value, path.start)


def parse(text: str):
    """Parse a query into a syntax tree (``None`` for an empty query). Raises QuerySyntaxError."""
    if len(text) > 10_000:
        raise QuerySyntaxError("query is longer than 10000 characters", 10_000)
    try:
        return _Parser(text).parse()
    except RecursionError:
        raise QuerySyntaxError("query is nested too deeply", 0) from None

"""Bounds on what one query may cost: a linear-time regular expression engine and a time budget.

``matches`` runs RE2 (``google-re2``), which matches in time linear in the
input, so no pattern can backtrack for minutes; patterns RE2 cannot run
(backreferences, lookaround) are refused when the query is compiled, on both
databases. On SQLite the ``REGEXP`` function every connection gets is RE2's.

:func:`query_budget` bounds the reads of one request to
``RUNSTORE_QUERY_TIMEOUT_MS``: on SQLite a progress handler aborts the
statement after the deadline; on PostgreSQL ``SET LOCAL statement_timeout``
inside a transaction. A read past the budget raises :class:`QueryTimeout`;
any other error the database raises for a query (one SQLite cannot compile,
a pattern PostgreSQL's engine rejects) raises :class:`QueryDatabaseError`.
"""

import functools
import math
import time
from contextlib import contextmanager

import re2
from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.backends.signals import connection_created

from tracker import db_router, metrics

from .compiler import QueryError

# SQLite calls the progress handler every this many virtual-machine instructions
_PROGRESS_STEPS = 2000
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the caller's 400, not a line on the server's stderr


class QueryTimeout(Exception):
    """A query ran past ``RUNSTORE_QUERY_TIMEOUT_MS``."""

    def __init__(self, budget_ms: int):
        super().__init__(f"the query took longer than {budget_ms} ms (RUNSTORE_QUERY_TIMEOUT_MS); narrow it and retry")
        self.budget_ms = budget_ms
        self.message = str(self)


class QueryDatabaseError(QueryError):
    """The database refused to run a query (e.g. one too large for SQLite to compile)."""

    def __init__(self, exc: Exception):
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        super().__init__(f"the database could not run this query: {detail}", 0)


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str):
    """The RE2 program for ``pattern``; raises ``re2.error`` for a pattern RE2 does not support."""
    return re2.compile(pattern, _RE2_OPTIONS)


def check_regex(pattern: str, position: int) -> None:
    """Refuse, as a query error at ``position``, a pattern the linear-time engine cannot run."""
    try:
        compile_regex(pattern)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise QueryError(
            f"invalid regular expression: {reason} (matches uses RE2 syntax: no backreferences or lookaround)",
            position,
        ) from None


def _sqlite_regexp(pattern, string):
    if pattern is None or string is None:
        return None
    return compile_regex(pattern).search(string if isinstance(string, str) else str(string)) is not None


def _register_regexp(sender, connection, **kwargs):
    if connection.vendor == "sqlite":
        # replaces Django's REGEXP (Python's backtracking ``re``)
        connection.connection.create_function("REGEXP", 2, _sqlite_regexp, deterministic=True)


connection_created.connect(_register_regexp, dispatch_uid="runs.query.budget.regexp")


def budget_ms() -> int:
    return int(getattr(settings, "RUNSTORE_QUERY_TIMEOUT_MS", 5000))


def retry_after_seconds() -> int:
    return max(1, math.ceil(budget_ms() / 1000))


def _is_timeout(exc: DatabaseError, fired: bool) -> bool:
    if fired:
        return True
    return getattr(exc.__cause__, "sqlstate", None) == "57014"  # PostgreSQL query_canceled


@contextmanager
def query_budget(using: str | None = None):
    """Run the block's database reads within ``RUNSTORE_QUERY_TIMEOUT_MS`` (0 = no limit), on the read
    replica when there is one and the client is not pinned to the primary (``tracker.db_router``;
    ``using`` forces an alias).

    Raises :class:`QueryTimeout` past the budget and :class:`QueryDatabaseError` for any other
    database error. Nested blocks share the outermost deadline.
    """
    with db_router.replica_reads(), _budget(using or db_router.read_alias()):
        yield


@contextmanager
def _budget(using: str):
    connection = connections[using]
    limit = budget_ms()
    if getattr(connection, "_runstore_query_budget", False):
        yield
        return
    if limit <= 0:
        started = time.perf_counter()
        try:
            yield
        finally:
            metrics.QUERY_SECONDS.observe(time.perf_counter() - started)
        return
    fired = False
    connection._runstore_query_budget = True  # type: ignore[attr-defined]  # a flag of ours on Django's wrapper
    started = time.perf_counter()
    try:
        if connection.vendor == "sqlite":
            connection.ensure_connection()
            raw = connection.connection
            deadline = time.monotonic() + limit / 1000

            def progress():
                nonlocal fired
                if time.monotonic() > deadline:
                    fired = True
                    return 1  # SQLite aborts the statement: OperationalError "interrupted"
                return 0

            raw.set_progress_handler(progress, _PROGRESS_STEPS)
            try:
                yield
            finally:
                raw.set_progress_handler(None, _PROGRESS_STEPS)
        elif connection.vendor == "postgresql":
            nested = connection.in_atomic_block
            with transaction.atomic(using=using):
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{limit}ms"])
                yield
                if nested:
                    # the enclosing transaction goes on: give it back its own timeout
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL statement_timeout TO DEFAULT")
        else:
            yield
    except DatabaseError as exc:
        if _is_timeout(exc, fired):
            raise QueryTimeout(limit) from None
        raise QueryDatabaseError(exc) from None
    finally:
        connection._runstore_query_budget = False  # type: ignore[attr-defined]
        metrics.QUERY_SECONDS.observe(time.perf_counter() - started)

"""Planner statistics and visibility maps of the tables the query engine reads, kept fresh by us.

A bulk write (an import, a burst of new runs and their fields) leaves PostgreSQL's statistics and
visibility map behind until autovacuum comes round, which for a large table can be many minutes
(it waits for 10-20 % of the table to change, then runs throttled). Meanwhile the planner
misjudges the new rows and every index-only scan of the query engine's
``(project, path, value, run)`` indexes fetches each row from the heap: the run table's queries
and the editor's value suggestions run about twice as slow.

:func:`maintain` closes that gap: for each query table whose changes since its last ANALYZE
(or, for the visibility map, whose inserted plus dead rows since its last VACUUM) reach
``RUNSTORE_MAINTENANCE_MIN_ROWS`` and ``RUNSTORE_MAINTENANCE_PERCENT`` % of the table, it runs
``ANALYZE`` (or ``VACUUM (ANALYZE)``) at once and unthrottled. It reads one statistics view when
nothing is due. The ``maintenance`` queue runs it ``RUNSTORE_MAINTENANCE_DELAY`` seconds after a
write that added rows to the query tables (a new run, a batch creating fields; at most one queued
per process at a time: :func:`after_bulk_write`), so an import is analyzed and vacuumed while it
is still arriving and within seconds of its last write, and every
``RUNSTORE_MAINTENANCE_INTERVAL`` seconds (``tracker.celery``) for whatever else changed them.
One run at a time across workers (an advisory lock). On SQLite, whose planner here needs no
statistics, it does nothing.
"""

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connections, transaction

logger = logging.getLogger(__name__)

# pg_try_advisory_lock key: "rsmaint" in ASCII, one maintenance pass at a time across workers
_LOCK_KEY = 0x72736D61696E74


def query_tables() -> list[str]:
    """The tables whose statistics and visibility map the query engine's plans depend on."""
    from .artifacts.models import RunArtifact
    from .models import Attribute, ProjectField, Run

    return [model._meta.db_table for model in (Run, Attribute, ProjectField, RunArtifact)]


def _threshold(rows: float) -> int:
    return max(settings.RUNSTORE_MAINTENANCE_MIN_ROWS, int(max(rows, 0) * settings.RUNSTORE_MAINTENANCE_PERCENT / 100))


def table_stats(using: str = "default") -> list[dict]:
    """Per query table: its estimated rows and the changes counted since its last ANALYZE and VACUUM
    (manual or automatic). PostgreSQL only."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.reltuples, s.n_mod_since_analyze, s.n_ins_since_vacuum, s.n_dead_tup "
            "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
            "WHERE s.relid = ANY(ARRAY(SELECT to_regclass(t) FROM unnest(%s::text[]) t))",
            [query_tables()],
        )
        rows = cursor.fetchall()
    return [
        {"table": name, "rows": rows_, "changed": changed, "unvacuumed": inserted + dead}
        for name, rows_, changed, inserted, dead in rows
    ]


def due(stats: list[dict]) -> dict[str, str]:
    """table -> "vacuum" or "analyze", for the tables whose changes reached the threshold."""
    out = {}
    for entry in stats:
        threshold = _threshold(entry["rows"])
        if entry["unvacuumed"] >= threshold:
            out[entry["table"]] = "vacuum"
        elif entry["changed"] >= threshold:
            out[entry["table"]] = "analyze"
    return out


def maintain(using: str = "default", *, wait: bool = False) -> dict[str, str]:
    """ANALYZE, or VACUUM (ANALYZE) where the visibility map has fallen behind, the query tables
    that bulk writes changed past the threshold; returns what was done per table ({} when nothing
    was due, on SQLite, or while another worker is at it). With ``wait`` (a check queued by a write,
    which must see that write) it waits for another worker's pass to end instead, then checks.
    Inside a transaction (where VACUUM cannot run) a table due for a vacuum is only analyzed."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return {}
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_lock(%s)", [_LOCK_KEY])
        else:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK_KEY])
            if not cursor.fetchone()[0]:
                return {}
    try:
        _flush_own_stats(connection)
        work = due(table_stats(using))
        done = {}
        for table, what in work.items():
            if what == "vacuum" and connection.in_atomic_block:
                what = "analyze"
            statement = "VACUUM (ANALYZE)" if what == "vacuum" else "ANALYZE"
            with connection.cursor() as cursor:
                cursor.execute(f"{statement} {connection.ops.quote_name(table)}")
            done[table] = what
        if done:
            logger.info("query tables maintained: %s", done)
        return done
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])


def _flush_own_stats(connection) -> None:
    """Counts this connection wrote itself reach the statistics views (at its next idle moment, so
    before our next statement), and a statistics snapshot cached by the transaction is dropped."""
    statements = ["SELECT pg_stat_clear_snapshot()"]
    if not connection.in_atomic_block:
        statements.insert(0, "SELECT pg_stat_force_next_flush()")
    for sql in statements:
        try:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(sql)
        except DatabaseError:  # a role without the right: the counts arrive a few seconds later
            logger.debug("%s refused", sql)


def after_bulk_write(using: str = "default") -> None:
    """A write added rows to the query tables (a new run, a batch creating fields): once it commits,
    a maintenance check is queued ``RUNSTORE_MAINTENANCE_DELAY`` seconds later unless one this
    process queued is still to come. So a stream of writes queues one check per delay per web
    process (each reads one statistics view unless the threshold is reached), and an import's last
    write is followed by a check within the delay, not at the next beat. No statement is added to
    the write: its counts reach the statistics view when its connection next reports (within a
    second while writes stream; the VACUUM a check starts covers every committed row anyway)."""
    delay = settings.RUNSTORE_MAINTENANCE_DELAY
    if not delay or connections[using].vendor != "postgresql":
        return
    transaction.on_commit(lambda: _after_commit(delay), using=using, robust=True)


# when the check this process queued last runs (time.time()): later writes before it need no other
_queued_for = 0.0
_queued_lock = threading.Lock()


def _after_commit(delay: float) -> None:
    global _queued_for
    now = time.time()
    with _queued_lock:
        if _queued_for > now:
            return
        _queued_for = now + delay
    from .tasks import maintain_query_tables

    maintain_query_tables.apply_async(kwargs={"after_write": True}, countdown=delay)

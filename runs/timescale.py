"""TimescaleDB detection: ``RUNSTORE_TIMESCALEDB=auto|required|off``.

The migration ``runs.0002_timescaledb`` turns the float-point table into a
hypertable when TimescaleDB is available (auto) or demanded (required). Each
process logs once which storage the series use.
"""

import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.backends.signals import connection_created

logger = logging.getLogger("runstore.timescaledb")
CHUNK_STEPS = 1_000_000
_logged = False


def extension_available(cursor) -> bool:
    cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    return cursor.fetchone() is not None


def installed_version(cursor) -> str | None:
    cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    row = cursor.fetchone()
    return row[0] if row else None


def is_hypertable(cursor, table: str) -> bool:
    if installed_version(cursor) is None:
        return False
    cursor.execute("SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = %s", [table])
    return cursor.fetchone() is not None


def timescale_status() -> str:
    if connection.vendor != "postgresql":
        return f"not in use ({connection.vendor}: series in ordinary indexed tables)"
    with connection.cursor() as cursor:
        version = installed_version(cursor)
        if version and is_hypertable(cursor, "runs_floatpoint"):
            return f"in use: TimescaleDB {version}, runs_floatpoint is a hypertable"
    mode = settings.RUNSTORE_TIMESCALEDB
    return f"not in use (RUNSTORE_TIMESCALEDB={mode}): series in ordinary indexed tables"


def _log_once(sender, connection, **kwargs):
    global _logged
    if _logged or connection.vendor != "postgresql":
        return
    _logged = True
    try:
        with connection.cursor() as cursor:
            version = installed_version(cursor)
            hyper = version is not None and is_hypertable(cursor, "runs_floatpoint")
    except Exception as exc:  # tables may not exist before the first migrate
        logger.info("TimescaleDB status unknown yet: %s", exc)
        return
    if hyper:
        logger.info("TimescaleDB %s in use: float series are stored in a hypertable", version)
    elif settings.RUNSTORE_TIMESCALEDB == "required":
        logger.error("RUNSTORE_TIMESCALEDB=required but runs_floatpoint is not a hypertable yet; run migrate")
    else:
        logger.info(
            "TimescaleDB not in use (RUNSTORE_TIMESCALEDB=%s): plain PostgreSQL tables", settings.RUNSTORE_TIMESCALEDB
        )


connection_created.connect(_log_once)


def create_hypertable(schema_editor) -> None:
    """Migration step: make runs_floatpoint a hypertable when TimescaleDB is there (or required)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    mode = settings.RUNSTORE_TIMESCALEDB
    if mode == "off":
        logger.info("RUNSTORE_TIMESCALEDB=off: runs_floatpoint stays an ordinary table")
        return
    with schema_editor.connection.cursor() as cursor:
        if not extension_available(cursor):
            if mode == "required":
                raise ImproperlyConfigured(
                    "RUNSTORE_TIMESCALEDB=required but the timescaledb extension is not installed"
                )
            logger.info("TimescaleDB is not available on this server: runs_floatpoint stays an ordinary table")
            return
        cursor.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        cursor.execute(
            # The primary key (series_id, step) serves every read; TimescaleDB's default
            # step index would only slow down COPY (measured: bench/pg_variants.py).
            "SELECT create_hypertable('runs_floatpoint', by_range('step', %s::bigint), "
            "if_not_exists => TRUE, migrate_data => TRUE, create_default_indexes => FALSE)",
            [CHUNK_STEPS],
        )
        logger.info("runs_floatpoint is now a TimescaleDB hypertable (chunks of %s steps)", CHUNK_STEPS)


BLOCK_CHUNK_STEPS = 100_000_000  # a block covers thousands of steps: fewer, larger chunks than the point table


def create_block_hypertables(schema_editor) -> None:
    """Migration step: make the packed-block tables hypertables on ``first_step`` under the same
    rules as :func:`create_hypertable` (their primary key (series_id, first_step) serves every read)."""
    if schema_editor.connection.vendor != "postgresql" or settings.RUNSTORE_TIMESCALEDB == "off":
        return
    with schema_editor.connection.cursor() as cursor:
        if not extension_available(cursor):
            if settings.RUNSTORE_TIMESCALEDB == "required":
                raise ImproperlyConfigured(
                    "RUNSTORE_TIMESCALEDB=required but the timescaledb extension is not installed"
                )
            return
        cursor.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        for table in ("runs_floatblock", "runs_stringblock"):
            cursor.execute(
                f"SELECT create_hypertable('{table}', by_range('first_step', %s::bigint), "
                "if_not_exists => TRUE, migrate_data => TRUE, create_default_indexes => FALSE)",
                [BLOCK_CHUNK_STEPS],
            )
            logger.info("%s is now a TimescaleDB hypertable (chunks of %s steps)", table, BLOCK_CHUNK_STEPS)

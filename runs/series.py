"""The series store: bulk point writes and bucketed reads, on PostgreSQL and SQLite.

Points are written with COPY on PostgreSQL and ``executemany`` on SQLite,
never one INSERT per point. Reads return columns (lists), not row objects.
"""

import math

import numpy as np
from django.db import connection, connections

from tracker import db_router

from . import rollups

FLOAT_TABLE = "runs_floatpoint"
STRING_TABLE = "runs_stringpoint"
MAX_BUCKETS = 10_000
# Ranges holding at most this many points are bucketed from raw points, exactly
# on the requested grid; larger ones come from the roll-ups (runs.rollups).
RAW_READ_POINTS = 20_000
NAN = math.nan


# One row of PostgreSQL's binary COPY format for (series_id int8, step int8, timestamp float8,
# value float8): a field count, then a length and a big-endian value per field.
_COPY_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("series_len", ">i4"),
        ("series_id", ">i8"),
        ("step_len", ">i4"),
        ("step", ">i8"),
        ("timestamp_len", ">i4"),
        ("timestamp", ">f8"),
        ("value_len", ">i4"),
        ("value", ">f8"),
    ]
)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, no header extension
_COPY_TRAILER = b"\xff\xff"


def _rows(chunks):
    for series_id, steps, timestamps, values in chunks:
        yield from zip([series_id] * len(values), steps, timestamps, values, strict=True)


def _column(items, dtype):
    if isinstance(items, range):
        return np.arange(items.start, items.stop, items.step, dtype=dtype)
    return np.asarray(items, dtype=dtype)


def _binary_float_rows(chunks) -> bytes:
    """The COPY payload for float points, packed column by column (no per-row Python)."""
    parts = [_COPY_HEADER]
    for series_id, steps, timestamps, values in chunks:
        rows = np.empty(len(values), _COPY_ROW)
        rows["fields"] = 4
        for name in ("series_len", "step_len", "timestamp_len", "value_len"):
            rows[name] = 8
        rows["series_id"] = series_id
        rows["step"] = _column(steps, np.int64)
        rows["timestamp"] = _column(timestamps, np.float64)
        rows["value"] = _column(values, np.float64)
        parts.append(rows.tobytes())
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def _insert(table: str, chunks, write_copy) -> None:
    """COPY on PostgreSQL (``write_copy(copy, chunks)`` fills it), ``executemany`` on SQLite."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(
                f"COPY {table} (series_id, step, timestamp, value) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                write_copy(copy, chunks)
        else:
            cursor.executemany(
                f"INSERT INTO {table} (series_id, step, timestamp, value) VALUES (%s, %s, %s, %s)", list(_rows(chunks))
            )


def _write_packed_floats(copy, chunks) -> None:
    copy.write(_binary_float_rows(chunks))


def _write_string_rows(copy, chunks) -> None:
    copy.set_types(["int8", "int8", "float8", "text"])
    for row in _rows(chunks):
        copy.write_row(row)


def insert_float_points(chunks) -> None:
    """``chunks``: iterable of ``(series_id, steps, timestamps, values)`` column lists (or ranges).

    On PostgreSQL the rows go as one pre-packed binary COPY buffer.
    """
    _insert(FLOAT_TABLE, chunks, _write_packed_floats)


def insert_string_points(chunks) -> None:
    _insert(STRING_TABLE, chunks, _write_string_rows)


def delete_points(series_ids: list[int]) -> None:
    if not series_ids:
        return
    marks = ", ".join(["%s"] * len(series_ids))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Waits for a roll-up task still writing these series (it holds a key-share lock).
            cursor.execute(f"SELECT id FROM runs_attribute WHERE id IN ({marks}) FOR UPDATE", series_ids)
        rollups.delete(cursor, marks, series_ids)
        for table in (FLOAT_TABLE, STRING_TABLE):
            cursor.execute(f"DELETE FROM {table} WHERE series_id IN ({marks})", series_ids)


def _float(value):
    return NAN if value is None else value


def _reader():
    """The connection chart reads use: the read replica when there is one (tracker/db_router.py)."""
    return connections[db_router.read_alias()]


def read_points(series_id: int, table: str, *, after_step=None, from_step=None, to_step=None, limit=1000) -> dict:
    """Raw points in step order, as columns; page with ``after_step``."""
    where, params = ["series_id = %s"], [series_id]
    if after_step is not None:
        where.append("step > %s")
        params.append(after_step)
    if from_step is not None:
        where.append("step >= %s")
        params.append(from_step)
    if to_step is not None:
        where.append("step <= %s")
        params.append(to_step)
    with _reader().cursor() as cursor:
        cursor.execute(
            f"SELECT step, timestamp, value FROM {table} WHERE {' AND '.join(where)} ORDER BY step LIMIT %s",
            [*params, limit + 1],
        )
        rows = cursor.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    values = [r[2] for r in rows]
    if table == FLOAT_TABLE:
        values = [_float(v) for v in values]
    return {
        "steps": [r[0] for r in rows],
        "timestamps": [r[1] for r in rows],
        "values": values,
        "next_after_step": rows[-1][0] if more else None,
    }


def downsample(
    series_id: int,
    first_step: int,
    last_step: int,
    buckets: int,
    from_step=None,
    to_step=None,
    *,
    raw_read_points: int = RAW_READ_POINTS,
) -> dict:
    """Cut ``[from_step, to_step]`` into at most ``buckets`` equal step ranges; aggregate each.

    Every bucket reports the first and last step it holds, min/max/avg of its
    values (NaN excluded; avg also excludes ±Inf), its last value and its point
    count. Empty buckets are left out. ``steps`` are bucket starts (the first
    one clipped to ``from_step``).

    A range of up to ``raw_read_points`` points is bucketed from raw points,
    ``bucket_width = ceil(range / buckets)`` from ``from_step``. A larger one is
    read from the roll-ups: the grid then aligns to the roll-up level used
    (``bucket_width`` a multiple of its width, at most 1.5x the exact width),
    and the newest steps not rolled up yet are read raw, so nothing is stale.
    """
    lo = first_step if from_step is None else max(from_step, first_step)
    hi = last_step if to_step is None else min(to_step, last_step)
    empty: dict[str, list] = {
        k: [] for k in ("steps", "first_steps", "last_steps", "min", "max", "avg", "last", "counts")
    }
    if lo is None or hi is None or lo > hi:
        return {**empty, "bucket_width": None, "from_step": lo, "to_step": hi}
    if hi - lo + 1 > raw_read_points:
        with _reader().cursor() as cursor:
            cursor.execute("SELECT count FROM runs_attribute WHERE id = %s", [series_id])
            row = cursor.fetchone()
        count = row[0] if row else 0
        estimate = count * (hi - lo + 1) / max(1, last_step - first_step + 1)
        chosen = rollups.plan(lo, hi, buckets) if estimate > raw_read_points else None
        if chosen is not None:
            return rollups.read(series_id, lo, hi, *chosen)
    return _downsample_raw(series_id, lo, hi, buckets)


def _downsample_raw(series_id: int, lo: int, hi: int, buckets: int) -> dict:
    width = max(1, -(-(hi - lo + 1) // buckets))
    if connection.vendor == "postgresql":
        finite = "value <> 'NaN'::float8 AND value <> 'Infinity'::float8 AND value <> '-Infinity'::float8"
        not_nan = "value <> 'NaN'::float8"
        agg = (
            f"min(value) FILTER (WHERE {not_nan}), max(value) FILTER (WHERE {not_nan}), "
            f"avg(value) FILTER (WHERE {finite})"
        )
    else:
        # SQLite stores NaN as NULL, which its aggregates skip already.
        agg = "min(value), max(value), avg(CASE WHEN value IN (9e999, -9e999) THEN NULL ELSE value END)"
    # The last value of each bucket by a primary-key look-up per bucket: the planner cannot
    # estimate the number of groups, and a join picks a hash join over the whole series.
    sql = f"""
        WITH b AS (
            SELECT (step - %s) / %s AS bucket, min(step) AS s0, max(step) AS s1, count(*) AS n,
                   {agg}
            FROM {FLOAT_TABLE}
            WHERE series_id = %s AND step >= %s AND step <= %s
            GROUP BY 1
        )
        SELECT b.*, (SELECT p.value FROM {FLOAT_TABLE} p WHERE p.series_id = %s AND p.step = b.s1)
        FROM b ORDER BY b.bucket
    """
    with _reader().cursor() as cursor:
        cursor.execute(sql, [lo, width, series_id, lo, hi, series_id])
        rows = cursor.fetchall()
    return {
        "bucket_width": width,
        "from_step": lo,
        "to_step": hi,
        "steps": [lo + r[0] * width for r in rows],
        "first_steps": [r[1] for r in rows],
        "last_steps": [r[2] for r in rows],
        "counts": [r[3] for r in rows],
        "min": [_float(r[4]) for r in rows],
        "max": [_float(r[5]) for r in rows],
        "avg": [_float(r[6]) for r in rows],
        "last": [_float(r[7]) for r in rows],
    }


def step_times(series_id: int, steps: list[int]) -> list[float | None]:
    """The wall-clock time of each of ``steps`` of a float series (None for a step it lacks)."""
    found: dict[int, float] = {}
    with _reader().cursor() as cursor:
        for start in range(0, len(steps), 900):
            chunk = steps[start : start + 900]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                f"SELECT step, timestamp FROM {FLOAT_TABLE} WHERE series_id = %s AND step IN ({marks})",
                [series_id, *chunk],
            )
            found.update(cursor.fetchall())
    return [found.get(s) for s in steps]

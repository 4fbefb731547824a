"""The series store: bulk point writes and bucketed reads, on PostgreSQL and SQLite.

Points live in packed blocks of ``blocks.block_points()`` points plus each series' open tail of
rows (runs.blocks, docs/series-blocks.md). A write packs the full blocks its points complete in
its own transaction; the rest go in as rows, with COPY on PostgreSQL and ``executemany`` on
SQLite, never one INSERT per point. Reads decode the blocks that overlap the range with numpy
and return columns (lists), not row objects.
"""

import logging
import math

import numpy as np
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

from tracker import db_router

from . import blocks, rollups

FLOAT_TABLE = blocks.FLOAT_TABLE
STRING_TABLE = blocks.STRING_TABLE
ALL_COLUMNS = ("steps", "timestamps", "values")
logger = logging.getLogger("runstore.series")
MAX_BUCKETS = 10_000
# Ranges holding at most this many points are bucketed from raw points, exactly
# on the requested grid; larger ones come from the roll-ups (runs.rollups).
RAW_READ_POINTS = 20_000
NAN = math.nan
_PACK_LOCK_CLASS = 0x5041  # first key of the advisory locks that let one writer at a time pack a series' tail


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


def _plain(column) -> list:
    return column.tolist() if isinstance(column, np.ndarray) else list(column)


def _rows(chunks):
    for series_id, steps, timestamps, values in chunks:
        yield from zip([series_id] * len(values), _plain(steps), _plain(timestamps), _plain(values), strict=True)


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
    """``chunks``: iterable of ``(series_id, steps, timestamps, values)`` columns (lists, ranges or
    numpy arrays), each series' steps after those it holds.

    A series whose tail reaches ``block_points()`` points with these has its full blocks packed here,
    in the caller's transaction; the remainder goes in as rows (on PostgreSQL one pre-packed
    binary COPY buffer).
    """
    _write(FLOAT_TABLE, chunks, _write_packed_floats)


def insert_string_points(chunks) -> None:
    _write(STRING_TABLE, chunks, _write_string_rows)


def _merged(chunks, floats: bool) -> dict:
    """``{series id: Points}``, the chunks of each series concatenated in order."""
    parts: dict[int, list] = {}
    for series_id, steps, timestamps, values in chunks:
        if not len(values):
            continue
        column = _column(values, np.float64) if floats else _plain(values)
        parts.setdefault(series_id, []).append(
            blocks.Points(_column(steps, np.int64), _column(timestamps, np.float64), column)
        )
    return {
        sid: items[0] if len(items) == 1 else blocks._concat(items, floats, ALL_COLUMNS) for sid, items in parts.items()
    }


def _due(cursor, merged: dict) -> list[int]:
    """The series whose tail fills a block with this write. The tail length is the series' point
    count modulo the block size (every block is full); the attribute's count already includes
    this write (runs.ingest updates it first). A wrong guess costs a tail read, never a point."""
    size = blocks.block_points()
    big = [sid for sid, points in merged.items() if len(points) >= size]
    small = [sid for sid in merged if len(merged[sid]) < size]
    if not small:
        return big
    cursor.execute(f"SELECT id, count FROM runs_attribute WHERE id IN ({', '.join(['%s'] * len(small))})", small)
    counts = dict(cursor.fetchall())
    return big + [sid for sid in small if ((counts.get(sid) or 0) - len(merged[sid])) % size + len(merged[sid]) >= size]


def _write(table: str, chunks, write_copy) -> None:
    floats = table == FLOAT_TABLE
    merged = _merged(chunks, floats)
    if not merged:
        return
    size = blocks.block_points()
    with connection.cursor() as cursor:
        if floats:
            # Float series filled by small appends are packed by their roll-up task (pack_series),
            # off the request: packing a client's 20 series in one batch took its request seconds.
            # Only a write of a block or more packs here, which needs no look-up of the counts.
            due = [sid for sid, points in merged.items() if len(points) >= size]
        else:
            due = _due(cursor, merged)
        if due:
            marks = ", ".join(["%s"] * len(due))
            _lock_packing(cursor, due)
            cursor.execute(
                f"SELECT series_id, step, timestamp, value FROM {table} WHERE series_id IN ({marks}) "
                "ORDER BY series_id, step",
                due,
            )
            tails: dict[int, list] = {}
            for row in cursor.fetchall():
                tails.setdefault(row[0], []).append(row[1:])
            cursor.execute(f"DELETE FROM {table} WHERE series_id IN ({marks})", due)
            rows = []
            for sid in due:
                points = merged[sid]
                if sid in tails:
                    points = blocks._concat(
                        [blocks._tail_points(tails[sid], floats, ALL_COLUMNS), points], floats, ALL_COLUMNS
                    )
                full = len(points) // size * size
                for start in range(0, full, size):
                    part = points.take(slice(start, start + size))
                    rows.append(blocks.block_row(table, sid, part.steps, part.timestamps, part.values))
                merged[sid] = points.take(slice(full, None))
            blocks.insert_blocks(cursor, table, rows)
    rest = [(sid, p.steps, p.timestamps, p.values) for sid, p in merged.items() if len(p)]
    if rest:
        _insert(table, rest, write_copy)


def pack_series(
    series_id: int, table: str = FLOAT_TABLE, *, using: str = DEFAULT_DB_ALIAS, batch_blocks: int = 64
) -> int:
    """Pack the full blocks' worth of ``series_id``'s rows into blocks; returns the points packed.

    One transaction per ``batch_blocks`` blocks. Run by the roll-up task for float series that small
    appends filled (insert_float_points leaves those rows to it) and by :func:`pack_existing`.
    """
    conn = connections[using]
    size = blocks.block_points()
    floats = table == FLOAT_TABLE
    packed = 0
    while True:
        with conn.cursor() as cursor:
            # Most calls find less than a block: an index probe answers that without the row lock
            # (which a batch appending to the series would wait for) and without reading the rows.
            cursor.execute(
                f"SELECT 1 FROM {table} WHERE series_id = %s ORDER BY step LIMIT 1 OFFSET %s", [series_id, size - 1]
            )
            if cursor.fetchone() is None:
                return packed
        with transaction.atomic(using=using), conn.cursor() as cursor:
            if conn.vendor == "postgresql":
                # The key-share lock keeps the series from being deleted meanwhile without making the
                # batches that append to it wait (they update its row: that waited for the whole pack,
                # and the pack for each batch); a write that packs its own blocks takes the same
                # advisory lock, so one of the two packs the tail, then the other.
                cursor.execute("SELECT id FROM runs_attribute WHERE id = %s FOR KEY SHARE", [series_id])
                if cursor.fetchone() is None:
                    return packed
                _lock_packing(cursor, [series_id])
            cursor.execute(
                f"SELECT step, timestamp, value FROM {table} WHERE series_id = %s ORDER BY step LIMIT %s",
                [series_id, size * batch_blocks],
            )
            found = cursor.fetchall()
            full = len(found) // size * size
            if full:
                points = blocks._tail_points(found[:full], floats, ALL_COLUMNS)
                rows = []
                for start in range(0, full, size):
                    part = points.take(slice(start, start + size))
                    rows.append(blocks.block_row(table, series_id, part.steps, part.timestamps, part.values))
                blocks.insert_blocks(cursor, table, rows)
                cursor.execute(
                    f"DELETE FROM {table} WHERE series_id = %s AND step <= %s", [series_id, int(points.steps[-1])]
                )
                packed += full
        if len(found) < size * batch_blocks:
            return packed


def _lock_packing(cursor, series_ids: list[int]) -> None:
    """Wait until no other transaction packs these series' tails (PostgreSQL; SQLite writes one at a
    time), taking the locks in series order so two writers never wait for each other in a cycle."""
    if cursor.db.vendor != "postgresql":
        return
    cursor.execute(
        "SELECT pg_advisory_xact_lock(%s, (s.id %% 2147483648)::int) FROM unnest(%s::bigint[]) AS s(id)",
        [_PACK_LOCK_CLASS, sorted(series_ids)],
    )
    cursor.fetchall()


def pack_many(series_ids: list[int], table: str = FLOAT_TABLE) -> int:
    """:func:`pack_series` for each of ``series_ids`` whose tail may hold a block's worth of rows.

    One statement picks them without reading a tail: steps only grow, so a tail holds at most as
    many rows as there are steps after the last block (or from the first step), an index probe of
    the block table per series. Most roll-up tasks find none (asking each series' tail with an
    OFFSET probe walked a block's worth of index entries each, 1 ms a series); pack_series checks
    the few picked exactly.
    """
    if not series_ids:
        return 0
    size = blocks.block_points()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT a.id FROM runs_attribute a WHERE a.id IN ({', '.join(['%s'] * len(series_ids))}) "
            "AND a.last_step - COALESCE((SELECT b.last_step FROM "
            f"{blocks.BLOCK_TABLE[table]} b WHERE b.series_id = a.id ORDER BY b.first_step DESC LIMIT 1), "
            "a.first_step - 1) >= %s ORDER BY a.id",
            [*series_ids, size],
        )
        due = [row[0] for row in cursor.fetchall()]
    return sum(pack_series(sid, table) for sid in due)


def pack_existing(*, using: str = DEFAULT_DB_ALIAS, batch_blocks: int = 64) -> dict:
    """Pack the points stored as rows into blocks, leaving each series fewer than block_points() rows
    (the conversion of the row layout: migration runs.0015 and ``manage.py pack_series``).

    One transaction per ``batch_blocks`` blocks of a series, so an interrupted run loses nothing
    and a rerun carries on; a series with nothing to pack costs only the first grouped count.
    Returns ``{table: points packed}`` and logs progress.
    """
    conn = connections[using]
    size = blocks.block_points()
    done = {}
    for table in (FLOAT_TABLE, STRING_TABLE):
        with conn.cursor() as cursor:
            cursor.execute(
                f"SELECT series_id, count(*) FROM {table} GROUP BY series_id HAVING count(*) >= %s ORDER BY series_id",
                [size],
            )
            todo = cursor.fetchall()
        total = sum(count for _, count in todo)
        packed = 0
        if todo:
            logger.info("packing %s points of %s series from %s into blocks", total, len(todo), table)
        for i, (sid, _count) in enumerate(todo, 1):
            packed += pack_series(sid, table, using=using, batch_blocks=batch_blocks)
            if i % 100 == 0 or i == len(todo):
                logger.info("%s: %s of %s series packed (%s of %s points)", table, i, len(todo), packed, total)
        done[table] = packed
    return done


def delete_points(series_ids: list[int]) -> None:
    if not series_ids:
        return
    marks = ", ".join(["%s"] * len(series_ids))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Waits for a roll-up task still writing these series (it holds a key-share lock).
            cursor.execute(f"SELECT id FROM runs_attribute WHERE id IN ({marks}) FOR UPDATE", series_ids)
        rollups.delete(cursor, marks, series_ids)
        for table in (FLOAT_TABLE, STRING_TABLE, blocks.FLOAT_BLOCKS, blocks.STRING_BLOCKS):
            cursor.execute(f"DELETE FROM {table} WHERE series_id IN ({marks})", series_ids)


def _float(value):
    return NAN if value is None else value


def _reader():
    """The connection chart reads use: the read replica when there is one (tracker/db_router.py)."""
    return connections[db_router.read_alias()]


def read_points(series_id: int, table: str, *, after_step=None, from_step=None, to_step=None, limit=1000) -> dict:
    """Raw points in step order, as columns; page with ``after_step``."""
    lo = from_step
    if after_step is not None:
        lo = after_step + 1 if lo is None else max(lo, after_step + 1)
    with _reader().cursor() as cursor:
        points = blocks.load_first(cursor, table, series_id, lo, to_step, limit + 1)
    more = len(points) > limit
    points = points.take(slice(0, limit))
    steps = points.steps.tolist()
    values = points.values.tolist() if table == FLOAT_TABLE else points.values
    return {
        "steps": steps,
        "timestamps": points.timestamps.tolist(),
        "values": values,
        "next_after_step": steps[-1] if more else None,
    }


def read_last_points(series_id: int, table: str, limit: int, contains: str | None = None) -> list[tuple]:
    """The last ``limit`` points of a series as ``(step, value)``, oldest first; with ``contains``,
    the last ``limit`` string points whose value holds it (case-insensitive)."""
    with _reader().cursor() as cursor:
        if not contains:
            points = blocks.load_last(cursor, table, series_id, limit)
        else:
            found = blocks.load(cursor, table, [series_id], want=("steps", "values"))[series_id]
            needle = contains.casefold()
            hits = [i for i, value in enumerate(found.values) if needle in value.casefold()]
            points = found.take(np.array(hits[-limit:], np.intp))
    values = points.values.tolist() if table == FLOAT_TABLE else points.values
    return list(zip(points.steps.tolist(), values, strict=True))


def update_float_point(series_id: int, step: int, value: float, timestamp: float) -> bool:
    """Replace the value and time of a stored point, in its row or in its block; False if absent."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {FLOAT_TABLE} SET value = %s, timestamp = %s WHERE series_id = %s AND step = %s",
            [value, timestamp, series_id, step],
        )
        if cursor.rowcount:
            return True
        cursor.execute(
            f"SELECT first_step, count, step_data, time_data, value_data FROM {blocks.FLOAT_BLOCKS} "
            "WHERE series_id = %s AND first_step <= %s AND last_step >= %s",
            [series_id, step, step],
        )
        row = cursor.fetchone()
        if row is None:
            return False
        first, count, step_data, time_data, value_data = row
        hit = np.flatnonzero(blocks.decode(step_data, count) == step)
        if not len(hit):
            return False
        times, values = blocks.decode_times(time_data, count).copy(), blocks.decode(value_data, count).copy()
        times[hit], values[hit] = timestamp, value
        cursor.execute(
            f"UPDATE {blocks.FLOAT_BLOCKS} SET time_data = %s, value_data = %s WHERE series_id = %s AND first_step = %s",
            [blocks.encode_times(times), blocks.encode_floats(values), series_id, first],
        )
        return True


def string_bytes(series_sql: str, params: list) -> int:
    """The UTF-8 size of the values of the string series ``series_sql`` selects (ids)."""
    length = "octet_length(value)" if connection.vendor == "postgresql" else "length(CAST(value AS BLOB))"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT COALESCE(SUM({length}), 0) FROM {STRING_TABLE} WHERE series_id IN ({series_sql})), "
            f"(SELECT COALESCE(SUM(value_bytes), 0) FROM {blocks.STRING_BLOCKS} WHERE series_id IN ({series_sql}))",
            [*params, *params],
        )
        rows, packed = cursor.fetchone()
    return int(rows) + int(packed)


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
    with _reader().cursor() as cursor:
        points = blocks.load(cursor, FLOAT_TABLE, [series_id], lo, hi, want=("steps", "values"))[series_id]
    stats = blocks.bucket_stats(points.steps, points.values, lo, width)
    finite = stats["finite"]
    avg = np.divide(stats["sum"], finite, out=np.full(len(finite), NAN), where=finite > 0)
    return {
        "bucket_width": width,
        "from_step": lo,
        "to_step": hi,
        "steps": (lo + stats["key"] * width).tolist(),
        "first_steps": stats["first"].tolist(),
        "last_steps": stats["last"].tolist(),
        "counts": stats["count"].tolist(),
        "min": stats["min"].tolist(),
        "max": stats["max"].tolist(),
        "avg": avg.tolist(),
        "last": stats["last_value"].tolist(),
    }


def step_times(series_id: int, steps: list[int]) -> list[float | None]:
    """The wall-clock time of each of ``steps`` of a float series (None for a step it lacks)."""
    with _reader().cursor() as cursor:
        found = blocks.times_at(cursor, {series_id: list(steps)})[series_id]
    return [found.get(s) for s in steps]

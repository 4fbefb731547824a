"""Multi-resolution roll-ups of float series, and the reads that use them.

Level ``l`` cuts a series into buckets of ``width(l) = 16 * 4**l`` steps; bucket
``k`` covers steps ``[k * W, (k + 1) * W)`` and stores min, max (NaN left out),
sum and count of finite values, point count, first/last step and the last
value (table ``runs_seriesrollup``).

Writing. Steps only grow within a series, so a bucket is final once the series
has a point at or after its end. :func:`roll_up` (run through :func:`roll_up_many`,
all the series of a task together, by the ``ingest``-queue task
``runs.tasks.rollup_series`` after each batch that closes a finest-level
bucket, and by a periodic sweep) writes the buckets that became final below
``rolled_until`` — a multiple of the finest width kept in ``runs_rollupcursor``
— level 0 from raw points, each coarser level from the one below, and moves
the cursor in the same transaction. Every bucket row is written once and never
updated, so roll-ups add about 1/12 row per point and nothing per batch for
a bucket that stays open, whatever the number of series in a batch. A task run
twice or killed half way leaves nothing that a rerun does not finish: rows are
inserted with ``ON CONFLICT DO NOTHING`` and the cursor moves with them.

Reading. :func:`read` picks the coarsest level whose width still gives the
requested number of buckets (within 1.5x of the requested bucket width), cuts
the range into aligned blocks of that level, finer levels at the edges, and
raw points for what is left: the partial edges and the newest steps not rolled
up yet. A chart of a live run is therefore never stale, and a read of a
10,000,000-point series at 1,000 buckets touches at most ~5,400 rows.

Why a task and a cursor rather than upserting open buckets inline with every
batch: a batch that appends one point to each of 1,000 series would otherwise
upsert 17,000 roll-up rows; here the same batch writes none.
"""

import math

from django.db import connection, connections, transaction

from tracker import db_router

from . import blocks

BASE = 16
FACTOR = 4
LEVELS = 17  # the coarsest bucket is 16 * 4**16 ≈ 6.9e10 steps
ROLLUP_TABLE = "runs_seriesrollup"
CURSOR_TABLE = "runs_rollupcursor"
POINT_TABLE = "runs_floatpoint"
MAX_WIDTH_STRETCH = 1.5
_LOCK_CLASS = 0x5255  # first key of the roll-up advisory locks (the second is the series)


def chunk_points() -> int:
    """Points rolled up per transaction (RUNSTORE_ROLLUP_CHUNK_POINTS)."""
    from django.conf import settings

    return settings.RUNSTORE_ROLLUP_CHUNK_POINTS


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def width(level: int) -> int:
    return BASE * FACTOR**level


def _raw_aggregates() -> tuple[str, str, str, str]:
    """SQL for min, max (NaN left out), sum and count of finite values over ``value``."""
    if connection.vendor == "postgresql":
        not_nan = "value <> 'NaN'::float8"
        finite = "value <> 'NaN'::float8 AND value <> 'Infinity'::float8 AND value <> '-Infinity'::float8"
        return (
            f"min(value) FILTER (WHERE {not_nan})",
            f"max(value) FILTER (WHERE {not_nan})",
            f"sum(value) FILTER (WHERE {finite})",
            f"count(*) FILTER (WHERE {finite})",
        )
    # SQLite stores NaN as NULL, which its aggregates skip.
    finite = "CASE WHEN value IN (9e999, -9e999) THEN NULL ELSE value END"
    return "min(value)", "max(value)", f"sum({finite})", f"count({finite})"


# --- writing ---------------------------------------------------------------


def closed_until(last_step: int | None) -> int:
    """Steps below this are final for a series whose last step is ``last_step``."""
    return 0 if last_step is None else (last_step + 1) // BASE * BASE


def needs_roll_up(previous_last_step: int | None, new_last_step: int) -> bool:
    """Whether an append moving the last step from ``previous`` to ``new`` closed a finest bucket."""
    return closed_until(new_last_step) > closed_until(previous_last_step)


def _insert_level0(cursor, series_ids: list[int], start: int, stop: int) -> None:
    """The finest buckets of ``[start, stop)`` of these series, aggregated with numpy from the
    decoded points: one read and one INSERT for all of them."""
    loaded = blocks.load(cursor, POINT_TABLE, series_ids, start, stop - 1, want=("steps", "values"))
    stats = []
    for sid in series_ids:
        points = loaded[sid]
        if len(points):
            stats += [
                (sid, *row) for row in blocks.stats_rows(blocks.bucket_stats(points.steps, points.values, 0, BASE))
            ]
    if not stats:
        return
    columns = f"""INSERT INTO {ROLLUP_TABLE} (series_id, level, bucket, min_value, max_value, sum_value,
        finite_count, count, first_step, last_step, last_value)"""
    if connection.vendor == "postgresql":
        # one statement whatever the number of buckets: each column as one array literal (the
        # driver's client-side binding of thousands of parameters costs seconds per million points)
        def array(values) -> str:
            return "{" + ",".join("NULL" if v is None else repr(v) for v in values) + "}"

        sids, s0, s1, mn, mx, sm, nf, n, last = zip(*stats, strict=True)
        cursor.execute(
            f"{columns} SELECT u.sid, 0, u.b, u.mn, u.mx, u.sm, u.nf, u.n, u.s0, u.s1, u.last "
            "FROM unnest(%s::bigint[], %s::bigint[], %s::float8[], %s::float8[], %s::float8[], "
            "%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::float8[]) "
            "AS u(sid, b, mn, mx, sm, nf, n, s0, s1, last) "
            "ON CONFLICT (series_id, level, bucket) DO NOTHING",
            [
                array(sids),
                array(v // BASE for v in s0),
                array(mn),
                array(mx),
                array(sm),
                array(nf),
                array(n),
                array(s0),
                array(s1),
                array(last),
            ],
        )
        return
    rows = [(sid, s0 // BASE, mn, mx, sm, nf, n, s0, s1, last) for sid, s0, s1, mn, mx, sm, nf, n, last in stats]
    for at in range(0, len(rows), 1000):  # multi-row INSERTs: one statement per 1,000 buckets
        part = rows[at : at + 1000]
        cursor.execute(
            f"{columns} VALUES {', '.join(['(%s, 0, %s, %s, %s, %s, %s, %s, %s, %s, %s)'] * len(part))} "
            "ON CONFLICT (series_id, level, bucket) DO NOTHING",
            [x for row in part for x in row],
        )


def _insert_level(cursor, series_ids: list[int], level: int, start: int, stop: int) -> None:
    """Buckets of ``level`` that lie wholly in ``[start, stop)``, from the level below, for these
    series in one statement."""
    w, below = width(level), width(level - 1)
    k0, k1 = -(-start // w), stop // w
    if k0 >= k1:
        return
    cursor.execute(
        f"""
        INSERT INTO {ROLLUP_TABLE} (series_id, level, bucket, min_value, max_value, sum_value,
                                    finite_count, count, first_step, last_step, last_value)
        SELECT g.series_id, %s, g.b, g.mn, g.mx, g.sm, g.nf, g.n, g.s0, g.s1, r.last_value
        FROM (
            SELECT series_id, bucket / {FACTOR} AS b, min(min_value) AS mn, max(max_value) AS mx,
                   sum(sum_value) AS sm, sum(finite_count) AS nf, sum(count) AS n,
                   min(first_step) AS s0, max(last_step) AS s1
            FROM {ROLLUP_TABLE}
            WHERE series_id IN ({", ".join(["%s"] * len(series_ids))}) AND level = %s AND bucket >= %s AND bucket < %s
            GROUP BY series_id, bucket / {FACTOR}
        ) g JOIN {ROLLUP_TABLE} r ON r.series_id = g.series_id AND r.level = %s AND r.bucket = g.s1 / {below}
        WHERE 1 = 1
        ON CONFLICT (series_id, level, bucket) DO NOTHING
        """,
        [level, *series_ids, level - 1, k0 * FACTOR, k1 * FACTOR, level - 1],
    )


def _insert_levels(cursor, series_ids: list[int], start: int, stop: int) -> None:
    """Every bucket of every level that ``[start, stop)`` closes, for series rolled up to ``start``."""
    _insert_level0(cursor, series_ids, start, stop)
    for level in range(1, LEVELS):
        if stop // width(level) == start // width(level):
            break  # no bucket of this level (or any coarser one) closed in [start, stop)
        _insert_level(cursor, series_ids, level, start // width(level) * width(level), stop)


def _chunk_end(cursor, series_id: int, start: int, target: int) -> int:
    """Where the next transaction stops: ``target``, or earlier after about CHUNK_POINTS points."""
    step = blocks.step_at_offset(cursor, series_id, start, chunk_points())
    if step is None:
        return target
    end = step // BASE * BASE
    return min(target, end) if end > start else target


def roll_up(series_id: int) -> int:
    """Write every bucket of ``series_id`` that became final; returns the new cursor (a step).

    Safe to run concurrently and repeatedly. Works in chunks of about
    RUNSTORE_ROLLUP_CHUNK_POINTS points, one transaction each.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {CURSOR_TABLE} SET queued = %s WHERE series_id = %s AND queued = %s", [False, series_id, True]
        )
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            lock = " FOR KEY SHARE" if connection.vendor == "postgresql" else ""
            # The key-share lock keeps the series from being deleted (with its
            # roll-ups) while this transaction writes, without blocking appends.
            cursor.execute(
                f"SELECT last_step FROM runs_attribute WHERE id = %s AND type = 'float_series'{lock}", [series_id]
            )
            row = cursor.fetchone()
            if row is None or row[0] is None:
                return 0
            target = closed_until(row[0])
            cursor.execute(
                f"INSERT INTO {CURSOR_TABLE} (series_id, rolled_until, updated_at, queued) VALUES (%s, 0, %s, %s) "
                "ON CONFLICT (series_id) DO NOTHING",
                [series_id, _now(), False],
            )
            if connection.vendor == "postgresql":
                # One roller per series. An advisory lock rather than a lock on the cursor row:
                # batches mark that row (claim) and must not wait for a whole chunk's roll-up.
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, series_id % 2**31])
            cursor.execute(f"SELECT rolled_until FROM {CURSOR_TABLE} WHERE series_id = %s", [series_id])
            start = cursor.fetchone()[0]
            if start >= target:
                return start
            stop = _chunk_end(cursor, series_id, start, target)
            _insert_levels(cursor, [series_id], start, stop)
            cursor.execute(
                f"UPDATE {CURSOR_TABLE} SET rolled_until = %s, updated_at = %s WHERE series_id = %s",
                [stop, _now(), series_id],
            )
        if stop >= target:
            return stop


MANY_AT_ONCE = 500  # series per transaction of roll_up_many


def roll_up_many(series_ids: list[int]) -> dict[int, int]:
    """:func:`roll_up` for several series at once; returns ``{series id: new cursor}``.

    The series whose closed buckets hold at most RUNSTORE_ROLLUP_CHUNK_POINTS steps (a task queued
    by live appends: seconds' worth) share one transaction and one statement per step (the last
    steps, the cursors, the locks, the points, each level's buckets), series with the same range
    in one group; a larger backlog goes through :func:`roll_up`, chunk by chunk. Same guarantees:
    safe to run concurrently and repeatedly, every bucket written once.
    """
    ids = sorted(set(series_ids))
    done: dict[int, int] = {}
    for at in range(0, len(ids), MANY_AT_ONCE):
        done.update(_roll_up_some(ids[at : at + MANY_AT_ONCE]))
    return done


def _roll_up_some(ids: list[int]) -> dict[int, int]:
    marks = ", ".join(["%s"] * len(ids))
    postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {CURSOR_TABLE} SET queued = %s WHERE series_id IN ({marks}) AND queued = %s", [False, *ids, True]
        )
    done = dict.fromkeys(ids, 0)
    large = []
    with transaction.atomic(), connection.cursor() as cursor:
        # the key-share locks keep the series from being deleted while this transaction writes
        lock = " FOR KEY SHARE" if postgres else ""
        cursor.execute(
            f"SELECT id, last_step FROM runs_attribute WHERE id IN ({marks}) AND type = 'float_series' "
            f"AND last_step IS NOT NULL ORDER BY id{lock}",
            ids,
        )
        targets = {sid: closed_until(last) for sid, last in cursor.fetchall()}
        if not targets:
            return done
        live = sorted(targets)
        now = _now()
        cursor.execute(
            f"INSERT INTO {CURSOR_TABLE} (series_id, rolled_until, updated_at, queued) VALUES "
            f"{', '.join(['(%s, 0, %s, %s)'] * len(live))} ON CONFLICT (series_id) DO NOTHING",
            [x for sid in live for x in (sid, now, False)],
        )
        if postgres:
            # one roller per series (see roll_up), the locks taken in series order so two tasks
            # sharing series wait for each other instead of deadlocking
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, (s.id %% 2147483648)::int) FROM unnest(%s::bigint[]) AS s(id)",
                [_LOCK_CLASS, live],
            )
            cursor.fetchall()
        cursor.execute(
            f"SELECT series_id, rolled_until FROM {CURSOR_TABLE} WHERE series_id IN ({', '.join(['%s'] * len(live))})",
            live,
        )
        starts = dict(cursor.fetchall())
        groups: dict[tuple[int, int], list[int]] = {}
        for sid in live:
            start, target = starts[sid], targets[sid]
            done[sid] = start
            if start >= target:
                continue
            if target - start > chunk_points():  # steps only grow: no more points than steps
                large.append(sid)
                continue
            groups.setdefault((start, target), []).append(sid)
        for (start, stop), sids in groups.items():
            _insert_levels(cursor, sids, start, stop)
            cursor.execute(
                f"UPDATE {CURSOR_TABLE} SET rolled_until = %s, updated_at = %s "
                f"WHERE series_id IN ({', '.join(['%s'] * len(sids))})",
                [stop, now, *sids],
            )
            done.update(dict.fromkeys(sids, stop))
    for sid in large:
        done[sid] = roll_up(sid)
    return done


def _now():
    from django.utils import timezone

    return timezone.now()


def delete(cursor, marks: str, series_ids: list[int]) -> None:
    """Remove the roll-ups of deleted series (called by ``series.delete_points``)."""
    cursor.execute(f"DELETE FROM {ROLLUP_TABLE} WHERE series_id IN ({marks})", series_ids)
    cursor.execute(f"DELETE FROM {CURSOR_TABLE} WHERE series_id IN ({marks})", series_ids)


def stale_series(limit: int = 10_000) -> list[int]:
    """Float series with final buckets not rolled up yet (for the periodic sweep)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT a.id FROM runs_attribute a LEFT JOIN {CURSOR_TABLE} c ON c.series_id = a.id
            WHERE a.type = 'float_series' AND a.last_step IS NOT NULL
              AND (a.last_step + 1) / {BASE} * {BASE} > COALESCE(c.rolled_until, 0)
            ORDER BY a.id LIMIT %s
            """,
            [limit],
        )
        return [r[0] for r in cursor.fetchall()]


# --- reading ---------------------------------------------------------------


def plan(lo: int, hi: int, buckets: int):
    """``(level, origin, bucket_width)`` for a read of ``[lo, hi]``, or None to read raw points."""
    span = hi - lo + 1
    wanted = -(-span // buckets)
    for level in range(LEVELS - 1, -1, -1):
        w = width(level)
        if w > wanted:
            continue
        origin = lo // w * w
        bucket_width = w * _ceil_div(_ceil_div(hi + 1 - origin, buckets), w)
        if bucket_width <= MAX_WIDTH_STRETCH * wanted:
            # a coarser level whose blocks tile the same grid gives the same buckets from fewer rows
            while level + 1 < LEVELS and bucket_width % width(level + 1) == 0 and origin % width(level + 1) == 0:
                level += 1
            return level, origin, bucket_width
    return None


def _cover(a: int, b: int, level: int, parts: list) -> None:
    """Cut ``[a, b)`` into aligned blocks of ``level`` and finer levels; raw ranges for the rest."""
    if a >= b:
        return
    if level < 0:
        parts.append(("raw", a, b))
        return
    w = width(level)
    k0, k1 = -(-a // w), b // w
    if k0 < k1:
        parts.append(("rollup", level, k0, k1))
        _cover(a, k0 * w, level - 1, parts)
        _cover(k1 * w, b, level - 1, parts)
    else:
        _cover(a, b, level - 1, parts)


def cover(lo: int, hi: int, rolled: int, level: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
    """What covers steps ``[lo, hi]`` of a series rolled up until ``rolled``: the closed roll-up
    blocks ``(level, first bucket, bucket end)`` at ``level`` and finer, and the step ranges
    ``[a, b)`` to read as raw points (the edges, and the tail not rolled up yet)."""
    parts: list = []
    _cover(lo, min(hi + 1, rolled), level, parts)
    raw = [(part[1], part[2]) for part in parts if part[0] == "raw"]
    if hi + 1 > max(lo, rolled):
        raw.append((max(lo, rolled), hi + 1))
    return [(part[1], part[2], part[3]) for part in parts if part[0] == "rollup"], raw


def read(series_id: int, lo: int, hi: int, level: int, origin: int, bucket_width: int) -> dict:
    """Buckets of ``bucket_width`` steps from ``origin`` over ``[lo, hi]`` (see :func:`plan`); chart
    reads, from the read replica when there is one."""
    with connections[db_router.read_alias()].cursor() as cursor:
        cursor.execute(f"SELECT rolled_until FROM {CURSOR_TABLE} WHERE series_id = %s", [series_id])
        row = cursor.fetchone()
        closed, raw = cover(lo, hi, row[0] if row else 0, level)
        selects, params = [], []
        for lvl, k0, k1 in closed:
            selects.append(
                f"SELECT first_step, last_step, min_value, max_value, sum_value, finite_count, count, last_value "
                f"FROM {ROLLUP_TABLE} WHERE series_id = %s AND level = %s AND bucket >= %s AND bucket < %s"
            )
            params += [series_id, lvl, k0, k1]
        rows = []
        if selects:
            cursor.execute(" UNION ALL ".join(selects), params)
            rows = cursor.fetchall()
        for a, b in raw:
            points = blocks.load(cursor, POINT_TABLE, [series_id], a, b - 1, want=("steps", "values"))[series_id]
            rows += blocks.stats_rows(blocks.bucket_stats(points.steps, points.values, origin, bucket_width))
    return _combine(rows, lo, hi, origin, bucket_width)


def _combine(rows, lo, hi, origin, bucket_width) -> dict:
    acc: dict[int, list] = {}
    for s0, s1, mn, mx, sm, nf, n, last in rows:
        key = (s0 - origin) // bucket_width
        cur = acc.get(key)
        if cur is None:
            acc[key] = [s0, s1, mn, mx, sm or 0.0, nf, n, last]
            continue
        if s0 < cur[0]:
            cur[0] = s0
        if s1 > cur[1]:
            cur[1], cur[7] = s1, last
        if mn is not None and (cur[2] is None or mn < cur[2]):
            cur[2] = mn
        if mx is not None and (cur[3] is None or mx > cur[3]):
            cur[3] = mx
        cur[4] += sm or 0.0
        cur[5] += nf
        cur[6] += n
    keys = sorted(acc)
    nan = math.nan

    def f(v):
        return nan if v is None else v

    return {
        "bucket_width": bucket_width,
        "from_step": lo,
        "to_step": hi,
        "steps": [max(lo, origin + k * bucket_width) for k in keys],
        "first_steps": [acc[k][0] for k in keys],
        "last_steps": [acc[k][1] for k in keys],
        "counts": [acc[k][6] for k in keys],
        "min": [f(acc[k][2]) for k in keys],
        "max": [f(acc[k][3]) for k in keys],
        "avg": [acc[k][4] / acc[k][5] if acc[k][5] else nan for k in keys],
        "last": [f(acc[k][7]) for k in keys],
    }


def schedule_after_commit(appends) -> None:
    """Roll up the series whose appends closed a bucket, once the current transaction commits.

    ``appends``: ``(series_id, last_step_before, last_step_after)``. The series are
    claimed inside the transaction (a batch that rolls back claims nothing, and
    the mark costs no commit of its own); the task is sent after the commit. A
    failure to reach the broker is logged, never raised: the periodic sweep
    catches up.
    """
    due = sorted({sid for sid, before, after in appends if needs_roll_up(before, after)})
    if not due:
        return
    claimed = claim(due)
    if not claimed:
        return

    def enqueue():
        from django.conf import settings

        from .tasks import rollup_series

        # Waiting lets the next batches of these series find them queued and send nothing:
        # one task rolls up what several batches closed, instead of one task per batch.
        delay = settings.RUNSTORE_ROLLUP_DELAY
        if delay:
            rollup_series.apply_async((claimed,), countdown=delay)
        else:
            rollup_series.delay(claimed)

    transaction.on_commit(enqueue, robust=True)


def claim(series_ids: list[int]) -> list[int]:
    """Mark these series as having a roll-up queued; returns those that had none (to enqueue).

    One task per series at a time, however many batches arrive meanwhile; the
    task clears the mark before it starts, so points that arrive during a
    roll-up queue the next one (a mark made by a transaction still open makes
    the task's clearing wait for its commit, so those points are seen). A mark left by a lost message is cleared by
    the periodic sweep.
    """
    now = _now()
    insert = f"INSERT INTO {CURSOR_TABLE} (series_id, rolled_until, updated_at, queued)"
    conflict = f"ON CONFLICT (series_id) DO UPDATE SET queued = %s WHERE {CURSOR_TABLE}.queued = %s RETURNING series_id"
    if connection.vendor == "postgresql":
        # the ids as one array: the same statement text for any number of series, whose
        # parsed template psycopg keeps (it parses anew a statement of more than 50 parameters)
        sql = f"{insert} SELECT s, 0, %s, %s FROM unnest(%s::bigint[]) AS s {conflict}"
        params = [now, True, list(series_ids)]
    else:
        sql = f"{insert} VALUES {', '.join(['(%s, 0, %s, %s)'] * len(series_ids))} {conflict}"
        params = [x for sid in series_ids for x in (sid, now, True)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, True, False])
        return sorted(row[0] for row in cursor.fetchall())


# --- metrics -----------------------------------------------------------------

LAG_SCAN_LIMIT = 100_000  # series looked at per scrape: a bound on what /metrics costs the database


def lag_metrics():
    """Roll-up lag for /metrics (tracker.metrics): float series with closed buckets not rolled up
    yet, and how many steps of closed buckets wait, summed over them."""
    from prometheus_client.core import GaugeMetricFamily

    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT COUNT(*), COALESCE(SUM(behind), 0) FROM (
              SELECT (a.last_step + 1) / {BASE} * {BASE} - COALESCE(c.rolled_until, 0) AS behind
              FROM runs_attribute a LEFT JOIN {CURSOR_TABLE} c ON c.series_id = a.id
              WHERE a.type = 'float_series' AND a.last_step IS NOT NULL
                AND (a.last_step + 1) / {BASE} * {BASE} > COALESCE(c.rolled_until, 0)
              LIMIT %s
            ) lagging
            """,
            [LAG_SCAN_LIMIT],
        )
        series, steps = cursor.fetchone()
    yield GaugeMetricFamily(
        "runstore_rollup_lag_series", "Float series with closed buckets not rolled up yet", value=series
    )
    yield GaugeMetricFamily(
        "runstore_rollup_lag_steps", "Steps in closed buckets that wait for their roll-up", value=steps
    )

"""The project dashboard: its settings (kept in a saved view) and chart data for many runs at once.

A dashboard chart overlays one float series of up to ``MAX_RUNS`` runs. Its data is read in a
fixed number of statements whatever the number of runs: one for the roll-up cursors, one for
the buckets of every series (roll-ups where the range allows, raw points otherwise), and one
per 900 steps for wall-clock times.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import psycopg
from django.db import connection

from . import blocks, rollups
from .paths import PathError, validate_path
from .series import FLOAT_TABLE, RAW_READ_POINTS

MAX_RUNS = 100  # runs a dashboard draws: the first ones in the table's order
MAX_CHARTS = 50
X_AXES = ("step", "time", "relative")
OPEN_ON = ("table", "dashboard")
STEP_CHUNK = 900


EMPTY_BUCKETS: dict = {k: [] for k in ("steps", "first_steps", "last_steps", "min", "max", "avg", "last", "counts")}


class DashboardError(ValueError):
    pass


def parse_dashboard(raw) -> dict:
    """A dashboard's settings from JSON (text or parsed), checked and normalised."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise DashboardError("not valid JSON")
    if not isinstance(raw, dict):
        raise DashboardError("must be a JSON object")
    charts = raw.get("charts", [])
    if not isinstance(charts, list) or not all(isinstance(c, str) for c in charts):
        raise DashboardError("charts must be a list of series paths")
    if len(charts) > MAX_CHARTS:
        raise DashboardError(f"at most {MAX_CHARTS} charts")
    seen: list[str] = []
    for path in charts:
        try:
            validate_path(path)
        except PathError as exc:
            raise DashboardError(f"chart {path!r}: {exc}")
        if path not in seen:
            seen.append(path)
    x = raw.get("x", "step")
    if x not in X_AXES:
        raise DashboardError(f"x must be one of {', '.join(X_AXES)}")
    smooth = raw.get("smooth", 0)
    if not isinstance(smooth, (int, float)) or isinstance(smooth, bool) or not 0 <= smooth < 1:
        raise DashboardError("smooth must be a number from 0 to below 1")
    color_by = raw.get("color_by", "") or ""
    if not isinstance(color_by, str):
        raise DashboardError("color_by must be a path or empty")
    if color_by:
        try:
            validate_path(color_by)
        except PathError as exc:
            raise DashboardError(f"color_by: {exc}")
    open_on = raw.get("open", "table")
    if open_on not in OPEN_ON:
        raise DashboardError("open must be table or dashboard")
    return {
        "charts": seen,
        "x": x,
        "log": bool(raw.get("log", False)),
        "smooth": float(smooth),
        "color_by": color_by,
        "open": open_on,
    }


def bucket_cap(n_runs: int) -> int:
    """Buckets per series for a chart of ``n_runs`` overlaid lines: about 10,000 points in all
    (a hundred overlaid lines need no bucket per pixel each: the coarser grid lets the read use
    coarser roll-ups and keeps the response small), never fewer than 100."""
    return max(100, 10_000 // max(1, n_runs))


def _marks(values) -> str:
    return ", ".join(["%s"] * len(values))


def _plan(series: list, buckets: int, from_step=None, to_step=None):
    """``(ids, lo, hi, chosen)`` of a chart's read (``chosen``: the roll-up plan, or None to read raw
    points), or None when no series has points in the range."""
    live = [s for s in series if s.first_step is not None and s.last_step is not None]
    if not live:
        return None
    lo = min(s.first_step for s in live) if from_step is None else max(from_step, min(s.first_step for s in live))
    hi = max(s.last_step for s in live) if to_step is None else min(to_step, max(s.last_step for s in live))
    if lo > hi:
        return None
    span = hi - lo + 1
    points = sum(
        (s.count or 0) * (min(hi, s.last_step) - max(lo, s.first_step) + 1) / max(1, s.last_step - s.first_step + 1)
        for s in live
        if s.last_step >= lo and s.first_step <= hi
    )
    chosen = rollups.plan(lo, hi, buckets) if points > RAW_READ_POINTS and span > buckets else None
    return [s.pk for s in live], lo, hi, chosen


def _read_many(series: list, buckets: int, from_step=None, to_step=None, envelope=True):
    """The buckets of several series on their grid: ``(merged, lo, hi, origin, width)`` (``merged`` as
    :func:`_merge` gives it), or None when no series has points in the range."""
    return _read_charts([series], buckets, from_step, to_step, envelope)[0]


def _read_charts(charts: list[list], buckets: int, from_step=None, to_step=None, envelope=True) -> list:
    """:func:`_read_many` of several charts (each a list of series) at once: on PostgreSQL one
    statement for all their roll-up cursors and one for all their roll-up blocks, so a request for
    five charts makes two statements where it made ten (raw edges and tails as before)."""
    plans = [_plan(series, buckets, from_step, to_step) for series in charts]
    out: list = [None] * len(charts)
    rolled_ids = sorted({sid for plan in plans if plan and plan[3] for sid in plan[0]})
    combine = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        rolled_of: dict[int, int] = {}
        if rolled_ids:
            cursor.execute(
                f"SELECT series_id, rolled_until FROM {rollups.CURSOR_TABLE} WHERE series_id IN ({_marks(rolled_ids)})",
                rolled_ids,
            )
            rolled_of = dict(cursor.fetchall())
        selects: list = []
        params: list = []
        pending: list = []
        done: dict = {}
        twins: dict = {}  # charts read together: the later requests of the same chart
        claimed: set[int] = set()
        for i, plan in enumerate(plans):
            if plan is None:
                continue
            ids, lo, hi, chosen = plan
            key = (tuple(ids), lo, hi, chosen)
            if key in done:  # the same chart asked for twice: one read
                out[i] = done[key]
                continue
            if key in twins:
                twins[key].append(i)
                continue
            if chosen is None:
                width = max(1, -(-(hi - lo + 1) // buckets))
                rows = _raw_rows(cursor, ids, [(lo, hi + 1)], lo, width)
                out[i] = done[key] = (_merge(rows, lo, width), lo, hi, lo, width)
                continue
            level, origin, width = chosen
            if not combine or claimed.intersection(ids):
                rows, columns = _read_rollups(ids, lo, hi, level, origin, width, envelope=envelope, rolled_of=rolled_of)
                out[i] = done[key] = (_merge(rows, origin, width, columns), lo, hi, origin, width)
                continue
            claimed.update(ids)
            twins[key] = []
            mine, my_params, raw_rows = _rollup_parts(cursor, ids, lo, hi, level, origin, width, rolled_of, envelope)
            selects += mine
            params += my_params
            pending.append((i, key, ids, raw_rows))
        columns = _read_packed(selects, params, envelope) if selects else None
        for i, key, ids, raw_rows in pending:
            _, lo, hi, (level, origin, width) = key
            chart_columns = None
            if columns is not None:
                mask = np.isin(columns["sid"], ids)
                chart_columns = {name: values[mask] for name, values in columns.items()}
            out[i] = done[key] = (_merge(raw_rows, origin, width, chart_columns), lo, hi, origin, width)
            for twin in twins[key]:
                out[twin] = out[i]
    return out


def downsample_many(series: list, buckets: int, from_step=None, to_step=None) -> dict[int, dict]:
    """Buckets of several float series on one common grid: ``{series id: downsampled}`` as
    :func:`runs.series.downsample` returns them. ``series`` are Attribute rows (pk, count,
    first_step, last_step)."""
    read = _read_many(series, buckets, from_step, to_step)
    if read is None:
        return {}
    merged, lo, hi, origin, width = read
    data = _assemble(merged, lo, hi, origin, width)
    empty = {**EMPTY_BUCKETS, "bucket_width": width, "from_step": lo, "to_step": hi}
    return {s.pk: data.get(s.pk, empty) for s in series if s.first_step is not None and s.last_step is not None}


def _rounded(values: np.ndarray, digits: int | None) -> np.ndarray:
    """``values`` to ``digits`` significant digits (NaN where not finite): each one the double nearest
    to its rounded decimal, so JSON writes it short. Values too small or large for an exact power of
    ten stay as they are."""
    values = np.where(np.isfinite(values), values, np.nan)
    if not digits:
        return values
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        magnitude = np.abs(values)
        power = (digits - 1 - np.floor(np.log10(np.where(magnitude > 0, magnitude, 1.0)))).astype(np.int64)
        exact = (power >= -22) & (power <= 22) & (magnitude > 0)
        power = np.where(exact, power, 0)
        up = 10.0 ** np.maximum(power, 0)
        down = 10.0 ** np.maximum(-power, 0)
        rounded = np.round(values * up / down) * down / up
    return np.where(exact, rounded, values)


def _none_for_nan(values: np.ndarray) -> list:
    out = values.tolist()
    missing = np.flatnonzero(np.isnan(values))
    for i in missing.tolist():
        out[i] = None
    return out


def columns_many(series: list, buckets: int, from_step=None, to_step=None, digits=None, envelope=False) -> dict:
    """The buckets of several series as columns on their common grid, the shape a chart draws:
    ``x`` (each bucket's middle step), ``first_steps``/``last_steps`` (its step range over all
    series) and ``counts`` once for the chart, and per series id its ``avg`` (and ``min``/``max``
    with ``envelope``) aligned with ``x`` (None where it has no finite value), with its own
    ``counts`` (0 where it has no point) only where they differ from the chart's. A hundred
    overlaid runs then cost a hundred value lists instead of five lists each; the buckets are laid
    out with numpy, one array operation per column for all the runs."""
    return _columns(_read_many(series, buckets, from_step, to_step, envelope), digits, envelope)


def columns_charts(charts: list[list], buckets: int, from_step=None, to_step=None, digits=None, envelope=False):
    """:func:`columns_many` of several charts (each a list of series), read together (see
    :func:`_read_charts`)."""
    reads = _read_charts(charts, buckets, from_step, to_step, envelope)
    return [_columns(read, digits, envelope) for read in reads]


def _columns(read, digits, envelope) -> dict:
    if read is None or read[0] is None:
        return {"x": [], "first_steps": [], "last_steps": [], "counts": [], "series": {}}
    merged = read[0]
    keys, at = np.unique(merged["key"], return_inverse=True)
    sids, row = np.unique(merged["sid"], return_inverse=True)
    n = len(keys)
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(first, at, merged["first"])
    np.maximum.at(last, at, merged["last"])
    counts = np.zeros((len(sids), n), dtype=np.int64)
    counts[row, at] = merged["count"]
    avg = np.full((len(sids), n), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        avg[row, at] = np.where(merged["finite"] > 0, merged["sum"] / np.maximum(merged["finite"], 1), np.nan)
    avg = _rounded(avg, digits)
    if envelope:
        lows, highs = np.full((len(sids), n), np.nan), np.full((len(sids), n), np.nan)
        lows[row, at], highs[row, at] = merged["min"], merged["max"]
        lows, highs = _rounded(lows, digits), _rounded(highs, digits)
    out: dict[int, dict] = {}
    for i, sid in enumerate(sids.tolist()):
        # the first series' counts are the chart's; a series sends its own only where they differ
        item: dict = {"avg": _none_for_nan(avg[i])}
        if i and not np.array_equal(counts[i], counts[0]):
            item["counts"] = counts[i].tolist()
        if envelope:
            item["min"], item["max"] = _none_for_nan(lows[i]), _none_for_nan(highs[i])
        out[sid] = item
    firsts, lasts = first.tolist(), last.tolist()
    return {
        "x": [(a + b) / 2 for a, b in zip(firsts, lasts, strict=True)],
        "first_steps": firsts,
        "last_steps": lasts,
        "counts": counts[0].tolist(),
        "series": out,
    }


def _assemble(merged, lo: int, hi: int, origin: int, width: int) -> dict[int, dict]:
    """Per-series bucket lists from the merged buckets (see :func:`_merge`)."""
    if merged is None:
        return {}
    out: dict[int, dict] = {}
    sids, starts = np.unique(merged["sid"], return_index=True)
    ends = np.r_[starts[1:], len(merged["sid"])]
    with np.errstate(divide="ignore", invalid="ignore"):
        avg = np.where(merged["finite"] > 0, merged["sum"] / np.maximum(merged["finite"], 1), np.nan)
    steps = np.maximum(lo, origin + (merged["first"] - origin) // width * width)
    for sid, a, b in zip(sids.tolist(), starts.tolist(), ends.tolist(), strict=True):
        out[sid] = {
            "bucket_width": width,
            "from_step": lo,
            "to_step": hi,
            "steps": steps[a:b].tolist(),
            "first_steps": merged["first"][a:b].tolist(),
            "last_steps": merged["last"][a:b].tolist(),
            "counts": merged["count"][a:b].tolist(),
            "min": merged["min"][a:b].tolist(),
            "max": merged["max"][a:b].tolist(),
            "avg": avg[a:b].tolist(),
        }
    return out


STEP_LIMIT = 2**62  # steps beyond it are regridded with Python's integers (numpy's int64 would overflow)


ROW_FIELDS = ("sid", "s0", "s1", "mn", "mx", "sm", "nf", "n")


def _row_columns(rows: list) -> dict:
    """Rows (series, first/last step, min, max, finite sum and count, count) as numpy columns named
    by ``ROW_FIELDS`` (None as NaN)."""
    sid, s0, s1, mn, mx, sm, nf, n = zip(*rows, strict=True)
    ints, floats = np.int64, np.float64
    return {
        "sid": np.array(sid, dtype=ints),
        "s0": np.array(s0, dtype=ints),
        "s1": np.array(s1, dtype=ints),
        "mn": np.array(mn, dtype=floats),
        "mx": np.array(mx, dtype=floats),
        "sm": np.array(sm, dtype=floats),
        "nf": np.array(nf, dtype=ints),
        "n": np.array(n, dtype=ints),
    }


def _merge(rows: list, origin: int, width: int, columns: dict | None = None) -> dict | None:
    """Rows (series, first/last step, min, max, finite sum and count, count) summed per series and
    bucket of ``width`` steps from ``origin``: a dict of numpy columns ``sid``, ``key`` (the bucket),
    ``first``, ``last``, ``min``, ``max`` (NaN when the bucket has no comparable value), ``sum``,
    ``finite`` and ``count``, ordered by series and bucket; None without rows. ``columns``: more
    such rows, already numpy columns named by ``ROW_FIELDS`` (the roll-up blocks as PostgreSQL
    sends them, see :func:`_read_rollups`)."""
    if columns is not None and len(columns["sid"]):
        big = int(columns["s1"].max()) >= STEP_LIMIT or int(columns["s0"].min()) <= -STEP_LIMIT
        if (
            big
            or abs(origin) >= STEP_LIMIT
            or (rows and (max(r[2] for r in rows) >= STEP_LIMIT or min(r[1] for r in rows) <= -STEP_LIMIT))
        ):
            # steps beyond numpy's safe range: back to rows for Python's integers (NaN as None)
            listed = [columns[f].tolist() for f in ROW_FIELDS]
            for i in (3, 4, 5):
                listed[i] = [None if v != v else v for v in listed[i]]
            rows = list(rows) + list(zip(*listed, strict=True))
            columns = None
    elif columns is not None:
        columns = None
    if not rows and columns is None:
        return None
    if columns is not None:
        if rows:
            extra = _row_columns(rows)
            columns = {f: np.concatenate((columns[f], extra[f])) for f in ROW_FIELDS}
        return _merge_columns(columns, origin, width)
    sid, s0, s1, mn, mx, sm, nf, n = zip(*rows, strict=True)
    if max(s1) >= STEP_LIMIT or min(s0) <= -STEP_LIMIT or abs(origin) >= STEP_LIMIT:
        rows = _regrid(rows, origin, width)
        sid, s0, s1, mn, mx, sm, nf, n = zip(*rows, strict=True)
        keys = np.array([(a - origin) // width for a in s0], dtype=np.int64)
        first, last = np.array(s0, dtype=object), np.array(s1, dtype=object)
        sids = np.array(sid, dtype=np.int64)
        return {
            "sid": sids,
            "key": keys,
            "first": first,
            "last": last,
            "min": np.array(mn, dtype=np.float64),
            "max": np.array(mx, dtype=np.float64),
            "sum": np.array(sm, dtype=np.float64),
            "finite": np.array(nf, dtype=np.int64),
            "count": np.array(n, dtype=np.int64),
        }
    return _merge_columns(_row_columns(rows), origin, width)


def _merge_columns(columns: dict, origin: int, width: int) -> dict:
    """:func:`_merge` of rows given as numpy columns (steps within ``STEP_LIMIT``)."""
    sids, first, last = columns["sid"], columns["s0"], columns["s1"]
    keys = (first - origin) // width
    order = np.lexsort((keys, sids))
    sids, keys, first, last = sids[order], keys[order], first[order], last[order]
    starts = np.flatnonzero(np.r_[True, (sids[1:] != sids[:-1]) | (keys[1:] != keys[:-1])])
    sums = columns["sm"][order]
    return {
        "sid": sids[starts],
        "key": keys[starts],
        "first": np.minimum.reduceat(first, starts),
        "last": np.maximum.reduceat(last, starts),
        "min": np.fmin.reduceat(columns["mn"][order], starts),
        "max": np.fmax.reduceat(columns["mx"][order], starts),
        "sum": np.add.reduceat(np.where(np.isnan(sums), 0.0, sums), starts),
        "finite": np.add.reduceat(columns["nf"][order], starts),
        "count": np.add.reduceat(columns["n"][order], starts),
    }


def _raw_rows(cursor, ids: list[int], ranges: list[tuple[int, int]], origin: int, width: int) -> list:
    """The buckets of the points of series ``ids`` with steps in each ``[a, b)``, aggregated with numpy
    from the decoded blocks and tail rows, in the roll-up rows' shape (series, first/last step, min,
    max, finite sum and count, count)."""
    rows: list = []
    for a, b in ranges:
        loaded = blocks.load(cursor, FLOAT_TABLE, ids, a, b - 1, want=("steps", "values"))
        for sid, points in loaded.items():
            if len(points):
                stats = blocks.bucket_stats(points.steps, points.values, origin, width)
                rows += [(sid, *row[:7]) for row in blocks.stats_rows(stats)]
    return rows


def _regrid(rows: list, origin: int, width: int) -> list:
    """Rows summed per series and bucket of ``width`` steps from ``origin``, ordered by series and step."""
    acc: dict[tuple[int, int], list] = {}
    for sid, s0, s1, mn, mx, sm, nf, n in rows:
        key = (sid, (s0 - origin) // width)
        cur = acc.get(key)
        if cur is None:
            acc[key] = [sid, s0, s1, mn, mx, sm or 0.0, int(nf or 0), int(n)]
            continue
        cur[1], cur[2] = min(cur[1], s0), max(cur[2], s1)
        if mn is not None and (cur[3] is None or mn < cur[3]):
            cur[3] = mn
        if mx is not None and (cur[4] is None or mx > cur[4]):
            cur[4] = mx
        cur[5] += sm or 0.0
        cur[6] += int(nf or 0)
        cur[7] += int(n)
    return [tuple(acc[key]) for key in sorted(acc)]


# a roll-up block as PostgreSQL packs it (see _read_rollups): big-endian int8send/float8send fields
_PACKED = np.dtype([("sid", ">i8"), ("s0", ">i8"), ("s1", ">i8"), ("sm", ">f8"), ("nf", ">i8"), ("n", ">i8")])
_PACKED_ENVELOPE = np.dtype([*_PACKED.descr[:3], ("mn", ">f8"), ("mx", ">f8"), *_PACKED.descr[3:]])


def _unpack(raw: bytes | None, envelope: bool) -> dict:
    """The blocks packed by :func:`_read_rollups` as numpy columns named by ``ROW_FIELDS``."""
    packed = np.frombuffer(raw or b"", _PACKED_ENVELOPE if envelope else _PACKED)
    columns = {
        name: packed[name].astype(np.float64 if name in ("sm", "mn", "mx") else np.int64)
        for name in packed.dtype.names or ()
    }
    if not envelope:
        columns["mn"] = columns["mx"] = np.full(len(packed), np.nan)
    return columns


def _rollup_parts(cursor, ids, lo, hi, level, origin, width, rolled_of, envelope) -> tuple[list, list, list]:
    """The selects (and their parameters) of the closed roll-up blocks of series ``ids`` over
    ``[lo, hi]`` at ``level`` and finer, and the raw rows of the edges and of each series' tail not
    rolled up yet (``rolled_of``: each series' ``rolled_until``)."""
    by_rolled: dict[int, list[int]] = {}
    for sid in ids:
        by_rolled.setdefault(rolled_of.get(sid, 0) or 0, []).append(sid)
    selects, params, raw_rows = [], [], []
    bounds = "min_value AS mn, max_value AS mx" if envelope else "NULL AS mn, NULL AS mx"
    for rolled, group in by_rolled.items():
        closed, raw = rollups.cover(lo, hi, rolled, level)
        for lvl, k0, k1 in closed:
            selects.append(
                f"SELECT series_id AS sid, first_step AS s0, last_step AS s1, {bounds}, "
                f"sum_value AS sm, finite_count AS nf, count AS n "
                f"FROM {rollups.ROLLUP_TABLE} WHERE series_id IN ({_marks(group)}) AND level = %s "
                f"AND bucket >= %s AND bucket < %s"
            )
            params += [*group, lvl, k0, k1]
        raw_rows += _raw_rows(cursor, group, raw, origin, width)
    return selects, params, raw_rows


def _read_packed(selects: list, params: list, envelope: bool) -> dict:
    """PostgreSQL: the blocks the ``selects`` give as one ``bytea`` of fixed-size binary records,
    unpacked to numpy columns (see :func:`_unpack`)."""
    fields = ["sid", "s0", "s1", *(["mn", "mx"] if envelope else []), "sm", "nf", "n"]
    sends = " || ".join(
        f"float8send(COALESCE({f}, 'NaN'))" if f in ("mn", "mx", "sm") else f"int8send({f})" for f in fields
    )
    sql = f"SELECT string_agg({sends}, '') FROM ({' UNION ALL '.join(selects)}) u"
    return _unpack(_fetch_binary(sql, params), envelope)


def _fetch_binary(sql: str, params: list):
    """The one value ``sql`` gives, sent by PostgreSQL in its binary format: a ``bytea`` arrives as
    its bytes. In the text format that Django's cursors read (they bind parameters on the client,
    which allows text results only) the server writes it as hex and the client decodes that: for
    the packed blocks of a five-chart request (3.8 MB) about a third of the statement's time."""
    connection.ensure_connection()
    raw = connection.connection
    # bound on the client as Django binds (a thousand series ids bound by the server cost ~30 ms more)
    query = psycopg.ClientCursor(raw).mogrify(sql, params)
    binary: Any = psycopg.Cursor(raw)  # (django-stubs type make_cursor's argument as Django's own wrapper)
    binary.format = psycopg.pq.Format.BINARY
    # wrapped as Django wraps its own cursors: the statement is logged and counted like the others
    wrapped = connection.make_debug_cursor(binary) if connection.queries_logged else connection.make_cursor(binary)
    with wrapped as cursor:
        cursor.execute(query)
        row = cursor.fetchone()
    return row[0] if row else None


def _read_rollups(ids: list[int], lo: int, hi: int, level: int, origin: int, width: int, envelope=True, rolled_of=None):
    """Every series' buckets: ``(rows, columns)``, the closed roll-up blocks where they exist (one
    statement) and raw points for the edges and for each series' tail not rolled up yet; a bucket
    may come in several rows (:func:`_merge` sums them). Without ``envelope`` the blocks' min and
    max are not read: a chart of many runs draws their means only. ``rolled_of``: the series'
    ``rolled_until`` when already read.

    On PostgreSQL the blocks come as one ``bytea`` of fixed-size binary records (``columns``, numpy
    arrays, regridded by :func:`_merge`): 15,600 blocks of a 100-run chart as Python tuples cost
    more than reading them; elsewhere the database regrids them (``rows``, one per series and bucket)."""
    with connection.cursor() as cursor:
        if rolled_of is None:
            cursor.execute(
                f"SELECT series_id, rolled_until FROM {rollups.CURSOR_TABLE} WHERE series_id IN ({_marks(ids)})", ids
            )
            rolled_of = dict(cursor.fetchall())
        selects, params, raw_rows = _rollup_parts(cursor, ids, lo, hi, level, origin, width, rolled_of, envelope)
        rows, columns = [], None
        if selects and connection.vendor == "postgresql":
            columns = _read_packed(selects, params, envelope)
        elif selects:
            # regridded in the database: one row per series and bucket
            cursor.execute(
                f"SELECT sid, min(s0), max(s1), {'min(mn), max(mx)' if envelope else 'NULL, NULL'}, sum(sm), CAST(sum(nf) AS BIGINT), "
                f"CAST(sum(n) AS BIGINT) FROM ({' UNION ALL '.join(selects)}) u GROUP BY sid, (s0 - %s) / %s",
                [*params, origin, width],
            )
            rows = cursor.fetchall()
    return list(rows) + raw_rows, columns  # summed per bucket by _merge


def step_times_many(wanted: dict[int, list[int]]) -> dict[int, dict[int, float]]:
    """``{series id: {step: wall-clock time}}`` for the given steps of each series: the blocks that
    hold one of them (two statements) and the tail rows (one statement per ``STEP_CHUNK`` steps)."""
    with connection.cursor() as cursor:
        return blocks.times_at(cursor, {sid: list(steps) for sid, steps in wanted.items()})


def finite_or_none(values, digits: int | None = None):
    """JSON-safe values (NaN and ±Inf as None); ``digits``: rounded to that many significant digits."""
    out = [None if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))) else v for v in values]
    if digits:
        fmt = f".{digits}g"
        out = [v if v is None else float(format(v, fmt)) for v in out]
    return out

"""The project dashboard: its settings (kept in a saved view) and chart data for many runs at once.

A dashboard chart overlays one float series of up to ``MAX_RUNS`` runs. Its data is read in a
fixed number of statements whatever the number of runs: one for the roll-up cursors, one for
the buckets of every series (roll-ups where the range allows, raw points otherwise), and one
per 900 steps for wall-clock times.
"""

from __future__ import annotations

import itertools
import json
import math
from operator import itemgetter

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


def _read_many(series: list, buckets: int, from_step=None, to_step=None):
    """The regridded rows of several series and their grid: ``(rows, lo, hi, origin, width)``, or None
    when no series has points in the range."""
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
    if chosen is None:
        width = max(1, -(-span // buckets))
        origin = lo
        rows = _read_raw([s.pk for s in live], [(lo, hi + 1)], origin, width)
    else:
        _level, origin, width = chosen
        rows = _read_rollups([s.pk for s in live], lo, hi, *chosen)
    return rows, lo, hi, origin, width


def downsample_many(series: list, buckets: int, from_step=None, to_step=None) -> dict[int, dict]:
    """Buckets of several float series on one common grid: ``{series id: downsampled}`` as
    :func:`runs.series.downsample` returns them. ``series`` are Attribute rows (pk, count,
    first_step, last_step)."""
    read = _read_many(series, buckets, from_step, to_step)
    if read is None:
        return {}
    rows, lo, hi, origin, width = read
    data = _assemble(rows, lo, hi, origin, width)
    empty = {**EMPTY_BUCKETS, "bucket_width": width, "from_step": lo, "to_step": hi}
    return {s.pk: data.get(s.pk, empty) for s in series if s.first_step is not None and s.last_step is not None}


def _rounded(value, digits: int | None):
    if value is None or not math.isfinite(value):
        return None
    return float(format(value, f".{digits}g")) if digits else value


def columns_many(series: list, buckets: int, from_step=None, to_step=None, digits=None, envelope=False) -> dict:
    """The buckets of several series as columns on their common grid, the shape a chart draws:
    ``x`` (each bucket's middle step), ``first_steps``/``last_steps`` (its step range over all
    series) and ``counts`` once for the chart, and per series id its ``avg`` (and ``min``/``max``
    with ``envelope``) aligned with ``x`` (None where it has no finite value), with its own
    ``counts`` (0 where it has no point) only where they differ from the chart's. A hundred
    overlaid runs then cost a hundred value lists instead of five lists each."""
    read = _read_many(series, buckets, from_step, to_step)
    if read is None:
        return {"x": [], "first_steps": [], "last_steps": [], "counts": [], "series": {}}
    rows, _lo, _hi, origin, width = read
    keys = sorted({(row[1] - origin) // width for row in rows})
    index = {k: i for i, k in enumerate(keys)}
    n = len(keys)
    first: list = [None] * n
    last: list = [None] * n
    out: dict[int, dict] = {}
    for sid, group in itertools.groupby(rows, key=itemgetter(0)):
        avg: list = [None] * n
        counts = [0] * n
        lows: list = [None] * n
        highs: list = [None] * n
        for _, s0, s1, mn, mx, sm, nf, count in group:
            i = index[(s0 - origin) // width]
            if first[i] is None or s0 < first[i]:
                first[i] = s0
            if last[i] is None or s1 > last[i]:
                last[i] = s1
            counts[i] = int(count)
            avg[i] = _rounded(sm / nf, digits) if nf else None
            if envelope:
                lows[i], highs[i] = _rounded(mn, digits), _rounded(mx, digits)
        item = {"avg": avg, "counts": counts}
        if envelope:
            item["min"], item["max"] = lows, highs
        out[sid] = item
    shared = next(iter(out.values()))["counts"] if out else []
    for item in out.values():
        if item["counts"] == shared:
            del item["counts"]
    return {
        "x": [(a + b) / 2 for a, b in zip(first, last, strict=True)],
        "first_steps": first,
        "last_steps": last,
        "counts": shared,
        "series": out,
    }


def _assemble(rows, lo: int, hi: int, origin: int, width: int) -> dict[int, dict]:
    """Per-series bucket lists from the regridded rows (series, first/last step, min, max, finite sum
    and count, count), ordered by series and step."""
    nan = math.nan
    out: dict[int, dict] = {}
    for sid, group in itertools.groupby(rows, key=itemgetter(0)):
        _, first, last, mn, mx, sm, nf, n = zip(*group, strict=True)
        out[sid] = {
            "bucket_width": width,
            "from_step": lo,
            "to_step": hi,
            "steps": [max(lo, origin + (a - origin) // width * width) for a in first],
            "first_steps": list(first),
            "last_steps": list(last),
            "counts": [int(c) for c in n],
            "min": [nan if v is None else v for v in mn],
            "max": [nan if v is None else v for v in mx],
            "avg": [s / f if f else nan for s, f in zip(sm, nf, strict=True)],
        }
    return out


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


def _read_raw(ids: list[int], ranges: list[tuple[int, int]], origin: int, width: int) -> list:
    with connection.cursor() as cursor:
        return _regrid(_raw_rows(cursor, ids, ranges, origin, width), origin, width)


def _read_rollups(ids: list[int], lo: int, hi: int, level: int, origin: int, width: int) -> list:
    """Every series' buckets: closed roll-up blocks where they exist (one statement), raw points
    for the edges and for each series' tail not rolled up yet."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT series_id, rolled_until FROM {rollups.CURSOR_TABLE} WHERE series_id IN ({_marks(ids)})", ids
        )
        rolled_of = dict(cursor.fetchall())
        by_rolled: dict[int, list[int]] = {}
        for sid in ids:
            by_rolled.setdefault(rolled_of.get(sid, 0) or 0, []).append(sid)
        selects, params, raw_rows = [], [], []
        for rolled, group in by_rolled.items():
            parts: list = []
            rollups._cover(lo, min(hi + 1, rolled), level, parts)
            raw = [(p[1], p[2]) for p in parts if p[0] == "raw"]
            if hi + 1 > max(lo, rolled):
                raw.append((max(lo, rolled), hi + 1))
            for part in parts:
                if part[0] == "rollup":
                    _, lvl, k0, k1 = part
                    selects.append(
                        f"SELECT series_id AS sid, first_step AS s0, last_step AS s1, min_value AS mn, "
                        f"max_value AS mx, sum_value AS sm, finite_count AS nf, count AS n "
                        f"FROM {rollups.ROLLUP_TABLE} WHERE series_id IN ({_marks(group)}) AND level = %s "
                        f"AND bucket >= %s AND bucket < %s"
                    )
                    params += [*group, lvl, k0, k1]
            raw_rows += _raw_rows(cursor, group, raw, origin, width)
        rows = []
        if selects:
            # regridded in the database: one row per series and bucket
            cursor.execute(
                "SELECT sid, min(s0), max(s1), min(mn), max(mx), sum(sm), CAST(sum(nf) AS BIGINT), "
                f"CAST(sum(n) AS BIGINT) FROM ({' UNION ALL '.join(selects)}) u GROUP BY sid, (s0 - %s) / %s",
                [*params, origin, width],
            )
            rows = cursor.fetchall()
    return _regrid(list(rows) + raw_rows, origin, width)


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

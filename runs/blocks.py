"""Packed point blocks: how series points are kept on disk, and the numpy reads over them.

A series' points are its *blocks* (``runs_floatblock`` / ``runs_stringblock``: one row per
``block_points()`` consecutive points, ``(series_id, first_step)`` primary key, a TimescaleDB
hypertable on ``first_step`` on PostgreSQL) followed by its open *tail*: the newest points,
fewer than ``block_points()`` of them, as one row each in the point tables
(``runs_floatpoint`` / ``runs_stringpoint``). Steps only grow within a series, so every block
holds steps below every tail row; :func:`runs.series.insert_float_points` packs full blocks as
the tail fills. docs/series-blocks.md describes the layout and the measurements behind it.

Each column of a block is one byte naming its codec, then a zlib stream:

- steps and timestamps (the int64 bit patterns of the float64 times): delta of delta, the
  eight bytes of each number shuffled into eight planes (all first bytes, then all second
  bytes ...), so the runs of zero bytes regular steps and times leave compress to nothing;
- float values: the float64 bit patterns, byte-shuffled (exact for every value: NaN payloads,
  ±Inf, -0.0 and subnormals come back bit for bit);
- string values: their UTF-8 byte lengths (int64, shuffled) followed by the bytes.

Reading is vectorised: a block decodes with a handful of numpy calls, no per-point Python
(strings excepted: each becomes a Python str).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
from django.conf import settings

# Level 3, not 6: compressing blocks was most of the server's CPU time per point in ingest.
# Timestamps a training loop takes from time.time() have noisy low bytes, in which level 6 searches
# hard for matches: a realistic curve with such times costs 551 ns/point to encode at level 6,
# 231 at 3, 163 at 1, for 3.84 / 4.02 / 4.50 bytes per point (docs/series-blocks.md). Every
# level decodes the same way, so blocks written at another level still read.
ZLIB_LEVEL = 3
FLOAT_TABLE = "runs_floatpoint"
STRING_TABLE = "runs_stringpoint"
FLOAT_BLOCKS = "runs_floatblock"
STRING_BLOCKS = "runs_stringblock"
BLOCK_TABLE = {FLOAT_TABLE: FLOAT_BLOCKS, STRING_TABLE: STRING_BLOCKS}
COLUMN = {"steps": "step_data", "timestamps": "time_data", "values": "value_data"}
TAIL_COLUMN = {"timestamps": "timestamp", "values": "value"}

_I8 = np.dtype("<i8")
_F8 = np.dtype("<f8")
_DOD, _XOR, _SHUFFLED, _TEXT = 1, 2, 3, 4
_EMPTY_I8 = np.empty(0, _I8)
_EMPTY_F8 = np.empty(0, _F8)


def block_points() -> int:
    """Points per block (RUNSTORE_SERIES_BLOCK_POINTS; chosen by bench/blocks.py)."""
    return settings.RUNSTORE_SERIES_BLOCK_POINTS


# --- codec ------------------------------------------------------------------


def _shuffle(bits: np.ndarray) -> bytes:
    return np.ascontiguousarray(bits.view(np.uint8).reshape(-1, 8).T).tobytes()


def _unshuffle(raw: bytes, n: int) -> np.ndarray:
    return np.frombuffer(raw, np.uint8, count=8 * n).reshape(8, n).T.copy().view(_I8).reshape(n)


def _pack(codec: int, payload: bytes) -> bytes:
    return bytes((codec,)) + zlib.compress(payload, ZLIB_LEVEL)


def _delta2(bits: np.ndarray) -> np.ndarray:
    # int64 arithmetic wraps, so differences and their running sums invert exactly
    first = np.diff(bits, prepend=np.zeros(1, _I8))
    return np.diff(first, prepend=np.zeros(1, _I8))


def encode_ints(values: np.ndarray) -> bytes:
    return _pack(_DOD, _shuffle(_delta2(np.ascontiguousarray(values, _I8))))


def encode_times(values: np.ndarray) -> bytes:
    return encode_ints(np.ascontiguousarray(values, _F8).view(_I8))


def encode_floats(values: np.ndarray) -> bytes:
    # Byte planes alone compress a little better than planes of values XOR their predecessor
    # (bench/blocks.py: 3.25 against 3.30 bytes per point for a float32-precision loss curve, 6.63
    # against 6.68 with float64 noise) and decode without a prefix scan. XOR'd blocks still decode.
    return _pack(_SHUFFLED, _shuffle(np.ascontiguousarray(values, _F8).view(_I8)))


def encode_strings(values: list[str]) -> tuple[bytes, int]:
    """The column and the values' UTF-8 size (what storage usage counts)."""
    raw = [v.encode("utf-8") for v in values]
    lengths = np.fromiter((len(r) for r in raw), _I8, count=len(raw))
    return _pack(_TEXT, _shuffle(lengths) + b"".join(raw)), int(lengths.sum())


def decode(column: bytes, n: int):
    """A column back: int64 or float64 numpy array (steps, times, values), or a list of str."""
    codec, payload = column[0], zlib.decompress(memoryview(column)[1:])
    if codec == _DOD:
        return np.cumsum(np.cumsum(_unshuffle(payload, n)))
    if codec == _XOR:
        return np.bitwise_xor.accumulate(_unshuffle(payload, n)).view(_F8)
    if codec == _SHUFFLED:
        return _unshuffle(payload, n).view(_F8)
    if codec == _TEXT:
        ends = np.cumsum(_unshuffle(payload, n)) + 8 * n
        starts = np.empty_like(ends)
        starts[0:1], starts[1:] = 8 * n, ends[:-1]
        data = bytes(payload)
        return [data[a:b].decode("utf-8") for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    raise ValueError(f"unknown block codec {codec}")


def decode_times(column: bytes, n: int) -> np.ndarray:
    return decode(column, n).view(_F8)


def block_row(table: str, series_id: int, steps, timestamps, values) -> tuple:
    """The block table row (series_id, first_step, last_step, count, step_data, time_data,
    value_data[, value_bytes]) for consecutive points of one series."""
    head = (series_id, int(steps[0]), int(steps[-1]), len(steps), encode_ints(steps), encode_times(timestamps))
    if table == FLOAT_TABLE:
        return (*head, encode_floats(values))
    column, size = encode_strings(values)
    return (*head, column, size)


def insert_blocks(cursor, table: str, rows: list[tuple]) -> None:
    if not rows:
        return
    extra = ", value_bytes" if table == STRING_TABLE else ""
    marks = ", ".join(["%s"] * len(rows[0]))
    cursor.executemany(
        f"INSERT INTO {BLOCK_TABLE[table]} (series_id, first_step, last_step, count, step_data, time_data, "
        f"value_data{extra}) VALUES ({marks})",
        rows,
    )


# --- reading ----------------------------------------------------------------


class Points:
    """Columns of one series' points in step order: ``steps`` (int64 array), ``timestamps``
    (float64 array or None when not asked for) and ``values`` (float64 array, a list of str
    for string series, or None)."""

    __slots__ = ("steps", "timestamps", "values")

    def __init__(self, steps, timestamps, values):
        self.steps, self.timestamps, self.values = steps, timestamps, values

    def __len__(self) -> int:
        return len(self.steps)

    def take(self, index) -> Points:
        def pick(column):
            if column is None:
                return None
            if isinstance(column, list):
                if isinstance(index, slice):
                    return column[index]
                return [column[i] for i in np.asarray(index).tolist()]
            return column[index]

        return Points(self.steps[index], pick(self.timestamps), pick(self.values))


def _marks(values) -> str:
    return ", ".join(["%s"] * len(values))


def _concat(parts: list[Points], floats: bool, want: tuple) -> Points:
    def join(name):
        if name not in want:
            return None
        columns = [getattr(p, name) for p in parts]
        if name == "values" and not floats:
            return [v for c in columns for v in c]
        return np.concatenate(columns) if columns else (_EMPTY_F8 if name != "steps" else _EMPTY_I8)

    points = Points(join("steps") if parts else _EMPTY_I8, join("timestamps"), join("values"))
    if len(points) > 1 and not bool(np.all(points.steps[1:] > points.steps[:-1])):
        # out of order, or a point read twice (from the tail, then from the block it was packed into)
        order = np.argsort(points.steps, kind="stable")
        ordered = points.steps[order]
        points = points.take(order[np.r_[True, ordered[1:] != ordered[:-1]]])
    return points


def _tail_points(rows, floats: bool, want: tuple) -> Points:
    """Points from tail rows ``(step[, timestamp][, value])`` (a NULL value, SQLite's NaN, is NaN)."""
    columns = list(zip(*rows, strict=True))
    steps = np.array(columns[0], _I8) if rows else _EMPTY_I8
    timestamps: Any = None
    values: Any = None
    i = 1
    if "timestamps" in want:
        timestamps, i = (np.array(columns[i], _F8) if rows else _EMPTY_F8), i + 1
    if "values" in want:
        if not floats:
            values = list(columns[i]) if rows else []
        else:
            values = np.array(columns[i], _F8) if rows else _EMPTY_F8
    return Points(steps, timestamps, values)


def _decode_block(row, floats: bool, want: tuple) -> Points:
    """A block row ``(first_step, count, step_data[, time_data][, value_data])``."""
    n = row[1]
    steps = decode(row[2], n)
    i, timestamps, values = 3, None, None
    if "timestamps" in want:
        timestamps, i = decode_times(row[i], n), i + 1
    if "values" in want:
        values = decode(row[i], n)
    return Points(steps, timestamps, values)


def _range_sql(lo, hi, column: str = "step") -> tuple[str, list]:
    where, params = "", []
    if lo is not None:
        where += f" AND {column} >= %s"
        params.append(lo)
    if hi is not None:
        where += f" AND {column} <= %s"
        params.append(hi)
    return where, params


def _clip(points: Points, lo, hi) -> Points:
    if (lo is not None and points.steps[0] < lo) or (hi is not None and points.steps[-1] > hi):
        keep = np.ones(len(points), bool)
        if lo is not None:
            keep &= points.steps >= lo
        if hi is not None:
            keep &= points.steps <= hi
        points = points.take(np.flatnonzero(keep))
    return points


def load(cursor, table: str, series_ids: list[int], lo=None, hi=None, want=("steps", "timestamps", "values")):
    """``{series id: Points}`` with steps in ``[lo, hi]`` (None: unbounded), from the blocks that
    overlap the range and the tail rows: one statement for any number of series, so it sees the
    series as one moment left them (a write packing tail rows into a block commits between two
    statements, not inside one)."""
    floats = table == FLOAT_TABLE
    blocks = BLOCK_TABLE[table]
    out: dict[int, list[Points]] = {sid: [] for sid in series_ids}
    if not series_ids:
        return {}
    names = [name for name in ("timestamps", "values") if name in want]
    block_cols = ", ".join(["b.step_data"] + [f"b.{COLUMN[n]}" for n in names] + ["NULL"] * len(names))
    tail_cols = ", ".join(["NULL"] * (1 + len(names)) + [TAIL_COLUMN[n] for n in names])
    where, params = "", []
    if hi is not None:
        where += " AND b.first_step <= %s"
        params.append(hi)
    if lo is not None:
        # the block holding lo and those after it: bounds the primary-key scan from below
        where += (
            f" AND b.last_step >= %s AND b.first_step >= COALESCE((SELECT max(c.first_step) FROM {blocks} c "
            f"WHERE c.series_id = b.series_id AND c.first_step <= %s), %s)"
        )
        params += [lo, lo, lo]
    tail_where, tail_params = _range_sql(lo, hi)
    cursor.execute(
        f"SELECT b.series_id, b.first_step, b.count, {block_cols} FROM {blocks} b "
        f"WHERE b.series_id IN ({_marks(series_ids)}){where} "
        f"UNION ALL SELECT series_id, step, NULL, {tail_cols} FROM {table} "
        f"WHERE series_id IN ({_marks(series_ids)}){tail_where}",
        [*series_ids, *params, *series_ids, *tail_params],
    )
    tails: dict[int, list] = {}
    width = 1 + len(names)
    for row in cursor.fetchall():
        if row[2] is None:
            tails.setdefault(row[0], []).append((row[1], *row[3 + width :]))
        else:
            out[row[0]].append(_clip(_decode_block(row[1 : 3 + width], floats, want), lo, hi))
    for sid, rows in tails.items():
        out[sid].append(_tail_points(rows, floats, want))
    return {sid: _concat(parts, floats, want) for sid, parts in out.items()}


def load_first(cursor, table: str, series_id: int, lo=None, hi=None, limit: int = 1000, want=None) -> Points:
    """The first ``limit`` points of one series with steps in ``[lo, hi]``: the first tail rows,
    then blocks fetched a few at a time until they hold ``limit`` points."""
    want = want or ("steps", "timestamps", "values")
    floats = table == FLOAT_TABLE
    blocks = BLOCK_TABLE[table]
    cols = ", ".join(COLUMN[name] for name in ("steps", "timestamps", "values") if name in want or name == "steps")
    tail_cols = ", ".join(["step"] + [TAIL_COLUMN[n] for n in ("timestamps", "values") if n in want])
    where, params = _range_sql(lo, hi)
    cursor.execute(
        f"SELECT {tail_cols} FROM {table} WHERE series_id = %s{where} ORDER BY step LIMIT %s",
        [series_id, *params, limit],
    )
    tail = cursor.fetchall()
    parts: list[Points] = []
    got = 0
    page = limit // block_points() + 2
    after = None
    while got < limit:
        where, params = "", []
        if hi is not None:
            where += " AND first_step <= %s"
            params.append(hi)
        if after is not None:
            where += " AND first_step > %s"
            params.append(after)
        elif lo is not None:
            where += (
                f" AND last_step >= %s AND first_step >= COALESCE((SELECT max(first_step) FROM {blocks} "
                f"WHERE series_id = %s AND first_step <= %s), %s)"
            )
            params += [lo, series_id, lo, lo]
        cursor.execute(
            f"SELECT first_step, count, {cols} FROM {blocks} WHERE series_id = %s{where} ORDER BY first_step LIMIT %s",
            [series_id, *params, page],
        )
        rows = cursor.fetchall()
        for row in rows:
            points = _clip(_decode_block(row, floats, want), lo, hi)
            parts.append(points)
            got += len(points)
        if len(rows) < page:
            break
        after = rows[-1][0]
    if tail:
        parts.append(_tail_points(tail, floats, want))
    points = _concat(parts, floats, want)
    return points.take(slice(0, limit)) if len(points) > limit else points


def load_last(cursor, table: str, series_id: int, limit: int) -> Points:
    """The last ``limit`` points of one series (steps and values), oldest first."""
    floats = table == FLOAT_TABLE
    want = ("steps", "values")
    cursor.execute(
        f"SELECT step, value FROM {table} WHERE series_id = %s ORDER BY step DESC LIMIT %s", [series_id, limit]
    )
    rows = cursor.fetchall()[::-1]
    parts = [_tail_points(rows, floats, want)] if rows else []
    got, before = len(rows), None
    page = limit // block_points() + 1
    while got < limit:
        where, params = ("", []) if before is None else (" AND first_step < %s", [before])  # type: ignore[var-annotated]
        cursor.execute(
            f"SELECT first_step, count, step_data, value_data FROM {BLOCK_TABLE[table]} "
            f"WHERE series_id = %s{where} ORDER BY first_step DESC LIMIT %s",
            [series_id, *params, page],
        )
        blocks = cursor.fetchall()
        for row in blocks:
            parts.insert(0, _decode_block(row, floats, want))
            got += row[1]
        if len(blocks) < page:
            break
        before = blocks[-1][0]
    points = _concat(parts, floats, want)
    return points.take(slice(len(points) - limit, None)) if len(points) > limit else points


def times_at(cursor, wanted: dict[int, list[int]]) -> dict[int, dict[int, float]]:
    """``{series id: {step: timestamp}}`` for the given steps of float series: only the blocks
    that hold one of the steps are fetched (their steps and times), plus the matching tail rows."""
    out: dict[int, dict[int, float]] = {sid: {} for sid in wanted}
    ids = [sid for sid, steps in wanted.items() if steps]
    if not ids:
        return out
    # the tail rows first (see load)
    distinct = sorted({s for sid in ids for s in wanted[sid]})
    for start in range(0, len(distinct), 900):
        chunk = distinct[start : start + 900]
        cursor.execute(
            f"SELECT series_id, step, timestamp FROM {FLOAT_TABLE} "
            f"WHERE series_id IN ({_marks(ids)}) AND step IN ({_marks(chunk)})",
            [*ids, *chunk],
        )
        for sid, step, ts in cursor.fetchall():
            out[sid][step] = ts
    cursor.execute(
        f"SELECT series_id, first_step, last_step FROM {FLOAT_BLOCKS} WHERE series_id IN ({_marks(ids)}) "
        "ORDER BY series_id, first_step",
        ids,
    )
    spans: dict[int, list] = {}
    for sid, first, last in cursor.fetchall():
        spans.setdefault(sid, []).append((first, last))
    needed: list[tuple[int, int]] = []
    sorted_wanted = {sid: np.unique(np.asarray(wanted[sid], _I8)) for sid in spans}
    for sid, items in spans.items():
        firsts = np.array([a for a, _ in items], _I8)
        lasts = np.array([b for _, b in items], _I8)
        steps = sorted_wanted[sid]
        at = np.searchsorted(firsts, steps, side="right") - 1
        inside = (at >= 0) & (steps <= lasts[np.clip(at, 0, None)])
        needed += [(sid, int(firsts[k])) for k in np.unique(at[inside]).tolist()]
    for start in range(0, len(needed), 400):
        pairs = needed[start : start + 400]
        # two IN lists rather than an OR per block, which the planner takes seconds over; a block
        # of another series that happens to start at a wanted block's step is skipped below
        block_sids = sorted({pair[0] for pair in pairs})
        block_firsts = sorted({pair[1] for pair in pairs})
        cursor.execute(
            f"SELECT series_id, first_step, count, step_data, time_data FROM {FLOAT_BLOCKS} "
            f"WHERE series_id IN ({_marks(block_sids)}) AND first_step IN ({_marks(block_firsts)})",
            [*block_sids, *block_firsts],
        )
        wanted_blocks = set(pairs)
        for sid, first, n, step_data, time_data in cursor.fetchall():
            if (sid, first) not in wanted_blocks:
                continue
            steps = decode(step_data, n)
            asked = sorted_wanted[sid]
            asked = asked[np.searchsorted(asked, steps[0]) : np.searchsorted(asked, steps[-1], side="right")]
            at = np.searchsorted(steps, asked)  # the block's steps are sorted: a few look-ups, not a set op
            hit = at[steps[at] == asked]
            if len(hit):
                times = decode_times(time_data, n)
                out[sid].update(zip(steps[hit].tolist(), times[hit].tolist(), strict=True))
    return out


def step_at_offset(cursor, series_id: int, start: int, offset: int) -> int | None:
    """About the step of the ``offset``-th point at or after ``start`` (whole blocks counted):
    where a chunk of work over a series may end. None when the series has fewer points."""
    cursor.execute(
        f"SELECT last_step, count FROM {FLOAT_BLOCKS} WHERE series_id = %s AND last_step >= %s ORDER BY first_step",
        [series_id, start],
    )
    seen = 0
    for last, count in cursor.fetchall():
        seen += count
        if seen > offset:
            return last
    cursor.execute(
        f"SELECT step FROM {FLOAT_TABLE} WHERE series_id = %s AND step >= %s ORDER BY step LIMIT 1 OFFSET %s",
        [series_id, start, max(0, offset - seen)],
    )
    row = cursor.fetchone()
    return row[0] if row else None


# --- aggregation ------------------------------------------------------------


def bucket_stats(steps: np.ndarray, values: np.ndarray, origin: int, width: int) -> dict:
    """Per bucket ``(step - origin) // width`` of sorted points: ``key``, ``first``/``last`` step,
    ``count``, ``min``/``max`` (NaN left out; NaN when the bucket has only NaN), ``sum`` and
    ``finite`` count of the finite values, and the ``last_value``; all numpy arrays."""
    if not len(steps):
        empty = np.empty(0)
        return dict.fromkeys(("key", "first", "last", "count", "min", "max", "sum", "finite", "last_value"), empty)
    keys = (steps - origin) // width
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    finite = np.isfinite(values)
    return {
        "key": keys[starts],
        "first": steps[starts],
        "last": steps[ends - 1],
        "count": ends - starts,
        "min": np.fmin.reduceat(values, starts),
        "max": np.fmax.reduceat(values, starts),
        "sum": np.add.reduceat(np.where(finite, values, 0.0), starts),
        "finite": np.add.reduceat(finite.astype(np.int64), starts),
        "last_value": values[ends - 1],
    }


def nan_to_none(values: np.ndarray) -> list:
    """A float column as a list with None where it is NaN (SQL's NULL of an empty aggregate)."""
    out = values.tolist()
    if np.isnan(values).any():
        for i in np.flatnonzero(np.isnan(values)).tolist():
            out[i] = None
    return out


def stats_rows(stats: dict) -> list[tuple]:
    """The buckets as ``(first, last, min, max, sum, finite, count, last_value)`` rows, min/max None
    when the bucket has no comparable value (the shape of a roll-up row)."""
    return list(
        zip(
            stats["first"].tolist(),
            stats["last"].tolist(),
            nan_to_none(stats["min"]),
            nan_to_none(stats["max"]),
            stats["sum"].tolist(),
            stats["finite"].tolist(),
            stats["count"].tolist(),
            stats["last_value"].tolist(),
            strict=True,
        )
    )

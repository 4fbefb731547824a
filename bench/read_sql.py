"""The SQL half of the read benchmark; run by ``bench/read.py`` in a process whose env points at the bench database.

    python bench/read_sql.py RUN_UUID REPEATS ZOOM_FROM ZOOM_TO   (prints JSON)

Times ``runs.series.downsample`` alone (no HTTP, no DRF) for the full range and
the zoom window, captures the SQL it sends and saves its ``EXPLAIN`` output
under ``bench/results/``. On PostgreSQL it also times candidate rewrites on the
same rows, checking they return the same buckets:

* ``subquery_last``: the bucket's last value by a correlated PK lookup instead
  of ``JOIN runs_floatpoint p ON p.step = b.s1`` (the planner estimates the
  CTE at one row per point and hash-joins the whole series);
* ``subquery_last+jit_off+work_mem``: the same with ``SET LOCAL jit = off`` and
  ``SET LOCAL work_mem = '64MB'`` (JIT compiles for ~0.2 s here; the sort spills);
The candidates are checked against the raw-point buckets (``downsample`` with
``raw_read_points`` raised, where the code has roll-ups).

* ``rollup_1000``: per-series blocks of 1,000 steps (count, min, max, finite
  sum/count, last) in a side table, the kind an ingest-maintained rollup would
  hold; the full range is answered from 1,000 block rows. The table is built
  here with one INSERT ... SELECT, timed and reported as ``build_ms``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, os.environ.get("BENCH_SRC", str(BENCH.parent)))
sys.path.insert(0, str(BENCH))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")

import logging  # noqa: E402

logging.disable(logging.INFO)

import django  # noqa: E402

django.setup()

from common import median, save_result  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from runs.models import Attribute  # noqa: E402
from runs.series import downsample  # noqa: E402

AGG = (
    "min(value) FILTER (WHERE value <> 'NaN'::float8), max(value) FILTER (WHERE value <> 'NaN'::float8), "
    "avg(value) FILTER (WHERE value <> 'NaN'::float8 AND value <> 'Infinity'::float8 AND value <> '-Infinity'::float8)"
)
SUBQUERY_LAST = f"""
    WITH b AS (
        SELECT (step - %(lo)s) / %(w)s AS bucket, min(step) AS s0, max(step) AS s1, count(*) AS n, {AGG}
        FROM runs_floatpoint WHERE series_id = %(sid)s AND step >= %(lo)s AND step <= %(hi)s GROUP BY 1
    )
    SELECT b.*, (SELECT p.value FROM runs_floatpoint p WHERE p.series_id = %(sid)s AND p.step = b.s1)
    FROM b ORDER BY b.bucket
"""
ROLLUP_DDL = """
    CREATE TEMP TABLE bench_rollup (series_id bigint, block bigint, s0 bigint, s1 bigint, n bigint,
        mn float8, mx float8, fsum float8, fn bigint, lastv float8, PRIMARY KEY (series_id, block))
"""
ROLLUP_BUILD = """
    INSERT INTO bench_rollup
    SELECT series_id, step / 1000, min(step), max(step), count(*),
           min(value) FILTER (WHERE value <> 'NaN'::float8), max(value) FILTER (WHERE value <> 'NaN'::float8),
           sum(value) FILTER (WHERE value <> 'NaN'::float8 AND value <> 'Infinity'::float8 AND value <> '-Infinity'::float8),
           count(value) FILTER (WHERE value <> 'NaN'::float8 AND value <> 'Infinity'::float8 AND value <> '-Infinity'::float8),
           (array_agg(value ORDER BY step DESC))[1]
    FROM runs_floatpoint WHERE series_id = %(sid)s GROUP BY 1, 2
"""
ROLLUP_QUERY = """
    SELECT (s0 - %(lo)s) / %(w)s AS bucket, min(s0), max(s1), sum(n)::bigint, min(mn), max(mx),
           sum(fsum) / nullif(sum(fn), 0), (array_agg(lastv ORDER BY s1 DESC))[1]
    FROM bench_rollup WHERE series_id = %(sid)s AND block >= %(lo)s / 1000 AND block <= %(hi)s / 1000
    GROUP BY 1 ORDER BY 1
"""


def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return median(times) * 1000, out


def same(rows_a, rows_b) -> bool:
    if len(rows_a) != len(rows_b):
        return False
    for a, b in zip(rows_a, rows_b, strict=True):
        for x, y in zip(a, b, strict=True):
            if isinstance(x, float) or isinstance(y, float):
                if not math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-12):
                    return False
            elif x != y:
                return False
    return True


def main() -> None:
    run_uuid, repeats, zoom_from, zoom_to = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    attr = Attribute.objects.get(run__uuid=run_uuid, path="train/loss")
    captured = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    out = {"vendor": connection.vendor}
    plans = {}
    for name, kwargs in (("full", {}), ("zoom", {"from_step": zoom_from, "to_step": zoom_to})):
        call = lambda kwargs=kwargs: downsample(attr.pk, attr.first_step, attr.last_step, 1000, **kwargs)  # noqa: E731
        ms, data = timed(call, repeats)
        out[name] = {"median_ms": ms, "buckets": len(data["steps"]), "bucket_width": data["bucket_width"]}
        captured.clear()
        with connection.execute_wrapper(capture):
            call()
        queries = [(sql, params) for sql, params in captured if sql.lstrip().upper().startswith(("SELECT", "WITH"))]
        explain = "EXPLAIN (ANALYZE, BUFFERS) " if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN "
        texts = []
        for sql, params in queries:
            with connection.cursor() as cur:
                cur.execute(explain + sql, params)
                texts.append("\n".join(" | ".join(str(c) for c in row) for row in cur.fetchall()))
        plans[name] = {"queries": [q for q, _ in queries], "plans": texts}
        out[name]["queries"] = len(queries)
        if connection.vendor == "postgresql":
            out[name]["explain_execution_ms"] = sum(
                float(line.split(":")[1].split()[0])
                for t in texts
                for line in t.splitlines()
                if line.startswith("Execution Time")
            )
    save_result(f"explain-{connection.vendor}", plans)

    if connection.vendor == "postgresql":
        lo, hi = attr.first_step, attr.last_step
        width = max(1, -(-(hi - lo + 1) // 1000))
        full = {"lo": lo, "hi": hi, "w": width, "sid": attr.pk}
        zwidth = max(1, -(-(zoom_to - zoom_from + 1) // 1000))
        zoom = {"lo": zoom_from, "hi": zoom_to, "w": zwidth, "sid": attr.pk}
        # the reference: the same buckets from raw points (newer code can read large
        # ranges from roll-ups on a coarser aligned grid; ask for the raw path)
        reference = {}
        for key, kwargs in (("full", {}), ("zoom", {"from_step": zoom_from, "to_step": zoom_to})):
            try:
                d = downsample(attr.pk, attr.first_step, attr.last_step, 1000, raw_read_points=2**62, **kwargs)
            except TypeError:
                d = downsample(attr.pk, attr.first_step, attr.last_step, 1000, **kwargs)
            reference[key] = list(
                zip(
                    [(s - d["from_step"]) // d["bucket_width"] for s in d["steps"]],
                    d["first_steps"],
                    d["last_steps"],
                    d["counts"],
                    d["min"],
                    d["max"],
                    d["avg"],
                    d["last"],
                    strict=True,
                )
            )

        def query(sql, params, settings=()):
            def run():
                with transaction.atomic(), connection.cursor() as cur:
                    for s in settings:
                        cur.execute(s)
                    cur.execute(sql, params)
                    return cur.fetchall()

            return run

        cands = {}
        tuned = ("SET LOCAL jit = off", "SET LOCAL work_mem = '64MB'")
        for name, settings in (("subquery_last", ()), ("subquery_last+jit_off+work_mem", tuned)):
            fms, frows = timed(query(SUBQUERY_LAST, full, settings), min(repeats, 5))
            zms, zrows = timed(query(SUBQUERY_LAST, zoom, settings), min(repeats, 5))
            cands[name] = {
                "full_ms": fms,
                "zoom_ms": zms,
                "same": same(frows, reference["full"]) and same(zrows, reference["zoom"]),
                "same_full": same(frows, reference["full"]),
                "same_zoom": same(zrows, reference["zoom"]),
            }
        with connection.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS bench_rollup")
            cur.execute(ROLLUP_DDL)
            t = time.perf_counter()
            cur.execute(ROLLUP_BUILD, {"sid": attr.pk})
            build_ms = (time.perf_counter() - t) * 1000
            cur.execute("ANALYZE bench_rollup")
        if width % 1000 == 0 and lo % 1000 == 0:
            fms, frows = timed(query(ROLLUP_QUERY, full, ("SET LOCAL jit = off",)), repeats)
            cands["rollup_1000"] = {
                "full_ms": fms,
                "zoom_ms": cands["subquery_last+jit_off+work_mem"]["zoom_ms"],
                "same": same(frows, reference["full"]),
                "same_full": same(frows, reference["full"]),
                "build_ms": build_ms,
                "note": "zoom window answered from raw points (subquery_last)",
            }
        out["candidates"] = cands
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""What does the database itself cost per point? COPY into variants of the float-point table.

    .venv/bin/python bench/pg_variants.py [--points 1000000] [--batch 10000]

No Django, no HTTP: rows are packed once into PostgreSQL binary COPY buffers,
then each variant of ``runs_floatpoint`` receives the same 1,000,000 rows in
transactions of 10,000 rows (one COPY + COMMIT each, like one batch request).
Variants, all in the throwaway database ``runstore_bench``:

* ``as-migrated``: the schema ``migrate`` creates today (hypertable on step,
  PK (series_id, step), Django's index on series_id, TimescaleDB's default
  index on step DESC);
* ``no series_id index``: without Django's series_id index (the PK's leading column
  already serves it);
* ``pk-only``: hypertable without TimescaleDB's default step index either
  (``create_default_indexes => false``);
* ``plain pk-only``: an ordinary table with the PK alone;
* ``... + async commit``: the same with ``SET LOCAL synchronous_commit = off``.

Reports rows/s of the COPY+COMMIT loop, bytes per row (table + indexes) and
the downsample query's time on each, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PG_BENCH_DB, log, median, pg_connect, pg_drop, pg_recreate  # noqa: E402

COLUMNS = "(series_id, step, timestamp, value)"
DDL = "CREATE TABLE {t} (step bigint NOT NULL, timestamp double precision NOT NULL, value double precision, series_id bigint NOT NULL, PRIMARY KEY (series_id, step))"

VARIANTS = [
    # name, hypertable?, default timescale indexes?, extra series_id index?, synchronous_commit off?
    ("as-migrated", True, True, True, False),
    ("no series_id index", True, True, False, False),
    ("pk-only", True, False, False, False),
    ("plain pk-only", False, False, False, False),
    ("as-migrated + async commit", True, True, True, True),
    ("pk-only + async commit", True, False, False, True),
]

# the variants bench/run_all.py --variants runs (the others on request with --only)
DEFAULT_SET = ["as-migrated", "no series_id index", "pk-only", "pk-only + async commit"]

DOWNSAMPLE = """
    WITH b AS (
        SELECT (step - %(lo)s) / %(w)s AS bucket, min(step) AS s0, max(step) AS s1, count(*) AS n,
               min(value) FILTER (WHERE value <> 'NaN'::float8), max(value) FILTER (WHERE value <> 'NaN'::float8),
               avg(value) FILTER (WHERE value <> 'NaN'::float8 AND value <> 'Infinity'::float8 AND value <> '-Infinity'::float8)
        FROM {t} WHERE series_id = %(sid)s AND step >= %(lo)s AND step <= %(hi)s GROUP BY 1
    )
    SELECT b.*, p.value FROM b JOIN {t} p ON p.series_id = %(sid)s AND p.step = b.s1 ORDER BY b.bucket
"""


def buffers(points: int, batch: int, series_id: int = 1):
    rng = random.Random(1)
    pack = struct.Struct("!hiqiqidid").pack
    out = []
    for lo in range(0, points, batch):
        buf = bytearray(b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8)
        for step in range(lo, min(points, lo + batch)):
            buf += pack(4, 8, series_id, 8, step, 8, 1.7e9 + step * 0.01, 8, rng.gauss(1.0, 0.25))
        buf += b"\xff\xff"
        out.append(bytes(buf))
    return out


def run_variant(conn, name, hyper, default_idx, series_idx, async_commit, bufs, points, table):
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(DDL.format(t=table))
    if series_idx:
        conn.execute(f"CREATE INDEX {table}_series_idx ON {table} (series_id)")
    if hyper:
        conn.execute(
            f"SELECT create_hypertable('{table}', by_range('step', 1000000::bigint), create_default_indexes => %s)",
            [default_idx],
        )
    lat = []
    start = time.perf_counter()
    for buf in bufs:
        t = time.perf_counter()
        with conn.transaction():
            if async_commit:
                conn.execute("SET LOCAL synchronous_commit = off")
            with conn.cursor().copy(f"COPY {table} {COLUMNS} FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(buf)
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    conn.execute(f"VACUUM ANALYZE {table}")
    size_sql = f"SELECT hypertable_size('{table}')" if hyper else f"SELECT pg_total_relation_size('{table}')"
    size = conn.execute(size_sql).fetchone()[0]
    q = DOWNSAMPLE.format(t=table)
    params = {"lo": 0, "w": points // 1000, "sid": 1, "hi": points - 1}
    times = []
    for _ in range(7):
        t = time.perf_counter()
        conn.execute(q, params).fetchall()
        times.append(time.perf_counter() - t)
    return {
        "variant": name,
        "rows_per_s": points / wall,
        "commit_median_ms": median(lat) * 1000,
        "bytes_per_row": size / points,
        "downsample_ms": median(times) * 1000,
    }


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--only", type=lambda v: [x for x in v.split(",") if x], help="comma-separated variant names")
    args = p.parse_args(argv)
    bufs = buffers(args.points, args.batch)
    pg_recreate(PG_BENCH_DB)
    results = []
    try:
        with pg_connect(PG_BENCH_DB) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            for i, v in enumerate(VARIANTS):
                if args.only and v[0] not in args.only:
                    continue
                r = run_variant(conn, *v, bufs, args.points, f"fp_variant_{i}")
                log(
                    f"{r['variant']:28s} {r['rows_per_s']:>10,.0f} rows/s  commit {r['commit_median_ms']:6.1f} ms  "
                    f"{r['bytes_per_row']:6.1f} B/row  downsample {r['downsample_ms']:6.1f} ms"
                )
                results.append(r)
                conn.execute(f"DROP TABLE fp_variant_{i}")
    finally:
        pg_drop(PG_BENCH_DB)
    print(f"{'variant':28s} {'rows/s':>10s} {'commit ms':>9s} {'B/row':>6s} {'downsample ms':>13s}")
    for r in results:
        print(
            f"{r['variant']:28s} {r['rows_per_s']:>10,.0f} {r['commit_median_ms']:9.1f} {r['bytes_per_row']:6.1f} "
            f"{r['downsample_ms']:13.1f}"
        )
    return results


if __name__ == "__main__":
    main()

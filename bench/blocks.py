"""Packed point blocks (runs.blocks, docs/series-blocks.md): bytes per float point and read times.

    .venv/bin/python bench/blocks.py --db postgres     # needs RUNSTORE_TEST_PG_URL (source var/services.env)
    .venv/bin/python bench/blocks.py --db sqlite

1. Encoding (no database): compressed bytes per point of each column of three 1M-point series
   under the candidate codecs and block sizes, and the encode/decode rate of the chosen one.
2. Bytes per point on disk, indexes included, for three 1M-point float series: a realistic
   training curve (a decreasing loss with noise, rounded to float32 as ``loss.item()`` of a
   float32 tensor gives; steps 0..N; timestamps 10 ms apart), the same curve with full float64
   noise, and a worst case (uniformly random float64 values, random step gaps, jittered times).
   Each is written through ``runs.series.insert_float_points`` (blocks plus the open tail) and, side
   by side in the same database, as rows into a copy of the row table (the previous layout: one row
   per point; on PostgreSQL a hypertable on step like ``runs_floatpoint``).
3. Reads of a 10M-point series through ``runs.series``: 1,000 buckets over the whole range and a 1%
   window (roll-ups plus decoded edges), a raw read of 100,000 points (``read_points``; beside it
   the previous layout's statement over the rows copy), and the wall-clock times of 1,000 steps;
   medians of 30 calls.

Creates and drops the database ``runstore_bench_blocks`` (PostgreSQL) or a file under /tmp (SQLite).
"""

import argparse
import json
import os
import statistics
import sys
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = "runstore_bench_blocks"
SQLITE_PATH = "/tmp/runstore_bench_blocks.db"


def log(msg=""):
    print(msg, flush=True)


# --- data -------------------------------------------------------------------


def dataset(name: str, n: int, seed: int = 18):
    """``(steps int64, timestamps float64, values float64)`` of one of the three series."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    curve = 2.5 * np.exp(-i / (n / 5)) + 0.3
    if name == "realistic":
        values = (curve + 0.05 * rng.standard_normal(n)).astype(np.float32).astype(np.float64)
        return i.astype(np.int64), 1.7e9 + i * 0.01, values
    if name == "float64_noise":
        return i.astype(np.int64), 1.7e9 + i * 0.01, curve + 0.05 * rng.standard_normal(n)
    steps = np.cumsum(rng.integers(1, 1000, n)).astype(np.int64)
    times = 1.7e9 + np.cumsum(rng.exponential(0.01, n))
    return steps, times, rng.random(n)


DATASETS = ("realistic", "float64_noise", "worst_case")


# --- 1. encoding ------------------------------------------------------------


def bench_encoding(n: int) -> dict:
    from runs import blocks

    def shuffle(bits):
        return np.ascontiguousarray(bits.view(np.uint8).reshape(-1, 8).T).tobytes()

    def xor(bits):
        out = bits.copy()
        out[1:] ^= bits[:-1]
        return out

    def variants(values):
        bits = values.view(np.int64)
        return {
            "plain+zlib6": lambda: zlib.compress(values.tobytes(), 6),
            "shuffle+zlib6": lambda: zlib.compress(shuffle(bits), 6),
            "xor+shuffle+zlib1": lambda: zlib.compress(shuffle(xor(bits)), 1),
            "xor+shuffle+zlib6": lambda: zlib.compress(shuffle(xor(bits)), 6),
            "xor+shuffle+zlib9": lambda: zlib.compress(shuffle(xor(bits)), 9),
        }

    out: dict = {}
    for name in DATASETS:
        steps, times, values = dataset(name, n)
        row: dict = {}
        for size in (1024, 4096, 16384):
            sums: dict = {}
            for start in range(0, n - size + 1, size):
                part = slice(start, start + size)
                for codec, make in variants(values[part]).items():
                    sums[codec] = sums.get(codec, 0) + len(make())
                sums["steps dod"] = sums.get("steps dod", 0) + len(blocks.encode_ints(steps[part]))
                sums["times dod"] = sums.get("times dod", 0) + len(blocks.encode_times(times[part]))
            used = n // size * size
            row[size] = {k: round(v / used, 3) for k, v in sums.items()}
        out[name] = row
        log(f"encoding {name}: bytes per point by block size")
        for size, numbers in row.items():
            log(f"  {size:6d}: " + ", ".join(f"{k} {v:.3f}" for k, v in numbers.items()))
    # the chosen codec's speed at the default block size
    size = 4096
    steps, times, values = dataset("realistic", n)
    t0 = time.perf_counter()
    encoded = [
        (
            blocks.encode_ints(steps[s : s + size]),
            blocks.encode_times(times[s : s + size]),
            blocks.encode_floats(values[s : s + size]),
        )
        for s in range(0, n - size + 1, size)
    ]
    enc_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for a, b, c in encoded:
        blocks.decode(a, size), blocks.decode_times(b, size), blocks.decode(c, size)
    dec_s = time.perf_counter() - t0
    points = len(encoded) * size
    out["speed"] = {"encode_points_per_s": points / enc_s, "decode_points_per_s": points / dec_s}
    log(f"chosen codec, blocks of {size}: encode {points / enc_s:,.0f} points/s, decode {points / dec_s:,.0f} points/s")
    return out


# --- database set-up --------------------------------------------------------


def setup(db: str, pg_url: str | None) -> None:
    if db == "postgres":
        import psycopg

        parts = urlsplit(pg_url)
        admin = urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
            conn.execute(f"CREATE DATABASE {DB_NAME}")
        os.environ["DATABASE_URL"] = urlunsplit((parts.scheme, parts.netloc, f"/{DB_NAME}", "", ""))
        os.environ.setdefault("RUNSTORE_TIMESCALEDB", "required")
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(SQLITE_PATH + suffix).unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{SQLITE_PATH}"
        os.environ.setdefault("RUNSTORE_TIMESCALEDB", "auto")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def teardown(db: str, pg_url: str | None, keep: bool) -> None:
    from django.db import connections

    connections.close_all()
    if keep:
        return
    if db == "postgres":
        import psycopg

        parts = urlsplit(pg_url)
        admin = urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(SQLITE_PATH + suffix).unlink(missing_ok=True)


def make_series(path: str):
    from django.contrib.auth.models import User

    from projects import services as project_services
    from runs import services as run_services
    from runs.models import Attribute, AttributeType

    user = User.objects.filter(username="bench").first() or User.objects.create_user("bench", password="bench-pw")
    workspace = (
        user.personal_workspace
        if hasattr(user, "personal_workspace")
        else project_services.create_workspace(user, "bench")
    )
    project = workspace.projects.filter(slug="blocks").first() or project_services.create_project(
        user, workspace, "blocks", key="BB"
    )
    run, _ = run_services.create_run(user, project, name=path)
    return Attribute.objects.create(run=run, project_id=project.pk, path=path, type=AttributeType.FLOAT_SERIES)


def write_blocks(attr_id: int, steps, times, values, chunk: int = 100_000) -> float:
    """Append through runs.series as a batch does (the attribute's count first, then the points);
    returns the seconds it took."""
    from django.db import connection, transaction

    from runs import series as series_store

    t0 = time.perf_counter()
    for start in range(0, len(steps), chunk):
        part = slice(start, start + chunk)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE runs_attribute SET count = count + %s, first_step = COALESCE(first_step, %s), "
                    "last_step = %s, float_value = %s WHERE id = %s",
                    [len(steps[part]), int(steps[0]), int(steps[part][-1]), float(values[part][-1]), attr_id],
                )
            series_store.insert_float_points([(attr_id, steps[part], times[part], values[part])])
    return time.perf_counter() - t0


def write_rows(table: str, attr_id: int, steps, times, values, chunk: int = 100_000) -> float:
    """The previous layout: every point a row of a copy of runs_floatpoint (COPY / executemany)."""
    from django.db import connection, transaction

    from runs import series as series_store

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"CREATE TABLE {table} (LIKE runs_floatpoint INCLUDING ALL)")
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
            if cursor.fetchone():
                from runs.timescale import CHUNK_STEPS

                cursor.execute(
                    f"SELECT create_hypertable('{table}', by_range('step', %s::bigint), create_default_indexes => FALSE)",
                    [CHUNK_STEPS],
                )
        else:
            cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'runs_floatpoint'")
            cursor.execute(cursor.fetchone()[0].replace('"runs_floatpoint"', f'"{table}"', 1))
    t0 = time.perf_counter()
    for start in range(0, len(steps), chunk):
        part = slice(start, start + chunk)
        with transaction.atomic():
            series_store._insert(
                table, [(attr_id, steps[part], times[part], values[part])], series_store._write_packed_floats
            )
    return time.perf_counter() - t0


def table_bytes(tables: list[str]) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            total = 0
            for table in tables:
                cursor.execute(f"VACUUM ANALYZE {table}")
                cursor.execute("SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = %s", [table])
                how = "hypertable_size" if cursor.fetchone() else "pg_total_relation_size"
                cursor.execute(f"SELECT {how}(%s::regclass)", [table])
                total += cursor.fetchone()[0] or 0
            return total
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        marks = ", ".join(["%s"] * len(tables))
        cursor.execute(
            f"SELECT name FROM sqlite_master WHERE tbl_name IN ({marks}) AND type IN ('table', 'index')", tables
        )
        names = [r[0] for r in cursor.fetchall()]
        cursor.execute(f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({', '.join(['%s'] * len(names))})", names)
        return cursor.fetchone()[0] or 0


# --- 2. bytes per point -----------------------------------------------------


def bench_storage(n: int) -> dict:
    new_tables = ["runs_floatblock", "runs_floatpoint"]
    out = {}
    for name in DATASETS:
        steps, times, values = dataset(name, n)
        attr = make_series(name)
        before = table_bytes(new_tables)
        write_s = write_blocks(attr.pk, steps, times, values)
        blocks_bytes = table_bytes(new_tables) - before
        rows_s = write_rows(f"bench_rows_{name}", attr.pk, steps, times, values)
        rows_bytes = table_bytes([f"bench_rows_{name}"])
        out[name] = {
            "series_id": attr.pk,
            "points": n,
            "blocks_bytes_per_point": blocks_bytes / n,
            "rows_bytes_per_point": rows_bytes / n,
            "ratio": rows_bytes / max(1, blocks_bytes),
            "blocks_write_points_per_s": n / write_s,
            "rows_write_points_per_s": n / rows_s,
        }
        log(
            f"{name:14s} blocks {blocks_bytes / n:6.2f} bytes/point vs rows {rows_bytes / n:6.2f} "
            f"({rows_bytes / max(1, blocks_bytes):.1f}x); written {n / write_s:,.0f} points/s as blocks, "
            f"{n / rows_s:,.0f} as rows"
        )
    return out


# --- 3. reads -----------------------------------------------------------------


def median_ms(call, repeat=30):
    call()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench_reads(points: int, rows_table: str, rows_series: int) -> dict:
    from django.db import connection

    from runs import rollups
    from runs import series as series_store
    from runs.models import Attribute

    steps, times, values = dataset("realistic", points, seed=7)
    attr = make_series("big")
    write_s = write_blocks(attr.pk, steps, times, values, chunk=500_000)
    log(f"wrote {points:,} points as blocks in {write_s:.1f} s ({points / write_s:,.0f} points/s)")
    t0 = time.perf_counter()
    rollups.roll_up(attr.pk)
    rollup_s = time.perf_counter() - t0
    log(f"rolled up {points:,} points in {rollup_s:.1f} s ({points / rollup_s:,.0f} points/s)")
    attr = Attribute.objects.get(pk=attr.pk)
    first, last = attr.first_step, attr.last_step
    mid = points // 2
    out = {"points": points, "write_points_per_s": points / write_s, "rollup_points_per_s": points / rollup_s}
    for name, lo, hi in (
        ("whole_1000_buckets", None, None),
        ("window_1pct_1000_buckets", mid, mid + points // 100 - 1),
    ):
        ms = median_ms(lambda lo=lo, hi=hi: series_store.downsample(attr.pk, first, last, 1000, lo, hi))
        out[name + "_ms"] = ms
        log(f"{name:26s} {ms:6.1f} ms median")
    ms = median_ms(lambda: series_store.read_points(attr.pk, series_store.FLOAT_TABLE, from_step=mid, limit=100_000))
    out["raw_100k_ms"] = ms
    got = series_store.read_points(attr.pk, series_store.FLOAT_TABLE, from_step=mid, limit=100_000)
    assert len(got["steps"]) == 100_000 and got["values"][0] == values[mid]

    def old_read():  # the previous read_points: one statement over the rows, lists from the tuples
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT step, timestamp, value FROM {rows_table} WHERE series_id = %s AND step >= %s ORDER BY step LIMIT %s",
                [rows_series, 200_000, 100_001],
            )
            rows = cursor.fetchall()[:100_000]
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]

    old_ms = median_ms(old_read)
    new_small = median_ms(
        lambda: series_store.read_points(attr.pk, series_store.FLOAT_TABLE, from_step=200_000, limit=100_000)
    )
    out["raw_100k_rows_layout_ms"] = old_ms
    log(f"raw read of 100,000 points  {ms:6.1f} ms median (blocks); same shape over the rows copy {old_ms:.1f} ms")
    out["raw_100k_blocks_same_window_ms"] = new_small
    wanted = np.linspace(first, last, 1000).astype(np.int64).tolist()
    ms = median_ms(lambda: series_store.step_times(attr.pk, wanted))
    out["step_times_1000_ms"] = ms
    log(f"wall-clock times of 1,000 steps {ms:6.1f} ms median")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--points", type=int, default=1_000_000, help="points of each storage series")
    parser.add_argument("--read-points", type=int, default=10_000_000)
    parser.add_argument("--pg-url", default=os.environ.get("RUNSTORE_TEST_PG_URL"))
    parser.add_argument("--skip-encoding", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    if args.db == "postgres" and not args.pg_url:
        sys.exit("set RUNSTORE_TEST_PG_URL (source var/services.env) or pass --pg-url")
    log(f"load average before: {os.getloadavg()}")
    setup(args.db, args.pg_url)
    from django.conf import settings

    from runs.timescale import timescale_status

    log(f"{args.db}: {timescale_status()}; blocks of {settings.RUNSTORE_SERIES_BLOCK_POINTS} points")
    result: dict = {"db": args.db}
    try:
        if not args.skip_encoding:
            result["encoding"] = bench_encoding(args.points)
        result["storage"] = bench_storage(args.points)
        if args.read_points:
            realistic = result["storage"]["realistic"]["series_id"]
            result["reads"] = bench_reads(args.read_points, "bench_rows_realistic", realistic)
    finally:
        teardown(args.db, args.pg_url, args.keep)
    result["load_average_after"] = os.getloadavg()
    log(f"load average after: {result['load_average_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()

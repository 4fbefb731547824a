"""Roll-up benchmark on PostgreSQL + TimescaleDB.

1. Read: a 10,000,000-point float series (written with COPY, then rolled up)
   read at 1,000 buckets over its whole range and over a 1% zoom window;
   ``runs.series.downsample`` timed in the Django process (SQL + merge), median
   of 30 calls each. Also the same reads straight from raw points, for scale.
2. Roll-up rate: the time ``runs.rollups.roll_up`` takes for those 10M points.
3. Lag: a writer thread COPYs points at a target of 200,000 points/s (batches
   of 20,000) while a roller thread (one connection, like one ``ingest``
   worker) rolls the series up in a loop; the lag is the number of final
   points not rolled up yet, sampled after each batch.

    .venv/bin/python bench/rollups.py [--points 10000000] [--lag-points 3000000]

Needs RUNSTORE_TEST_PG_URL (or --pg-url); creates and drops the database
``runstore_bench_rollups``.
"""

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = "runstore_bench_rollups"


def log(msg):
    print(msg, flush=True)


def setup_database(pg_url: str) -> str:
    import psycopg

    parts = urlsplit(pg_url)
    admin = urlunsplit(
        (
            parts.scheme.replace("postgres", "postgresql", 1) if parts.scheme == "postgres" else parts.scheme,
            parts.netloc,
            parts.path,
            "",
            "",
        )
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    return urlunsplit((parts.scheme, parts.netloc, f"/{DB_NAME}", "", ""))


def drop_database(pg_url: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    parts = urlsplit(pg_url)
    admin = urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")


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
    project = workspace.projects.filter(slug="rollups").first() or project_services.create_project(
        user, workspace, "rollups", key="RB"
    )
    run, _ = run_services.create_run(user, project, name=path)
    return (
        Attribute.objects.create(run=run, project_id=project.pk, path=path, type=AttributeType.FLOAT_SERIES)
        if "project" in {f.name for f in Attribute._meta.fields}
        else Attribute.objects.create(run=run, path=path, type=AttributeType.FLOAT_SERIES)
    )


def write(attr_id: int, start: int, n: int) -> None:
    """COPY n points (a noisy decaying curve) and move the series statistics like ingest does."""
    import math
    import random

    from django.db import connection, transaction

    from runs import series as series_store

    rng = random.Random(start)
    steps = range(start, start + n)
    values = [2.0 * math.exp(-s / 3e6) + rng.gauss(0, 0.05) for s in steps]
    now = time.time()
    with transaction.atomic():
        series_store.insert_float_points([(attr_id, steps, [now] * n, values)])
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE runs_attribute SET count = count + %s, first_step = COALESCE(first_step, %s), last_step = %s, "
                "float_value = %s WHERE id = %s",
                [n, start, start + n - 1, values[-1], attr_id],
            )


def median_ms(call, repeat=30):
    call()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench_reads(points: int) -> dict:
    from runs import rollups
    from runs import series as series_store
    from runs.models import Attribute

    attr = make_series("big")
    t0 = time.perf_counter()
    chunk = 200_000
    for start in range(0, points, chunk):
        write(attr.pk, start, min(chunk, points - start))
    load_s = time.perf_counter() - t0
    log(f"wrote {points:,} points with COPY in {load_s:.1f} s ({points / load_s:,.0f} points/s)")
    t0 = time.perf_counter()
    rolled = rollups.roll_up(attr.pk)
    rollup_s = time.perf_counter() - t0
    log(f"rolled up {points:,} points in {rollup_s:.1f} s ({points / rollup_s:,.0f} points/s); cursor {rolled:,}")
    attr = Attribute.objects.get(pk=attr.pk)
    zoom_lo = points // 2
    zoom_hi = zoom_lo + points // 100 - 1
    out = {
        "points": points,
        "load_points_per_s": points / load_s,
        "rollup_s": rollup_s,
        "rollup_points_per_s": points / rollup_s,
    }
    for name, lo, hi in (("whole", None, None), ("zoom_1pct", zoom_lo, zoom_hi)):
        data = series_store.downsample(attr.pk, attr.first_step, attr.last_step, 1000, lo, hi)
        ms = median_ms(
            lambda lo=lo, hi=hi: series_store.downsample(attr.pk, attr.first_step, attr.last_step, 1000, lo, hi)
        )
        plan = rollups.plan(lo if lo is not None else attr.first_step, hi if hi is not None else attr.last_step, 1000)
        level = plan[0] if plan else None
        raw_ms = median_ms(
            lambda lo=lo, hi=hi: series_store._downsample_raw(
                attr.pk, lo if lo is not None else attr.first_step, hi if hi is not None else attr.last_step, 1000
            ),
            repeat=3,
        )
        out[name] = {
            "median_ms": ms,
            "buckets": len(data["steps"]),
            "bucket_width": data["bucket_width"],
            "level_width": rollups.width(level) if plan else None,
            "raw_scan_median_ms": raw_ms,
            "points": sum(data["counts"]),
        }
        log(
            f"read {name:9s}: {ms:6.1f} ms median ({len(data['steps'])} buckets of {data['bucket_width']:,} steps, "
            f"level width {rollups.width(level) if plan else 'raw'}); raw-point scan for comparison {raw_ms:,.0f} ms"
        )
    return out


def bench_lag(points: int, rate: int, batch: int = 20_000) -> dict:
    from django.db import connection

    from runs import rollups

    attr = make_series("live")
    done = threading.Event()
    rolls = []

    def roller():
        try:
            while not done.is_set():
                t0 = time.perf_counter()
                before = rollups.stale_series()
                rollups.roll_up(attr.pk)
                rolls.append(time.perf_counter() - t0)
                if not before:
                    time.sleep(0.02)
            rollups.roll_up(attr.pk)
        finally:
            connection.close()

    thread = threading.Thread(target=roller)
    thread.start()
    lags, t_start = [], time.perf_counter()
    for start in range(0, points, batch):
        due = t_start + start / rate
        if time.perf_counter() < due:
            time.sleep(due - time.perf_counter())
        write(attr.pk, start, batch)
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolled_until FROM runs_rollupcursor WHERE series_id = %s", [attr.pk])
            row = cursor.fetchone()
        lags.append(rollups.closed_until(start + batch - 1) - (row[0] if row else 0))
    ingest_s = time.perf_counter() - t_start
    t_end = time.perf_counter()
    done.set()
    thread.join()
    catch_up_s = time.perf_counter() - t_end
    achieved = points / ingest_s
    out = {
        "points": points,
        "target_points_per_s": rate,
        "achieved_points_per_s": achieved,
        "lag_points_max": max(lags),
        "lag_points_median": statistics.median(lags),
        "lag_seconds_max": max(lags) / achieved,
        "catch_up_after_ingest_s": catch_up_s,
        "rollup_passes": len(rolls),
    }
    log(
        f"ingest {achieved:,.0f} points/s (target {rate:,}) with roll-ups alongside: lag median "
        f"{statistics.median(lags):,.0f} points, max {max(lags):,} points (~{max(lags) / achieved:.2f} s of ingest); "
        f"caught up {catch_up_s:.2f} s after ingest stopped"
    )
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--lag-points", type=int, default=3_000_000)
    parser.add_argument("--rate", type=int, default=200_000)
    parser.add_argument("--pg-url", default=os.environ.get("RUNSTORE_TEST_PG_URL"))
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()
    if not args.pg_url:
        sys.exit("set RUNSTORE_TEST_PG_URL (source var/services.env) or pass --pg-url")
    os.environ["DATABASE_URL"] = setup_database(args.pg_url)
    os.environ.setdefault("RUNSTORE_TIMESCALEDB", "required")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from runs.timescale import timescale_status

    log(f"PostgreSQL: {timescale_status()}")
    try:
        reads = bench_reads(args.points)
        lag = bench_lag(args.lag_points, args.rate)
    finally:
        if not args.keep:
            drop_database(args.pg_url)
    import json

    print(json.dumps({"reads": reads, "lag": lag}, indent=1))


if __name__ == "__main__":
    main()

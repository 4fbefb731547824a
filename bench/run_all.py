"""Run every benchmark side by side and print one summary table.

    bench/run_all.sh [--points 1000000] [--mlflow-points 50000] [--senders 2]
                     [--workers 2 --threads 2] [--source HEAD|worktree|REV] [--variants] [--no-mlflow]
                     [--client-calls 1000000] [--no-client]

Steps (each sets up and tears down its own servers and databases):

1. Runstore on PostgreSQL+TimescaleDB, then on SQLite (``bench/ingest.py``):
   ``--points`` points over HTTP in batches of 10,000 from one client, then the
   same number again from ``--senders`` concurrent clients (one run each), the
   read benchmark on the 1,000,000-point run (``bench/read.py``), bytes/point;
2. MLflow's server (``bench/mlflow_bench.py``, its own virtualenv) with a SQLite
   and a PostgreSQL backend store, ``--mlflow-points`` points through ``log_batch``;
3. the client's hot path next to MLflow, W&B and Aim (``bench/client_compare.py``,
   each tool in its own virtualenv): calling-thread cost of logging one float point;
4. with ``--variants``, the database alone: COPY into variants of the float-point table
   (``bench/pg_variants.py``), for where the ingest time goes.

Everything lands in ``bench/results/run_all.json``; the table goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_DIR, REPO, save_result  # noqa: E402

MLFLOW_PYTHON = BENCH_DIR / ".venv-mlflow" / "bin" / "python"


def loadavg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def fmt_rate(x) -> str:
    return f"{x:,.0f}" if x is not None else "-"


def fmt_ms(x) -> str:
    return f"{x:,.1f}" if x is not None else "-"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--mlflow-points", type=int, default=50_000)
    p.add_argument("--senders", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20, help="HTTP/SQL read repetitions")
    p.add_argument("--source", default=None, help="git revision to benchmark (default HEAD), or 'worktree'")
    p.add_argument("--variant-points", type=int, default=500_000, help="rows per table variant in step 4")
    p.add_argument("--variants", action="store_true", help="also step 4 (about 2 more minutes)")
    p.add_argument("--no-mlflow", dest="mlflow", action="store_false")
    p.add_argument("--client-calls", type=int, default=1_000_000, help="Runstore appends in the client comparison")
    p.add_argument("--no-client", dest="client", action="store_false", help="skip the client comparison")
    args = p.parse_args(argv)

    started = time.monotonic()
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "load_before": loadavg(),
    }
    import ingest
    from common import resolve_source

    args.source = resolve_source(args.source)

    ingest_args = [
        "--db",
        "both",
        "--points",
        str(args.points),
        "--senders",
        str(args.senders),
        "--workers",
        str(args.workers),
        "--threads",
        str(args.threads),
        "--with-read",
        "--read-repeats",
        str(args.repeats),
    ]
    ingest_args += ["--source", args.source]
    with contextlib.redirect_stdout(sys.stderr):
        runstore = ingest.main(ingest_args)
    meta["load_after_runstore"] = loadavg()

    mlflow = {}
    if args.mlflow:
        if not MLFLOW_PYTHON.exists():
            raise SystemExit("bench/.venv-mlflow is missing: run bench/run_all.sh (it creates it)")
        out = subprocess.run(
            [
                str(MLFLOW_PYTHON),
                str(BENCH_DIR / "mlflow_bench.py"),
                "--points",
                str(args.mlflow_points),
                "--backend",
                "both",
                "--json",
            ],
            cwd=REPO,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        mlflow = json.loads(out.stdout[out.stdout.index("{") :])
        meta["load_after_mlflow"] = loadavg()

    client = {}
    if args.client:
        import client_compare

        with contextlib.redirect_stdout(sys.stderr):
            client = client_compare.main(["--calls", str(args.client_calls), "--source", args.source]) or {}
        meta["load_after_client"] = loadavg()

    variants = []
    if args.variants:
        import pg_variants

        with contextlib.redirect_stdout(sys.stderr):
            variants = pg_variants.main(
                ["--points", str(args.variant_points), "--only=" + ",".join(pg_variants.DEFAULT_SET)]
            )
    meta["load_after"] = loadavg()
    meta["total_s"] = time.monotonic() - started
    save_result(
        "run_all", {"meta": meta, "runstore": runstore, "mlflow": mlflow, "client": client, "pg_variants": variants}
    )

    # --- summary ---------------------------------------------------------------
    print()
    print(
        f"Runstore benchmark, {meta['date']}, {meta['machine']}, load avg {meta['load_before']} -> {meta['load_after']}"
    )
    src = next(iter(runstore.values()))
    print(f"server code: {src['source']}; {src['server']}; {args.points:,} points in batches of {src['batch']:,}")
    print()
    head = (
        f"{'':22s} {'points/s':>10s} {'@median':>10s} {'batch ms':>9s} {'B/point':>8s} {f'{args.senders} senders':>11s}"
    )
    print("INGEST (sequential client; points/s = points / wall time; @median = batch size / median batch latency)")
    print(head)
    for db, r in runstore.items():
        s, c = r["sequential"], r.get("concurrent", {})
        label = "runstore/" + ("postgres+tsdb" if r["timescaledb"] else db)
        print(
            f"{label:22s} {fmt_rate(s['points_per_s']):>10s} {fmt_rate(s['points_per_s_at_median_batch']):>10s} "
            f"{fmt_ms(s['batch_latency_median_ms']):>9s} {r['storage']['bytes_per_point']:8.1f} "
            f"{fmt_rate(c.get('points_per_s')):>11s}"
        )
    for b, r in mlflow.items():
        print(
            f"{'mlflow/' + b:22s} {fmt_rate(r['points_per_s']):>10s} {fmt_rate(r['batch'] / (r['batch_latency_median_ms'] / 1000)):>10s} "
            f"{fmt_ms(r['batch_latency_median_ms']):>9s} {r['storage']['bytes_per_point']:8.1f} {'-':>11s}"
            f"   ({r['points']:,} points, batches of {r['batch']:,})"
        )
    pairs = [("postgres", "postgres"), ("sqlite", "sqlite")]
    for rs, ml in pairs:
        if rs in runstore and ml in mlflow:
            ratio = runstore[rs]["sequential"]["points_per_s"] / mlflow[ml]["points_per_s"]
            size = mlflow[ml]["storage"]["bytes_per_point"] / runstore[rs]["storage"]["bytes_per_point"]
            print(f"ratio runstore/mlflow on {rs}: {ratio:,.1f}x points/s; mlflow uses {size:.1f}x the bytes per point")
    print()
    print("READ: 1,000 buckets over the whole series, and a 1% window (ms, medians)")
    print(f"{'':22s} {'HTTP full':>10s} {'SQL full':>10s} {'HTTP 1%':>10s} {'SQL 1%':>10s}")
    for db, r in runstore.items():
        rd = r.get("read")
        if not rd:
            continue
        label = "runstore/" + ("postgres+tsdb" if r["timescaledb"] else db)
        print(
            f"{label:22s} {fmt_ms(rd['http_full']['median_ms']):>10s} {fmt_ms(rd['sql']['full']['median_ms']):>10s} "
            f"{fmt_ms(rd['http_zoom']['median_ms']):>10s} {fmt_ms(rd['sql']['zoom']['median_ms']):>10s}"
            f"   full: {rd['http_full']['buckets']} buckets of {rd['http_full']['bucket_width']} steps, "
            f"{rd['http_full']['response_bytes']:,} B JSON; background tasks drained {r['background_tasks_drained_after_s']:.0f} s "
            f"after the last batch"
        )
        for name, c in rd["sql"].get("candidates", {}).items():
            print(
                f"  {'SQL candidate ' + name:40s} full {fmt_ms(c['full_ms']):>8s}  1% {fmt_ms(c['zoom_ms']):>8s}"
                f"  same buckets: {c['same']}"
            )
    if client:
        print()
        print("CLIENT: " + client_compare.table(client))
    if variants:
        print()
        print(f"DATABASE ALONE: COPY of {args.variant_points:,} rows in transactions of 10,000 (no Django, no HTTP)")
        print(f"{'variant':28s} {'rows/s':>10s} {'commit ms':>9s} {'B/row':>6s}")
        for v in variants:
            print(
                f"{v['variant']:28s} {v['rows_per_s']:>10,.0f} {v['commit_median_ms']:9.1f} {v['bytes_per_row']:6.1f}"
            )
    print()
    pg = runstore.get("postgres")
    if pg:
        rate = pg["sequential"]["points_per_s"]
        print(
            f"target ingest >= 200,000 points/s on PostgreSQL: {'met' if rate >= 200_000 else 'NOT met'} ({rate:,.0f})"
        )
        if pg.get("read"):
            ms = pg["read"]["sql"]["full"]["median_ms"]
            http = pg["read"]["http_full"]["median_ms"]
            print(
                f"target downsample < 100 ms on PostgreSQL+TimescaleDB: SQL {'met' if ms < 100 else 'NOT met'} ({ms:,.1f} ms), "
                f"HTTP {'met' if http < 100 else 'NOT met'} ({http:,.1f} ms)"
            )
    print(f"total time {meta['total_s'] / 60:.1f} min; results in bench/results/run_all.json")


if __name__ == "__main__":
    main()

"""MLflow comparison: the same points logged to an MLflow tracking server with ``MlflowClient.log_batch``.

    bench/.venv-mlflow/bin/python bench/mlflow_bench.py [--points 100000] [--backend sqlite|postgres|both] [--json]

Runs in its own virtualenv (``bench/requirements-mlflow.txt``; ``bench/run_all.sh``
creates it). Starts ``mlflow server`` on 127.0.0.1 with a throwaway backend store
(a SQLite file in a temporary directory, and/or the PostgreSQL database
``mlflow_bench``, dropped and created each time), logs the points of
``bench/ingest.py``'s series (same values, steps, timestamps) in batches of
1,000 metrics (MLflow's per-request limit) from one sequential client, and
reports points/s (first request to last response, client-side encoding
included, as for Runstore), the median per-batch latency and bytes on disk
per point (SQLite: ``dbstat`` over ``metrics`` and its indexes; PostgreSQL:
``pg_total_relation_size('metrics')``). ``latest_metrics`` holds one row per
key and is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    PG_HOST,
    PG_MAINTENANCE_DB,
    PG_PASSWORD,
    PG_PORT,
    PG_USER,
    free_port,
    log,
    median,
    save_result,
    stop_process,
    wait_http,
)

MLFLOW_DB = "mlflow_bench"
BIN = Path(sys.executable).parent


def pg2(db):
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD, dbname=db)
    conn.autocommit = True
    return conn


def pg_reset(create: bool) -> None:
    conn = pg2(PG_MAINTENANCE_DB)
    try:
        cur = conn.cursor()
        cur.execute(f'DROP DATABASE IF EXISTS "{MLFLOW_DB}" WITH (FORCE)')
        if create:
            cur.execute(f'CREATE DATABASE "{MLFLOW_DB}"')
    finally:
        conn.close()


def make_points(n: int):
    # the same series as bench/ingest.py (same seed, values, steps, timestamps)
    import random

    rng = random.Random(1)
    t0 = 1_700_000_000.0
    return list(range(n)), [t0 + i * 0.01 for i in range(n)], [rng.gauss(1.0, 0.25) for _ in range(n)]


def bench_backend(backend: str, points: int, batch: int, workers: int, settle: float = 3.0) -> dict:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    tmp = Path(tempfile.mkdtemp(prefix=f"mlflow-bench-{backend}-"))
    db_file = tmp / "mlflow.db"
    if backend == "postgres":
        pg_reset(create=True)
        store = f"postgresql+psycopg2://{PG_USER}:{PG_PASSWORD}@{PG_HOST}:{PG_PORT}/{MLFLOW_DB}"
    else:
        store = f"sqlite:///{db_file}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logf = open(tmp / "server.log", "w")
    # The server's GenAI job runner starts ~7 worker processes that import all of
    # MLflow (pandas, ...) for tens of CPU-seconds; it has no part in metric
    # logging and would steal the 2 cores from the measurement: off.
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            store,
            "--default-artifact-root",
            str(tmp / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        stdout=logf,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        wait_http(url + "/health", timeout=180, proc=proc)
        time.sleep(settle)  # let the workers finish importing before timing
        client = MlflowClient(tracking_uri=url)
        exp = client.create_experiment("bench")
        # warm-up run: one small batch
        warm = client.create_run(exp).info.run_id
        client.log_batch(warm, metrics=[Metric("train/loss", 0.5, 1_700_000_000_000 + i, i) for i in range(100)])
        run_id = client.create_run(exp).info.run_id
        steps, timestamps, values = make_points(points)
        log(f"[mlflow/{backend}] logging {points:,} points in batches of {batch:,}")
        latencies = []
        start = time.perf_counter()
        for i in range(0, points, batch):
            metrics = [
                Metric("train/loss", v, int(ts * 1000), s)
                for s, ts, v in zip(steps[i : i + batch], timestamps[i : i + batch], values[i : i + batch], strict=True)
            ]
            t = time.perf_counter()
            client.log_batch(run_id, metrics=metrics)
            latencies.append(time.perf_counter() - t)
        wall = time.perf_counter() - start
        client.set_terminated(run_id)
    finally:
        stop_process(proc)
        logf.close()
    if backend == "postgres":
        conn = pg2(MLFLOW_DB)
        cur = conn.cursor()
        cur.execute("VACUUM ANALYZE metrics")
        cur.execute("SELECT count(*), pg_total_relation_size('metrics') FROM metrics")
        rows, size = cur.fetchone()
        how = "pg_total_relation_size('metrics')"
        conn.close()
        pg_reset(create=False)
    else:
        import sqlite3

        conn = sqlite3.connect(db_file)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE tbl_name = 'metrics' AND type IN ('table', 'index')"
            )
        ]
        size = conn.execute(
            f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({','.join('?' * len(names))})", names
        ).fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
        how = f"dbstat over {', '.join(names)}"
        conn.close()
    shutil.rmtree(tmp, ignore_errors=True)
    import mlflow

    result = {
        "backend": backend,
        "mlflow": mlflow.__version__,
        "server": f"mlflow server --workers {workers} (uvicorn)",
        "points": points,
        "batch": batch,
        "wall_s": wall,
        "points_per_s": points / wall,
        "batch_latency_median_ms": median(latencies) * 1000,
        "storage": {"bytes": size, "rows": rows, "bytes_per_point": size / rows, "how": how},
    }
    log(
        f"[mlflow/{backend}] {points / wall:,.0f} points/s, median batch {median(latencies) * 1000:.1f} ms, "
        f"{size / rows:.1f} B/point ({how})"
    )
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=1_000)
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = {b: bench_backend(b, args.points, args.batch, args.workers) for b in backends}
    save_result("mlflow", results)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for b, r in results.items():
            print(
                f"mlflow/{b:8s} {r['points_per_s']:>10,.0f} points/s  median batch {r['batch_latency_median_ms']:7.1f} ms  "
                f"{r['storage']['bytes_per_point']:6.1f} B/point  ({r['points']:,} points)"
            )
    return results


if __name__ == "__main__":
    main()

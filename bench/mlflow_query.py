"""MLflow side of bench/query.py: the same runs in an MLflow tracking server, timed with search_runs.

Runs inside bench/.venv-mlflow (MLflow 3.17). Fills MLflow's own backend
store once (its SQLAlchemy models, bulk inserts: MLflow's REST ingestion
would take hours for 100,000 runs x 50 fields), starts ``mlflow server`` on
127.0.0.1 and times ``MlflowClient.search_runs`` over HTTP, median of
repeats. Prints one JSON line of results.

    bench/.venv-mlflow/bin/python bench/mlflow_query.py --store postgresql://... --runs 100000
"""

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from query import fields_for  # noqa: E402  (the same field generator as Runstore's side)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_count(store_uri: str, experiment_id) -> int:
    import sqlalchemy as sa

    with sa.create_engine(store_uri).connect() as conn:
        return conn.execute(
            sa.text("SELECT count(*) FROM runs WHERE experiment_id = :e"), {"e": int(experiment_id)}
        ).scalar()


def fill(store_uri: str, count: int) -> str:
    import sqlalchemy as sa
    from mlflow.store.tracking.dbmodels.models import (
        SqlExperiment,
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy.orm import Session

    store = SqlAlchemyStore(store_uri, "/tmp/mlflow-query-artifacts")  # creates/migrates the schema
    existing = store.get_experiment_by_name("query")
    if existing is not None:
        have = _run_count(store_uri, existing.experiment_id)
        if have == count:
            print(f"mlflow: reusing {count} runs", file=sys.stderr)
            return existing.experiment_id
        if have:
            raise SystemExit(f"mlflow store holds {have} runs, expected {count}; drop it first")
        experiment_id = existing.experiment_id  # an earlier fill stopped before its first runs
    else:
        experiment_id = store.create_experiment("query")
    rng = random.Random(7)
    engine = sa.create_engine(store_uri)
    started = time.monotonic()
    now_ms = int(time.time() * 1000)
    chunk = 2000
    for start in range(0, count, chunk):
        runs, params, metrics, tags = [], [], [], []
        for i in range(start, min(count, start + chunk)):
            run_uuid = uuid.uuid4().hex
            owner = f"user{rng.randrange(20):02d}"
            start_time = now_ms - 300_000 * (count - i)
            runs.append(
                dict(
                    run_uuid=run_uuid,
                    name=f"run-{i}",
                    source_type="LOCAL",
                    source_name="",
                    entry_point_name="",
                    user_id=owner,
                    status="FINISHED",
                    start_time=start_time,
                    end_time=start_time + 1000,
                    source_version="",
                    lifecycle_stage="active",
                    artifact_uri="",
                    experiment_id=int(experiment_id),
                )
            )
            for path, type_, value in fields_for(rng, i + 1):
                key = path.replace("/", "_")
                if type_ == "float" and not path.startswith("parameters/"):
                    metrics.append(
                        dict(key=key, value=value, timestamp=start_time, step=0, is_nan=False, run_uuid=run_uuid)
                    )
                else:
                    params.append(dict(key=key, value=str(value), run_uuid=run_uuid))
            tags.append(dict(key="mlflow.user", value=owner, run_uuid=run_uuid))
            for series in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
                start_value, decay = 0.5 + rng.random() * 2, rng.uniform(0.95, 1.0)
                last = start_value * decay**99
                metrics.append(
                    dict(key=series, value=last, timestamp=start_time, step=99, is_nan=False, run_uuid=run_uuid)
                )
        with Session(engine) as session:
            session.bulk_insert_mappings(SqlRun, runs)
            session.bulk_insert_mappings(SqlParam, params)
            session.bulk_insert_mappings(SqlTag, tags)
            session.bulk_insert_mappings(SqlMetric, metrics)
            session.bulk_insert_mappings(SqlLatestMetric, metrics)
            session.commit()
        print(f"mlflow: {min(count, start + chunk)}/{count} runs ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    del SqlExperiment
    return experiment_id


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    experiment_id = fill(args.store, args.runs)
    port = free_port()
    log_file = open("/tmp/mlflow-query-server.log", "w")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            args.store,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--default-artifact-root",
            "/tmp/mlflow-query-artifacts",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        import urllib.request

        from mlflow.tracking import MlflowClient

        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("mlflow server did not start; see /tmp/mlflow-query-server.log")
                time.sleep(1)
        time.sleep(5)  # let the workers finish importing
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        cases = {
            "sentence": dict(
                filter_string="params.data_train_name = 'Y' and params.data_train_version = 'X' and metrics.eval_acc > 0.93",
                order_by=["attributes.start_time DESC"],
            ),
            "series_filter": dict(filter_string="metrics.train_loss < 0.2", order_by=["metrics.eval_acc DESC"]),
        }
        out = {}
        for name, case in cases.items():
            client.search_runs([experiment_id], max_results=50, **case)
            samples = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                found = client.search_runs([experiment_id], max_results=50, **case)
                samples.append((time.perf_counter() - t0) * 1000)
            out[name] = {"ms": statistics.median(samples), "page": len(found)}
        print(json.dumps(out))
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
        log_file.close()


if __name__ == "__main__":
    main()

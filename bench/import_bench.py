"""Throughput of ``runstore import``: 100,000 scalar points (10 metrics × 10,000 steps, one run) written
with each source's own library, imported into a live Runstore server (SQLite, the client suite's
server), timed from the start of the import until the server acknowledged the last point.

    $(scripts/matrix.py's virtualenv of a cell)/bin/python bench/import_bench.py tensorboard|mlflow|wandb|neptune

Run it with the Python of the matrix cell that has the source's library (importers-<source>.txt)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# bench/mlflow.py would shadow the mlflow package for a script run from bench/.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
METRICS, STEPS = 10, 10_000
T0 = 1_600_000_000.0


def write_tensorboard(root: Path) -> str:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(root / "tb" / "run")) as writer:
        for step in range(STEPS):
            for m in range(METRICS):
                writer.add_scalar(f"m/{m}", step * 0.001 + m, step, walltime=T0 + step)
    return str(root / "tb")


def write_mlflow(root: Path) -> str:
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(root / "mlruns").as_uri())
    experiment = client.create_experiment("bench")
    run = client.create_run(experiment, run_name="bench")
    batch = []
    for step in range(STEPS):
        for m in range(METRICS):
            batch.append(Metric(f"m/{m}", step * 0.001 + m, int((T0 + step) * 1000), step))
        if len(batch) >= 1000:
            client.log_batch(run.info.run_id, metrics=batch)
            batch = []
    client.set_terminated(run.info.run_id)
    return str(root / "mlruns")


def write_wandb(root: Path) -> str:
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(root))
    import wandb

    run = wandb.init(project="bench")
    for step in range(STEPS):
        run.log({f"m/{m}": step * 0.001 + m for m in range(METRICS)}, step=step)
    run.finish()
    return str(root / "wandb")


def write_neptune(root: Path) -> str:
    import datetime as dt
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("project_id", pa.string()),
            ("run_id", pa.string()),
            ("attribute_path", pa.string()),
            ("attribute_type", pa.string()),
            ("step", pa.decimal128(18, 6)),
            ("timestamp", pa.timestamp("ms", tz="UTC")),
            ("float_value", pa.float64()),
        ]
    )
    start = dt.datetime.fromtimestamp(T0, tz=dt.UTC)
    rows = [
        {
            "project_id": "org/bench",
            "run_id": "B-1",
            "attribute_path": f"m/{m}",
            "attribute_type": "float_series",
            "step": Decimal(step),
            "timestamp": start + dt.timedelta(seconds=step),
            "float_value": step * 0.001 + m,
        }
        for m in range(METRICS)
        for step in range(STEPS)
    ]
    folder = root / "exports" / "data" / "org_bench"
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    # The columns this layout leaves out are null, as in neptune-exporter's files for a float series.
    for name, kind in [
        ("int_value", pa.int64()),
        ("string_value", pa.string()),
        ("bool_value", pa.bool_()),
        ("datetime_value", pa.timestamp("ms", tz="UTC")),
        ("string_set_value", pa.list_(pa.string())),
        ("file_value", pa.struct([("path", pa.string())])),
    ]:
        table = table.append_column(name, pa.nulls(len(rows), kind))
    pq.write_table(table, folder / "B-1_part_0.parquet")
    return str(root / "exports")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", choices=["tensorboard", "mlflow", "wandb", "neptune"])
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("client_conftest", REPO / "client" / "tests" / "conftest.py")
    assert spec and spec.loader
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    from runstore.importers import import_source

    with tempfile.TemporaryDirectory(prefix="runstore-import-bench-") as tmp:
        root = Path(tmp)
        os.environ["RUNSTORE_HOME"] = str(root / "home")
        started = time.monotonic()
        location = globals()[f"write_{args.source}"](root)
        written = time.monotonic() - started
        server = conftest.Server(root / "server")
        (root / "server").mkdir()
        server.setup()
        server.start()
        try:
            kwargs = {"url": server.url, "api_token": server.token, "progress": False}
            summary = import_source(args.source, location, project="alice/import-bench", **kwargs)
            again = import_source(args.source, location, project="alice/import-bench", **kwargs)
        finally:
            server.stop()
    assert summary.points == METRICS * STEPS, summary.lines()
    assert again.points == 0 and again.runs_unchanged == 1
    print(
        f"{args.source}: {summary.points:,} points imported in {summary.seconds:.2f} s = "
        f"{summary.points / summary.seconds:,.0f} points/s (source written in {written:.1f} s; "
        f"a second import, which adds nothing: {again.seconds:.2f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

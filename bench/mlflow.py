"""The same MLflow client workload against a real MLflow server, Runstore's MLflow-compatible API and Runstore's native API.

    .venv/bin/python bench/mlflow.py [--quick] [--source REV|worktree] [--json]

One run, one machine, one target after the other:

(a) ``mlflow server`` (3.17.2, the full package, ``--workers 2``, uvicorn) with a PostgreSQL
    backend store (database ``mlflow_mlbench``, dropped and created) and ``--serve-artifacts``
    into a local directory; its GenAI job runner is off, as in ``mlflow_bench.py``;
(b) Runstore's MLflow-compatible API (``/api/2.0/mlflow/``): gunicorn ``-w 2 --threads 2`` + one
    Celery worker (roll-ups), PostgreSQL + TimescaleDB (database ``runstore_mlbench``, dropped,
    created and migrated), blobs on the local filesystem, per-token request rate raised to
    100,000/s (the default 100/s would throttle the parallel fill; MLflow has no such limit);
(c) Runstore's native API on the same server, for the same work.

(a) and (b) run the same code (``mlflow_workload`` below) with the stock ``MlflowClient`` in a
cached virtualenv (``scripts/venv-for.sh mlflow==3.17.2 psycopg2-binary==2.9.13``); (c) runs in
this checkout's ``.venv``. The workload:

1. ``log_batch`` throughput: 200 batches of 1,000 metrics (two keys, ``loss`` and ``acc``, 500
   steps each per batch, fixed timestamps) to one run from one sequential client, after one
   warm-up batch to another run; metrics/s = points / wall time from the first request to the
   last response (building the ``Metric`` objects is outside the timing, the client's encoding
   inside). Native: the ``runstore`` client, ``run["metrics/loss"].extend(values, steps,
   timestamps)`` for the same points, timed from the first call until ``run.wait()`` returns
   (every point acknowledged by the server); the client forms its own batches (up to 10,000 points,
   sent in the background) -- a different request shape, so also: the native batch endpoint driven
   as MLflow's client drives log-batch, ``POST /api/v1/runs/<run>/batch`` with the same 1,000 points
   (two ``append`` ops) per synchronous JSON request, one thread, one run: the ratio of the two
   server paths. And the stock client's own log-batch requests for the same points to another run,
   their bodies encoded by its ``message_to_json`` before the timing, sent with ``requests``: the
   client spends a few hundred ms per 1,000 metrics encoding, before any request.
2. ``get_metric_history`` of the 100,000-point metric ``loss`` of that run (the client pages by
   25,000), median of 5 after one warm-up; every point's step checked. Also the same get-history
   requests sent with ``requests`` and read with ``json`` (pages of 25,000, the page token followed):
   the server's and the wire's share, without the stock client's Metric object per point. Native: ``GET
   /api/v1/runs/<run>/series/points?path=metrics/loss&limit=100000`` (one request, JSON columns)
   on the run logged through the MLflow API.
3. ``search_runs`` over 10,000 runs of one experiment (each run: a name, a tag, 5 metrics and 5
   params; the first ``--client-runs`` (1,000) made with ``create_run`` + ``log_batch`` from 8
   client threads, timed and reported; the rest bulk-filled: for MLflow straight into its tables
   through its SQLAlchemy models; for Runstore in two Django shells, each making the first run of its
   range through ``runs.mlflow.tracking`` — the MLflow API's own translation and services — and the
   rest as copies of that run's rows with their own values, 500 runs per transaction, straight into
   the same tables: runs, fields, series points, MLflow's metric rows), filter ``metrics.accuracy > 0.5 and
   params.optimizer = 'adam'``, ``order_by=["metrics.accuracy DESC"]``, ``max_results=100``,
   median of 10 after one warm-up. Native: ``POST /api/v1/runs/query`` with the same filter in the
   query language, ``sort=["-metrics/accuracy"]``, ``limit=100`` and the runs' 10 metric and param
   columns, on the same 10,000 runs (those logged through the MLflow API). The accuracies of the
   100 runs found are checked to be the same list on all three.
4. Artifact upload of a 100 MB file (random bytes; its first bytes differ per upload, since
   Runstore stores content once), median of 3: ``MlflowClient.log_artifact`` (one streamed
   ``PUT`` to the artifact proxy); native: ``POST /api/v1/runs/<run>/uploads`` (multipart,
   streamed from disk) then a batch op attaching it to the run's file set ``artifacts``.

``--phases create`` times run creation alone (the ``create_run`` + ``log_batch`` of 3a, 300 runs per
round unless ``--client-runs`` says otherwise): the MLflow server, Runstore at ``--source`` and, with
``--baseline REV``, Runstore at that revision are all up at once and take turns for ``--rounds`` rounds
(the order reversed every other round), so the machine's load falls on each alike; medians per target
and their ratios, raw results in ``bench/results/mlflow-create.json`` (~5 min).

Prints a table: the three columns, MLflow / Runstore-MLflow (> 1: Runstore faster) and
Runstore-MLflow / native (≤ 2 is the target). Raw results go to ``bench/results/mlflow-api.json``.
``--quick`` (smoke run, ~3 min): 20 batches, 500 runs, 10 MB, fewer repeats. The full run takes
about 10-15 minutes on 2 cores. Servers and databases are removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
# This file is named mlflow.py: keep its directory off sys.path so ``import mlflow`` finds the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH_DIR]
_spec = importlib.util.spec_from_file_location("bench_common", BENCH_DIR / "common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)

MLFLOW_REQUIREMENTS = ["mlflow==3.17.2", "psycopg2-binary==2.9.13"]
MLFLOW_DB = "mlflow_mlbench"
RUNSTORE_DB = "runstore_mlbench"
T0_MS = 1_700_000_000_000
FILTER = "metrics.accuracy > 0.5 and params.optimizer = 'adam'"
ORDER_BY = ["metrics.accuracy DESC"]
NATIVE_QUERY = 'metrics/accuracy > 0.5 and parameters/optimizer = "adam"'
METRICS = ["accuracy", "loss", "f1", "precision", "recall"]
PARAMS = ["optimizer", "lr", "batch_size", "layers", "seed"]
log = common.log
median = common.median


# --- the data, the same in every process ---------------------------------------------------------


def batch_points(index: int, size: int) -> list[tuple[str, float, int, int]]:
    """Batch ``index`` of the throughput workload: (key, value, timestamp_ms, step), two keys."""
    rng = random.Random(index)
    half = size // 2
    out = []
    for key in ("loss", "acc"):
        for j in range(half):
            step = index * half + j
            out.append((key, rng.gauss(1.0, 0.25), T0_MS + step * 10, step))
    return out


def search_run(i: int) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
    """Metrics, params and tags of the ``i``-th run of the search workload."""
    rng = random.Random(i)
    metrics = {key: rng.random() for key in METRICS}
    params = {
        "optimizer": ("adam", "sgd", "rmsprop")[i % 3],
        "lr": str(rng.choice([1e-4, 3e-4, 1e-3, 3e-3, 1e-2])),
        "batch_size": str(rng.choice([16, 32, 64, 128])),
        "layers": str(rng.randint(2, 12)),
        "seed": str(i),
    }
    return metrics, params, {"team": ("vision", "nlp", "speech", "rl")[i % 4]}


def expected_search(runs: int) -> list[float]:
    """The accuracies ``search_runs`` must return, in order."""
    found = []
    for i in range(runs):
        metrics, params, _ = search_run(i)
        if metrics["accuracy"] > 0.5 and params["optimizer"] == "adam":
            found.append(metrics["accuracy"])
    return sorted(found, reverse=True)[:100]


def artifact_file(directory: Path, megabytes: int) -> Path:
    path = directory / "model.bin"
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(megabytes):
            f.write(chunk)
    return path


def retag(path: Path, tag: str) -> None:
    """Make the file's content unique to this upload (Runstore stores identical bytes once)."""
    with open(path, "r+b") as f:
        f.write(tag.encode().ljust(64, b"\0"))


# --- (a) and (b): the MLflow client workload (runs in the mlflow virtualenv) ---------------------


def mlflow_workload(url: str, opts: dict) -> dict:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    out: dict = {}
    suffix = uuid.uuid4().hex[:8]

    # 1. log_batch throughput
    exp = client.create_experiment(f"bench-log-{suffix}")
    warm = client.create_run(exp, run_name="warm-up").info.run_id
    client.log_batch(warm, metrics=[Metric(k, v, t, s) for k, v, t, s in batch_points(10**6, opts["batch"])])
    run_id = client.create_run(exp, run_name="throughput").info.run_id
    batches = [[Metric(k, v, t, s) for k, v, t, s in batch_points(b, opts["batch"])] for b in range(opts["batches"])]
    latencies = []
    start = time.perf_counter()
    for metrics in batches:
        t = time.perf_counter()
        client.log_batch(run_id, metrics=metrics)
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    points = opts["batches"] * opts["batch"]
    out["log"] = {"points": points, "wall_s": wall, "per_s": points / wall, "batch_median_ms": median(latencies) * 1e3}
    out["log_run_id"] = run_id
    out["log_http"] = log_batch_over_http(url, client.create_run(exp, run_name="throughput-http").info.run_id, opts)
    log(f"  the same log-batch requests, bodies encoded before timing: {out['log_http']['per_s']:,.0f} metrics/s")
    log(f"  log_batch: {points / wall:,.0f} metrics/s, median batch {median(latencies) * 1e3:.1f} ms")

    # 2. get_metric_history
    expected = opts["batches"] * (opts["batch"] // 2)
    times = []
    for r in range(opts["history_repeats"] + 1):
        t = time.perf_counter()
        history = client.get_metric_history(run_id, "loss")
        elapsed = time.perf_counter() - t
        steps = sorted(m.step for m in history)
        if steps != list(range(expected)):
            raise RuntimeError(f"history of 'loss': {len(steps)} points, expected steps 0..{expected - 1}")
        if r:
            times.append(elapsed)
    out["history"] = {"points": expected, "median_s": median(times), "times_s": times}
    log(f"  get_metric_history ({expected:,} points): {median(times) * 1e3:.0f} ms")
    out["history_http"] = history_over_http(url, run_id, expected, opts["history_repeats"])
    log(f"  the same requests without the client's objects: {out['history_http']['median_s'] * 1e3:.0f} ms")

    # 3a. the first runs of the search workload through the client (timed); the rest are bulk-filled
    exp = client.create_experiment(f"bench-search-{suffix}")
    count = min(opts["client_runs"], opts["runs"])
    out["fill"], run_ids = create_runs(client, exp, count, opts["threads"])
    log(f"  created {count:,} runs in {out['fill']['wall_s']:.1f} s ({out['fill']['per_s']:,.1f} runs/s)")
    out["search_experiment_id"] = exp
    out["search_run_id"] = run_ids[0]
    return out


def create_runs(client, exp: str, count: int, threads: int) -> tuple[dict, list[str]]:
    """Runs ``0..count-1`` of the search workload made with ``create_run`` + ``log_batch`` (5 metrics,
    5 params) from ``threads`` client threads, timed: (result, run ids)."""
    from mlflow.entities import Metric, Param

    def make(i: int) -> str:
        metrics, params, tags = search_run(i)
        rid = client.create_run(exp, start_time=T0_MS + i, run_name=f"run-{i:05d}", tags=tags).info.run_id
        client.log_batch(
            rid,
            metrics=[Metric(k, v, T0_MS + i, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
        )
        return rid

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        run_ids = list(pool.map(make, range(count)))
    fill = time.perf_counter() - start
    return {"runs": count, "wall_s": fill, "per_s": count / fill, "threads": threads}, run_ids


def create_workload(url: str, opts: dict) -> dict:
    """``--phases create``: one round of run creation into a new experiment (made before the timing)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    exp = client.create_experiment(f"bench-create-{uuid.uuid4().hex[:8]}")
    fill, _ = create_runs(client, exp, opts["client_runs"], opts["threads"])
    return fill


def log_batch_over_http(url: str, run_id: str, opts: dict) -> dict:
    """The log-batch requests the stock client sends for the same points to another run, their JSON
    bodies made by the client's own encoder (``message_to_json``) before the timing: the server's and
    the wire's share of ``log_batch`` without the client's encoding (a few hundred ms per 1,000 metrics)."""
    import requests
    from mlflow.entities import Metric
    from mlflow.protos.service_pb2 import LogBatch
    from mlflow.utils.proto_json_utils import message_to_json

    session = requests.Session()
    session.headers["Content-Type"] = "application/json"
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        session.headers["Authorization"] = f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"
    bodies = [
        message_to_json(
            LogBatch(
                run_id=run_id, metrics=[Metric(k, v, t, s).to_proto() for k, v, t, s in batch_points(b, opts["batch"])]
            )
        )
        for b in range(opts["batches"])
    ]
    latencies = []
    start = time.perf_counter()
    for body in bodies:
        t = time.perf_counter()
        response = session.post(f"{url}/api/2.0/mlflow/runs/log-batch", data=body, timeout=600)
        response.raise_for_status()
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    points = opts["batches"] * opts["batch"]
    return {"points": points, "wall_s": wall, "per_s": points / wall, "batch_median_ms": median(latencies) * 1e3}


def history_over_http(url: str, run_id: str, expected: int, repeats: int) -> dict:
    """The get-history requests the stock client makes (GET, pages of 25,000, the page token followed),
    sent with ``requests`` and read with ``json``: the server's and the wire's share of
    ``get_metric_history``, without the client's Metric object per point."""
    import requests

    session = requests.Session()
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        session.headers["Authorization"] = f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"
    times, pages = [], 0
    for r in range(repeats + 1):
        t = time.perf_counter()
        steps, token, pages = 0, None, 0
        while True:
            params = {"run_id": run_id, "run_uuid": run_id, "metric_key": "loss", "max_results": 25_000}
            if token:
                params["page_token"] = token
            response = session.get(f"{url}/api/2.0/mlflow/metrics/get-history", params=params, timeout=600)
            response.raise_for_status()
            page = json.loads(response.content)
            steps += len(page.get("metrics", []))
            pages += 1
            token = page.get("next_page_token")
            if not token:
                break
        elapsed = time.perf_counter() - t
        if steps != expected:
            raise RuntimeError(f"get-history over HTTP: {steps} points, expected {expected}")
        if r:
            times.append(elapsed)
    return {"points": expected, "pages": pages, "median_s": median(times), "times_s": times}


def mlflow_search_workload(url: str, opts: dict, exp: str) -> dict:
    """Phase 2: search_runs and artifact upload (after the bulk fill)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    out: dict = {}
    times, found = [], []
    for r in range(opts["search_repeats"] + 1):
        t = time.perf_counter()
        page = client.search_runs([exp], FILTER, order_by=ORDER_BY, max_results=100)
        elapsed = time.perf_counter() - t
        found = [run.data.metrics["accuracy"] for run in page]
        if found != expected_search(opts["runs"]) or any(len(run.data.params) != len(PARAMS) for run in page):
            raise RuntimeError(f"search_runs found {len(found)} runs, not the expected ones (or incomplete params)")
        if r:
            times.append(elapsed)
    out["search"] = {"runs": opts["runs"], "median_s": median(times), "times_s": times, "accuracies": found}
    log(f"  search_runs: {median(times) * 1e3:.1f} ms")

    # 4. artifact upload
    tmp = Path(tempfile.mkdtemp(prefix="mlflow-api-bench-"))
    try:
        path = artifact_file(tmp, opts["artifact_mb"])
        run_id = client.create_run(exp, run_name="artifacts").info.run_id
        times = []
        for r in range(opts["upload_repeats"]):
            retag(path, f"{url} {run_id} {r}")
            t = time.perf_counter()
            client.log_artifact(run_id, str(path), artifact_path=f"upload-{r}")
            times.append(time.perf_counter() - t)
        listed = client.list_artifacts(run_id, f"upload-{opts['upload_repeats'] - 1}")
        if [f.file_size for f in listed] != [opts["artifact_mb"] << 20]:
            raise RuntimeError(f"artifact listing after the upload: {listed}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["upload"] = {"megabytes": opts["artifact_mb"], "median_s": median(times), "times_s": times}
    log(f"  log_artifact ({opts['artifact_mb']} MB): {median(times):.2f} s")
    return out


def mlflow_bulk_fill(store_uri: str, exp: str, first: int, count: int) -> None:
    """The rest of the search runs straight into MLflow's tables (its SQLAlchemy models, bulk inserts)."""
    import sqlalchemy as sa
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    from sqlalchemy.orm import Session

    engine = sa.create_engine(store_uri)
    for chunk in range(first, count, 2000):
        runs, params, metrics, tags = [], [], [], []
        for i in range(chunk, min(count, chunk + 2000)):
            run_uuid = uuid.uuid4().hex
            m, p, t = search_run(i)
            runs.append(
                {
                    "run_uuid": run_uuid,
                    "name": f"run-{i:05d}",
                    "source_type": "LOCAL",
                    "source_name": "",
                    "entry_point_name": "",
                    "user_id": "bench",
                    "status": "RUNNING",
                    "start_time": T0_MS + i,
                    "end_time": None,
                    "source_version": "",
                    "lifecycle_stage": "active",
                    "artifact_uri": f"mlflow-artifacts:/{exp}/{run_uuid}/artifacts",
                    "experiment_id": int(exp),
                }
            )
            metrics += [
                {"key": k, "value": v, "timestamp": T0_MS + i, "step": 0, "is_nan": False, "run_uuid": run_uuid}
                for k, v in m.items()
            ]
            params += [{"key": k, "value": v, "run_uuid": run_uuid} for k, v in p.items()]
            tags += [{"key": k, "value": v, "run_uuid": run_uuid} for k, v in t.items()]
            tags.append({"key": "mlflow.runName", "value": f"run-{i:05d}", "run_uuid": run_uuid})
        with Session(engine) as session:
            session.bulk_insert_mappings(SqlRun, runs)
            session.bulk_insert_mappings(SqlParam, params)
            session.bulk_insert_mappings(SqlTag, tags)
            session.bulk_insert_mappings(SqlMetric, metrics)
            session.bulk_insert_mappings(SqlLatestMetric, metrics)
            session.commit()


RUNSTORE_FILL = """
import datetime, importlib.util, os
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from projects import permissions
from projects.models import Project
from runs import series
from runs.models import Attribute, AttributeType, Run
from runs.mlflow import tracking
from runs.mlflow.models import LatestMetric, Metric
spec = importlib.util.spec_from_file_location("bench_mlflow", os.environ["BENCH_SCRIPT"])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
user = User.objects.get(username="bench")
exp, first, count = os.environ["BENCH_EXP"], int(os.environ["BENCH_FIRST"]), int(os.environ["BENCH_COUNT"])


def through_api(i):
    metrics, params, tags = bench.search_run(i)
    with permissions.remember_actions(), transaction.atomic():  # as the API view does per request
        body = {"experiment_id": exp, "run_name": f"run-{i:05d}", "start_time": bench.T0_MS + i,
                "tags": [{"key": k, "value": v} for k, v in tags.items()]}
        run = tracking.create_run(user, body)
        tracking.log_batch(user, run, params=[{"key": k, "value": v} for k, v in params.items()],
                           metrics=[{"key": k, "value": v, "timestamp": bench.T0_MS + i, "step": 0}
                                    for k, v in metrics.items()])
    return run


# The first run of the range through the MLflow API's translation; the others are its copies with
# their own values, written straight into the same tables in chunks (as MLflow's fill writes its own).
template = through_api(first)
project = Project.objects.get(pk=template.project_id)
rows = list(Attribute.objects.filter(run=template))
for lo in range(first + 1, count, 500):
    indices = list(range(lo, min(count, lo + 500)))
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(run_counter=F("run_counter") + len(indices))
        top = Project.objects.filter(pk=project.pk).values_list("run_counter", flat=True).get()
        now = timezone.now()
        runs = Run.objects.bulk_create(
            Run(project=project, number=top - len(indices) + 1 + k, name=f"run-{i:05d}", owner=user,
                created_at=now, modified_at=now, ping_at=now)
            for k, i in enumerate(indices)
        )
        attrs, metric_rows, latest_rows = [], [], []
        for run, i in zip(runs, indices):
            metrics, params, tags = bench.search_run(i)
            values = {**{"parameters/" + k: v for k, v in params.items()}, **{"tags/" + k: v for k, v in tags.items()}}
            for row in rows:
                attr = Attribute(**{f.attname: getattr(row, f.attname) for f in Attribute._meta.concrete_fields
                                    if not f.primary_key and not f.generated})
                attr.run_id = run.pk
                if row.path in values:
                    attr.string_value = values[row.path]
                elif row.path == tracking.START_TIME_PATH:
                    attr.datetime_value = datetime.datetime.fromtimestamp((bench.T0_MS + i) / 1000, datetime.UTC)
                elif row.type == AttributeType.FLOAT_SERIES:
                    value = metrics[row.path.removeprefix("metrics/")]
                    attr.float_value = attr.min_value = attr.max_value = attr.sum_value = value
                attr.point_time = (bench.T0_MS + i) / 1000.0
                attrs.append(attr)
            for key, value in metrics.items():
                point = dict(run_id=run.pk, key=key, step=0, timestamp=bench.T0_MS + i, value=value, is_nan=False)
                metric_rows.append(Metric(**point))
                latest_rows.append(LatestMetric(**point))
        Attribute.objects.bulk_create(attrs)
        series.insert_float_points(
            (a.pk, [0], [a.point_time], [a.float_value]) for a in attrs if a.type == AttributeType.FLOAT_SERIES
        )
        Metric.objects.bulk_create(metric_rows)
        LatestMetric.objects.bulk_create(latest_rows)
"""


def runstore_bulk_fill(server, exp: str, first: int, count: int, processes: int = 2) -> None:
    """The rest of the search runs in Django shells on the server's database: in each, one run through
    the MLflow API's own translation (``runs.mlflow.tracking.create_run`` + ``log_batch``), the others
    copies of its rows with their own values (``RUNSTORE_FILL``), without HTTP."""
    edges = [first + (count - first) * k // processes for k in range(processes + 1)]
    procs = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        env = {**server.env, "BENCH_SCRIPT": __file__, "BENCH_EXP": exp, "BENCH_FIRST": str(lo), "BENCH_COUNT": str(hi)}
        cmd = [common.PYTHON, "manage.py", "shell", "-c", RUNSTORE_FILL]
        procs.append(subprocess.Popen(cmd, cwd=server.src, env=env))
    for proc in procs:
        if proc.wait() != 0:
            raise RuntimeError(f"the Runstore bulk fill failed ({proc.returncode})")


def run_mlflow_client(python: Path, url: str, opts: dict, token: str | None = None, phase: str = "log") -> dict:
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_TIMEOUT": "600"}
    env.pop("MLFLOW_TRACKING_TOKEN", None)
    if token:
        env["MLFLOW_TRACKING_TOKEN"] = token
    out = subprocess.run(
        [str(python), __file__, "--client", url, "--phase", phase, "--opts", json.dumps(opts)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- (c): the native API (runs in this checkout's .venv) -------------------------------------------


class StreamedMultipart:
    """A ``multipart/form-data`` body with one file part, read from disk as requests sends it."""

    def __init__(self, path: Path):
        boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self.head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        self.file = open(path, "rb")  # noqa: SIM115 - closed by the caller
        self.size = os.fstat(self.file.fileno()).st_size
        self.parts = [self.head, None, self.tail]

    def __len__(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def read(self, n: int = -1) -> bytes:
        while self.parts:
            if self.parts[0] is None:
                chunk = self.file.read(n if n and n > 0 else 1 << 20)
                if chunk:
                    return chunk
                self.parts.pop(0)
                continue
            return self.parts.pop(0)
        return b""


def native_workload(server, opts: dict, via_mlflow: dict) -> dict:
    import runstore

    out: dict = {}
    session = server.session()
    api = server.url + "/api/v1"

    # 1. throughput with the runstore client
    kwargs = {
        "api_token": server.token,
        "url": server.url,
        "capture_stdout": False,
        "capture_stderr": False,
        "capture_hardware_metrics": False,
        "capture_source": False,
        "capture_environment": False,
    }
    warm = runstore.init_run(project="bench/native", name="warm-up", **kwargs)
    warm["metrics/loss"].extend([v for _, v, _, _ in batch_points(10**6, opts["batch"])])
    warm.stop()
    series = []
    for b in range(opts["batches"]):
        points = batch_points(b, opts["batch"])
        for key in ("loss", "acc"):
            mine = [p for p in points if p[0] == key]
            series.append((f"metrics/{key}", [p[1] for p in mine], [p[3] for p in mine], [p[2] / 1000 for p in mine]))
    run = runstore.init_run(project="bench/native", name="throughput", **kwargs)
    start = time.perf_counter()
    for path, values, steps, timestamps in series:
        run[path].extend(values, steps=steps, timestamps=timestamps)
    if not run.wait(timeout=600):
        raise RuntimeError("the runstore client did not get every point acknowledged")
    wall = time.perf_counter() - start
    run.stop()
    points = opts["batches"] * opts["batch"]
    out["log"] = {"points": points, "wall_s": wall, "per_s": points / wall}
    log(f"  client extend until acknowledged: {points / wall:,.0f} metrics/s")

    # 1b. the batch endpoint driven as MLflow's client drives log-batch: one synchronous JSON request
    # of 1,000 points (two series) after another, one thread, one run
    response = session.post(f"{api}/runs/", json={"project": "bench/native", "name": "throughput-sync"})
    response.raise_for_status()
    ref = response.json()["uuid"]
    bodies = []
    for b in range(opts["batches"]):
        ops = [
            {"op": "append", "path": path, "values": values, "steps": steps, "timestamps": timestamps}
            for path, values, steps, timestamps in series[2 * b : 2 * b + 2]
        ]
        bodies.append(json.dumps({"stream": "bench", "seq": b, "ops": ops}))
    latencies = []
    start = time.perf_counter()
    for body in bodies:
        t = time.perf_counter()
        response = session.post(f"{api}/runs/{ref}/batch", data=body, headers={"Content-Type": "application/json"})
        response.raise_for_status()
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    out["log_sync"] = {
        "points": points,
        "wall_s": wall,
        "per_s": points / wall,
        "batch_median_ms": median(latencies) * 1e3,
    }
    log(f"  batch endpoint, 1,000 points per synchronous request: {points / wall:,.0f} metrics/s")

    # 2. the series of the run logged through the MLflow API
    ref = str(uuid.UUID(via_mlflow["log_run_id"]))
    expected = via_mlflow["history"]["points"]
    times = []
    for r in range(opts["history_repeats"] + 1):
        t = time.perf_counter()
        response = session.get(f"{api}/runs/{ref}/series/points", params={"path": "metrics/loss", "limit": 100_000})
        response.raise_for_status()
        data = response.json()
        elapsed = time.perf_counter() - t
        if data["steps"] != list(range(expected)) or data["next_after_step"] is not None:
            raise RuntimeError(f"series/points: {len(data['steps'])} points, expected {expected}")
        if r:
            times.append(elapsed)
    out["history"] = {"points": expected, "median_s": median(times), "times_s": times}
    log(f"  series/points ({expected:,} points): {median(times) * 1e3:.0f} ms")

    # 3. the query endpoint on the runs made through the MLflow API
    response = session.get(f"{api}/runs/{uuid.UUID(via_mlflow['search_run_id'])}/")
    response.raise_for_status()
    project = response.json()["project"]
    body = {
        "project": project,
        "query": NATIVE_QUERY,
        "sort": ["-metrics/accuracy"],
        "columns": ["sys/id", "sys/name"] + [f"metrics/{k}" for k in METRICS] + [f"parameters/{k}" for k in PARAMS],
        "limit": 100,
    }
    times = []
    for r in range(opts["search_repeats"] + 1):
        t = time.perf_counter()
        response = session.post(f"{api}/runs/query", json=body)
        response.raise_for_status()
        rows = response.json()["results"]
        elapsed = time.perf_counter() - t
        found = [row["fields"]["metrics/accuracy"] for row in rows]
        found = [f["last"] if isinstance(f, dict) else f for f in found]
        if found != expected_search(opts["runs"]):
            raise RuntimeError(f"runs/query found {len(found)} runs, not the expected ones: {rows[:1]}")
        if r:
            times.append(elapsed)
    out["search"] = {"runs": opts["runs"], "median_s": median(times), "times_s": times, "accuracies": found}
    log(f"  runs/query: {median(times) * 1e3:.1f} ms")

    # 4. upload + attach to the run's file set
    response = session.post(f"{api}/runs/", json={"project": "bench/native", "name": "artifacts"})
    response.raise_for_status()
    ref = response.json()["uuid"]
    tmp = Path(tempfile.mkdtemp(prefix="runstore-native-bench-"))
    try:
        path = artifact_file(tmp, opts["artifact_mb"])
        times = []
        for r in range(opts["upload_repeats"]):
            retag(path, f"native {ref} {r}")
            t = time.perf_counter()
            body = StreamedMultipart(path)
            try:
                response = session.post(
                    f"{api}/runs/{ref}/uploads", data=body, headers={"Content-Type": body.content_type}
                )
            finally:
                body.file.close()
            response.raise_for_status()
            sha256 = response.json()["sha256"]
            op = {
                "op": "upload_set",
                "path": "artifacts",
                "files": [{"relpath": f"upload-{r}/model.bin", "sha256": sha256}],
            }
            response = session.post(f"{api}/runs/{ref}/batch", json={"stream": f"bench-{r}", "seq": 0, "ops": [op]})
            response.raise_for_status()
            times.append(time.perf_counter() - t)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["upload"] = {"megabytes": opts["artifact_mb"], "median_s": median(times), "times_s": times}
    log(f"  uploads + upload_set ({opts['artifact_mb']} MB): {median(times):.2f} s")
    return out


# --- servers ------------------------------------------------------------------------------------


def mlflow_python() -> Path:
    out = subprocess.run(
        [str(common.REPO / "scripts" / "venv-for.sh"), *MLFLOW_REQUIREMENTS],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1]) / "bin" / "python"


def pg_reset(db: str, create: bool) -> None:
    if create:
        common.pg_recreate(db)
    else:
        common.pg_drop(db)


@contextlib.contextmanager
def mlflow_server(python: Path, workers: int):
    tmp = Path(tempfile.mkdtemp(prefix="mlflow-api-server-"))
    pg_reset(MLFLOW_DB, create=True)
    store = f"postgresql+psycopg2://{common.PG_USER}:{common.PG_PASSWORD}@{common.PG_HOST}:{common.PG_PORT}/{MLFLOW_DB}"
    port = common.free_port()
    url = f"http://127.0.0.1:{port}"
    logf = open(tmp / "server.log", "w")  # noqa: SIM115 - closed below
    cmd = [str(python.parent / "mlflow"), "server", "--backend-store-uri", store, "--serve-artifacts"]
    cmd += ["--artifacts-destination", str(tmp / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(workers)]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        common.wait_http(url + "/health", timeout=300, proc=proc)
        time.sleep(3)  # let the workers finish importing before timing
        yield url, store
    except BaseException:
        logf.flush()
        sys.stderr.write((tmp / "server.log").read_text()[-3000:])
        raise
    finally:
        common.stop_process(proc)
        logf.close()
        pg_reset(MLFLOW_DB, create=False)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def runstore_server(source: str, workers: int, threads: int, pg_db: str = RUNSTORE_DB):
    server = common.RunstoreServer("postgres", workers=workers, threads=threads, source=source, pg_db=pg_db)
    server.env.update(
        {
            "RUNSTORE_TIMESCALEDB": "required",
            "RUNSTORE_QUOTA_REQUESTS_PER_SECOND": "100000",
            "RUNSTORE_QUOTA_BURST": "100000",
        }
    )
    try:
        server.__enter__()
        yield server
    finally:
        server.__exit__(None, None, None)


# --- report -------------------------------------------------------------------------------------


def table(results: dict, opts: dict) -> str:
    a, b, c = results["mlflow_server"], results["runstore_mlflow"], results["runstore_native"]

    def rate(x):
        return f"{x['per_s']:,.0f}/s"

    def ms(x):
        return f"{x['median_s'] * 1e3:,.1f} ms"

    def sec(x):
        return f"{x['median_s']:.2f} s"

    rows = [
        (
            f"log_batch, {opts['batches']} x {opts['batch']:,} metrics (metrics/s); native: batch endpoint, "
            f"the same {opts['batch']:,} points per synchronous request",
            a["log"],
            b["log"],
            c["log_sync"],
            rate,
            "rate",
        ),
        (
            "  the same points; native: the runstore client's background pipeline (its own batches)",
            a["log"],
            b["log"],
            c["log"],
            rate,
            "rate",
        ),
        (
            "  its log-batch requests alone (bodies encoded before timing); native: batch endpoint, synchronous",
            a["log_http"],
            b["log_http"],
            c["log_sync"],
            rate,
            "rate",
        ),
        (
            f"get_metric_history, {a['history']['points']:,} points, stock client; native: series/points",
            a["history"],
            b["history"],
            c["history"],
            ms,
            "time",
        ),
        (
            f"  its {b['history_http']['pages']} get-history requests alone (requests + json, no client objects)",
            a["history_http"],
            b["history_http"],
            c["history"],
            ms,
            "time",
        ),
        (f"search_runs over {opts['runs']:,} runs, top 100", a["search"], b["search"], c["search"], ms, "time"),
        (f"artifact upload, {opts['artifact_mb']} MB", a["upload"], b["upload"], c["upload"], sec, "time"),
        (
            f"create_run + log_batch, {a['fill']['runs']:,} runs, {opts['threads']} threads (runs/s)",
            a["fill"],
            b["fill"],
            None,
            lambda x: f"{x['per_s']:,.1f}/s",
            "rate",
        ),
    ]
    lines = [
        "| workload | MLflow server | Runstore MLflow API | Runstore native | MLflow / Runstore-MLflow | Runstore-MLflow / native |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, x, y, z, fmt, kind in rows:
        if kind == "rate":
            speedup = y["per_s"] / x["per_s"]
            overhead = z["per_s"] / y["per_s"] if z else None
        else:
            speedup = x["median_s"] / y["median_s"]
            overhead = y["median_s"] / z["median_s"] if z else None
        lines.append(
            f"| {name} | {fmt(x)} | {fmt(y)} | {fmt(z) if z else '-'} | {speedup:.2f}x | "
            f"{f'{overhead:.2f}x' if overhead is not None else '-'} |"
        )
    return "\n".join(lines)


def create_main(args, opts: dict, python: Path, source: str) -> dict:
    """``--phases create``: run creation alone (``create_run`` + ``log_batch`` of 5 metrics and 5 params,
    ``--client-runs`` runs per round from ``--threads`` threads) against the MLflow server, Runstore's
    MLflow API at ``--source`` and, with ``--baseline``, at that revision too: all servers up at once,
    the targets taking turns round after round (``--rounds``), so that the load of the machine falls on
    each alike. Between rounds each Runstore's background tasks are drained (untimed)."""
    targets: dict[str, dict] = {"mlflow_server": {}, "runstore_mlflow": {}}
    if args.baseline:
        targets["runstore_baseline"] = {}
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "load_before": loadavg(), "opts": opts}
    meta["rounds"], loads = args.rounds, []
    start = time.monotonic()
    with contextlib.ExitStack() as stack:
        url, _ = stack.enter_context(mlflow_server(python, args.workers))
        servers = {"mlflow_server": (url, None, None)}
        server = stack.enter_context(runstore_server(source, args.workers, args.gunicorn_threads))
        servers["runstore_mlflow"] = (server.url, server.token, server)
        meta["runstore"] = server.source
        if args.baseline:
            base = stack.enter_context(
                runstore_server(
                    common.resolve_source(args.baseline), args.workers, args.gunicorn_threads, RUNSTORE_DB + "_base"
                )
            )
            servers["runstore_baseline"] = (base.url, base.token, base)
            meta["baseline"] = base.source
        for r in range(args.rounds):
            order = list(targets) if r % 2 == 0 else list(targets)[::-1]
            for name in order:
                url, token, runstore = servers[name]
                loads.append(os.getloadavg()[0])
                fill = run_mlflow_client(python, url, opts, token=token, phase="create")
                targets[name].setdefault("rounds", []).append(fill["per_s"])
                log(f"  round {r + 1} {name}: {fill['per_s']:.1f} runs/s")
                if runstore is not None:
                    runstore.wait_tasks(timeout=600)
    for result in targets.values():
        result["per_s"] = median(result["rounds"])
    meta["load_after"] = loadavg()
    meta["load_1min_at_rounds"] = loads
    meta["minutes"] = (time.monotonic() - start) / 60
    results = {**targets, "meta": meta}
    common.save_result("mlflow-create", results)
    print(
        f"\nRun creation, {meta['started']}, {MLFLOW_REQUIREMENTS[0]}, Runstore {meta['runstore']}"
        f"{', baseline ' + meta['baseline'] if args.baseline else ''}; {opts['client_runs']} runs per round, "
        f"{opts['threads']} threads, {args.rounds} rounds taking turns; load average (1 min) at the rounds "
        f"{min(loads):.1f}-{max(loads):.1f}; {meta['minutes']:.1f} min\n"
    )
    print("| target | runs/s per round | median | vs MLflow |")
    print("| --- | --- | ---: | ---: |")
    mlflow_rate = targets["mlflow_server"]["per_s"]
    for name, result in targets.items():
        rounds = ", ".join(f"{x:.1f}" for x in result["rounds"])
        print(f"| {name} | {rounds} | {result['per_s']:.1f} | {result['per_s'] / mlflow_rate:.2f}x |")
    if args.baseline:
        ratio = targets["runstore_mlflow"]["per_s"] / targets["runstore_baseline"]["per_s"]
        print(f"\nRunstore {meta['runstore']} / baseline {meta['baseline']}: {ratio:.2f}x")
    return results


def loadavg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 20 batches, 500 runs, 10 MB, fewer repeats")
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--client-runs", type=int, default=1000, help="search runs made through the client (timed)")
    p.add_argument("--threads", type=int, default=8, help="client threads that make them")
    p.add_argument("--artifact-mb", type=int, default=100)
    p.add_argument("--search-repeats", type=int, default=10)
    p.add_argument("--history-repeats", type=int, default=5)
    p.add_argument("--upload-repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="server processes (mlflow server and gunicorn)")
    p.add_argument("--gunicorn-threads", type=int, default=2)
    p.add_argument("--source", default=None, help="server code: a git revision (default HEAD) or 'worktree'")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--phases",
        choices=("all", "create"),
        default="all",
        help="'create': only run creation (create_run + log_batch, --client-runs per round, --threads), all "
        "servers up at once taking turns for --rounds rounds (~5 min with the defaults)",
    )
    p.add_argument("--rounds", type=int, default=3, help="--phases create: rounds per target")
    p.add_argument(
        "--baseline", help="--phases create: also a Runstore at this git revision, taking turns with --source"
    )
    p.add_argument("--client", help=argparse.SUPPRESS)
    p.add_argument("--opts", help=argparse.SUPPRESS)
    p.add_argument("--phase", default="log", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:  # inside the mlflow virtualenv: the MLflow client workload, one JSON line out
        opts = json.loads(args.opts)
        if args.phase == "log":
            print(json.dumps(mlflow_workload(args.client, opts)))
        elif args.phase == "create":
            print(json.dumps(create_workload(args.client, opts)))
        elif args.phase == "bulk":
            mlflow_bulk_fill(args.client, opts["exp"], opts["client_runs"], opts["runs"])
            print("{}")
        else:
            print(json.dumps(mlflow_search_workload(args.client, opts, opts["exp"])))
        return {}
    if args.quick:
        args.batches, args.runs, args.client_runs, args.artifact_mb = 20, 1000, 200, 10
        args.search_repeats, args.history_repeats, args.upload_repeats = 3, 2, 1
    opts = {
        k: getattr(args, k)
        for k in (
            "batches",
            "batch",
            "runs",
            "client_runs",
            "threads",
            "artifact_mb",
            "search_repeats",
            "history_repeats",
            "upload_repeats",
        )
    }
    source = common.resolve_source(args.source)
    if args.phases == "create":
        if args.client_runs == p.get_default("client_runs") and not args.quick:
            opts["client_runs"] = 300
        return create_main(args, opts, mlflow_python(), source)
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "load_before": loadavg(), "opts": opts}
    python = mlflow_python()
    results: dict = {}
    home = Path(tempfile.mkdtemp(prefix="runstore-client-home-"))
    os.environ["RUNSTORE_HOME"] = str(home)  # the native client's disk queue, outside the checkout
    start = time.monotonic()
    try:
        log(f"(a) mlflow server --workers {args.workers}, PostgreSQL store, --serve-artifacts")
        with mlflow_server(python, args.workers) as (url, store):
            a = run_mlflow_client(python, url, opts)
            log(f"bulk-filling runs {opts['client_runs']:,}..{opts['runs']:,} into MLflow's tables")
            run_mlflow_client(python, store, {**opts, "exp": a["search_experiment_id"]}, phase="bulk")
            a.update(run_mlflow_client(python, url, {**opts, "exp": a["search_experiment_id"]}, phase="search"))
            results["mlflow_server"] = a
        meta["load_mid"] = loadavg()
        log(f"(b) Runstore {source}, gunicorn -w {args.workers} --threads {args.gunicorn_threads}, PostgreSQL")
        with runstore_server(source, args.workers, args.gunicorn_threads) as server:
            meta["runstore"] = server.source
            b = run_mlflow_client(python, server.url, opts, token=server.token)
            log(f"bulk-filling runs {opts['client_runs']:,}..{opts['runs']:,} in Django shells")
            t = time.monotonic()
            runstore_bulk_fill(server, b["search_experiment_id"], opts["client_runs"], opts["runs"])
            log(f"  {opts['runs'] - opts['client_runs']:,} runs in {time.monotonic() - t:.0f} s")
            meta["tasks_wait_s"] = server.wait_tasks(timeout=900)
            log(f"  background tasks drained in {meta['tasks_wait_s']:.0f} s")
            b.update(
                run_mlflow_client(
                    python, server.url, {**opts, "exp": b["search_experiment_id"]}, token=server.token, phase="search"
                )
            )
            results["runstore_mlflow"] = b
            server.wait_tasks(timeout=900)
            log("(c) Runstore native API")
            results["runstore_native"] = native_workload(server, opts, results["runstore_mlflow"])
    finally:
        shutil.rmtree(home, ignore_errors=True)
    meta["load_after"] = loadavg()
    meta["minutes"] = (time.monotonic() - start) / 60
    meta["mlflow"] = MLFLOW_REQUIREMENTS[0]
    found = {k: [round(x, 9) for x in v["search"]["accuracies"]] for k, v in results.items()}
    meta["search_results_agree"] = len({json.dumps(v) for v in found.values()}) == 1
    results["meta"] = meta
    common.save_result("mlflow-api", results)
    print(
        f"\nMLflow workload, {meta['started']}, {meta['mlflow']} server and client, Runstore {meta['runstore']}; "
        f"load average {meta['load_before']} / {meta['load_mid']} / {meta['load_after']} (before / between / after); "
        f"{meta['minutes']:.1f} min; search results identical on all three: {meta['search_results_agree']}\n"
    )
    print(table(results, opts))
    if args.json:
        print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()

"""An MLflow user's workflow, run with the stock ``mlflow`` client against Runstore's MLflow-compatible API.

Run by tests/test_mlflow_client.py in a cached virtualenv per MLflow version, with
MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN pointing at a live Runstore. Every check is an
``assert`` with what was seen; the script prints "workflow ok" at the end.
"""

import filecmp
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

VERSION = mlflow.__version__
MAJOR = int(VERSION.split(".")[0])
client = MlflowClient()
suffix = os.environ.get("WORKFLOW_SUFFIX", str(int(time.time())))


def expect_error(code, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except MlflowException as exc:
        assert exc.error_code == code, (code, exc.error_code, exc.message)
        return exc
    raise AssertionError(f"{call.__name__} did not fail with {code}")


# --- experiments ---------------------------------------------------------------------
name = f"Workflow {suffix}"
experiment_id = client.create_experiment(name, tags={"team": "vision", "stage": "dev"})
experiment = client.get_experiment(experiment_id)
assert experiment.name == name, experiment
assert experiment.lifecycle_stage == "active"
assert experiment.tags["team"] == "vision", experiment.tags
assert client.get_experiment_by_name(name).experiment_id == experiment_id
assert client.get_experiment_by_name(f"missing {suffix}") is None
expect_error("RESOURCE_ALREADY_EXISTS", client.create_experiment, name)
client.set_experiment_tag(experiment_id, "stage", "prod")
assert client.get_experiment(experiment_id).tags["stage"] == "prod"
other_id = client.create_experiment(f"Other {suffix}")
found = client.search_experiments(filter_string=f"name LIKE 'Workflow {suffix}%'")
assert [e.experiment_id for e in found] == [experiment_id], found
found = client.search_experiments(filter_string="tags.stage = 'prod'")
assert experiment_id in [e.experiment_id for e in found], found
page = client.search_experiments(max_results=1, order_by=["name ASC"])
assert len(page) == 1 and page.token, page
client.rename_experiment(other_id, f"Renamed {suffix}")
assert client.get_experiment(other_id).name == f"Renamed {suffix}"
client.delete_experiment(other_id)
assert client.get_experiment(other_id).lifecycle_stage == "deleted"
deleted = client.search_experiments(view_type=ViewType.DELETED_ONLY)
assert other_id in [e.experiment_id for e in deleted], deleted
assert other_id not in [e.experiment_id for e in client.search_experiments()]
client.restore_experiment(other_id)
assert client.get_experiment(other_id).lifecycle_stage == "active"
mlflow.set_experiment(name)

# --- a run: params, metrics, tags, batches, NaN ---------------------------------------
with mlflow.start_run(run_name="baseline", tags={"owner": "workflow"}) as run:
    run_id = run.info.run_id
    assert len(run_id) == 32, run_id
    assert run.info.artifact_uri == f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts", run.info.artifact_uri
    mlflow.log_param("padded", "0042")
    mlflow.log_param("lr", 1e-05)
    mlflow.log_params({"optimizer": "adam", "layers": 3})
    mlflow.log_param("padded", "0042")  # the same value again is fine
    error = expect_error("INVALID_PARAMETER_VALUE", mlflow.log_param, "padded", "43")
    for step in range(5):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_metric("acc", 0.5, step=3, timestamp=1000)
    mlflow.log_metric("acc", 0.7, step=3, timestamp=2000)  # same step, later: the latest
    mlflow.log_metric("acc", 0.9, step=1, timestamp=3000)  # a lower step never is
    mlflow.log_metric("weird", float("nan"), step=0)
    mlflow.log_metric("weird", float("inf"), step=1)
    mlflow.log_metrics({"f1": 0.25, "recall": 0.5}, step=2)
    mlflow.set_tag("mlflow.note.content", "the first run")
    mlflow.set_tag("temporary", "yes")
    client.delete_tag(run_id, "temporary")
    ts = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric("batch_metric", float(i), ts + i, i) for i in range(200)],
        params=[Param(f"p{i}", str(i)) for i in range(20)],
        tags=[RunTag("batch", "yes")],
    )
    # A batch that breaks a rule applies nothing (here: a param changed).
    expect_error(
        "INVALID_PARAMETER_VALUE",
        client.log_batch,
        run_id,
        metrics=[Metric("never", 1.0, ts, 0)],
        params=[Param("optimizer", "sgd")],
    )

fetched = client.get_run(run_id)
assert fetched.info.status == "FINISHED", fetched.info
assert fetched.info.run_name == "baseline"
assert fetched.info.end_time and fetched.info.end_time >= fetched.info.start_time
params = fetched.data.params
assert params["padded"] == "0042" and params["lr"] == "1e-05" and params["layers"] == "3", params
assert params["p19"] == "19"
metrics = fetched.data.metrics
assert metrics["loss"] == 0.2 and metrics["acc"] == 0.7 and metrics["batch_metric"] == 199.0, metrics
assert math.isinf(metrics["weird"]), metrics
assert "never" not in metrics, metrics
tags = fetched.data.tags
assert tags["owner"] == "workflow" and tags["batch"] == "yes" and "temporary" not in tags, tags
assert tags["mlflow.runName"] == "baseline" and tags["mlflow.note.content"] == "the first run", tags

history = client.get_metric_history(run_id, "acc")
assert [(m.step, m.timestamp, m.value) for m in history] == [(1, 3000, 0.9), (3, 1000, 0.5), (3, 2000, 0.7)], history
weird = client.get_metric_history(run_id, "weird")
assert math.isnan(weird[0].value) and math.isinf(weird[1].value), weird
assert len(client.get_metric_history(run_id, "batch_metric")) == 200

# --- artifacts: nested directories, byte-identical -----------------------------------
with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp)
    (root / "out" / "nested" / "deeper").mkdir(parents=True)
    (root / "out" / "a.txt").write_text("alpha\n")
    (root / "out" / "nested" / "b.bin").write_bytes(os.urandom(300_000))
    (root / "out" / "nested" / "deeper" / "c.json").write_text('{"c": 1}')
    (root / "single.txt").write_text("single file")
    with mlflow.start_run(run_id=run_id):
        mlflow.log_artifact(str(root / "single.txt"))
        mlflow.log_artifacts(str(root / "out"), artifact_path="outputs")
    listed = sorted(f.path for f in client.list_artifacts(run_id))
    assert listed == ["outputs", "single.txt"], listed
    nested = sorted((f.path, f.is_dir) for f in client.list_artifacts(run_id, "outputs/nested"))
    assert nested == [("outputs/nested/b.bin", False), ("outputs/nested/deeper", True)], nested
    target = root / "download"
    target.mkdir()
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="outputs", dst_path=str(target))
    comparison = filecmp.dircmp(local, root / "out")
    assert not comparison.diff_files and not comparison.left_only and not comparison.right_only, comparison.report()
    assert filecmp.cmp(Path(local) / "nested" / "b.bin", root / "out" / "nested" / "b.bin", shallow=False)
    one = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="single.txt", dst_path=str(target))
    assert Path(one).read_text() == "single file"

# --- more runs: search with filters, order and pagination ---------------------------
run_ids = [run_id]
for i in range(5):
    with mlflow.start_run(run_name=f"sweep-{i}") as sweep:
        mlflow.log_param("optimizer", "adam" if i % 2 else "sgd")
        mlflow.log_metric("score", i / 10)
        mlflow.set_tag("sweep", "yes")
        run_ids.append(sweep.info.run_id)
found = client.search_runs([experiment_id], "metrics.score > 0.15 and params.optimizer = 'adam'")
assert sorted(r.info.run_name for r in found) == ["sweep-3"], [r.info.run_name for r in found]
found = client.search_runs([experiment_id], "attributes.run_name LIKE 'sweep-%'", order_by=["metrics.score DESC"])
assert [r.info.run_name for r in found] == [f"sweep-{i}" for i in (4, 3, 2, 1, 0)], [r.info.run_name for r in found]
found = client.search_runs([experiment_id], "tags.sweep = 'yes' and attributes.run_name ILIKE 'SWEEP-1'")
assert [r.info.run_name for r in found] == ["sweep-1"]
found = client.search_runs([experiment_id], f"attributes.run_id IN ('{run_ids[1]}', '{run_ids[2]}')")
assert sorted(r.info.run_id for r in found) == sorted(run_ids[1:3])
found = client.search_runs([experiment_id], "attributes.status = 'FINISHED' and params.optimizer != 'adam'")
assert sorted(r.info.run_name for r in found) == ["sweep-0", "sweep-2", "sweep-4"], [r.info.run_name for r in found]
pages, token = [], None
while True:
    page = client.search_runs([experiment_id], order_by=["attributes.start_time ASC"], max_results=2, page_token=token)
    pages.append([r.info.run_id for r in page])
    token = page.token
    if not token:
        break
assert [len(p) for p in pages] == [2, 2, 2], pages
assert [r for p in pages for r in p] == run_ids, pages
frame = mlflow.search_runs([experiment_id], filter_string="tags.sweep = 'yes'")
assert len(frame) == 5 and "metrics.score" in frame.columns, frame.columns
expect_error("INVALID_PARAMETER_VALUE", client.search_runs, [experiment_id], "metrics.score >> 1")

# --- lifecycle: fail, kill, delete, restore ----------------------------------------------
client.set_terminated(run_ids[1], status="FAILED")
assert client.get_run(run_ids[1]).info.status == "FAILED"
client.set_terminated(run_ids[2], status="KILLED")
assert client.get_run(run_ids[2]).info.status == "KILLED"
client.delete_run(run_ids[3])
assert client.get_run(run_ids[3]).info.lifecycle_stage == "deleted"
active = [r.info.run_id for r in client.search_runs([experiment_id])]
assert run_ids[3] not in active and len(active) == 5, active
gone = [r.info.run_id for r in client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)]
assert gone == [run_ids[3]], gone
assert len(client.search_runs([experiment_id], run_view_type=ViewType.ALL)) == 6
client.restore_run(run_ids[3])
assert client.get_run(run_ids[3]).info.lifecycle_stage == "active"
expect_error("RESOURCE_DOES_NOT_EXIST", client.get_run, "0" * 32)

# --- the Default experiment ------------------------------------------------------------
default = client.get_experiment("0")
assert default.name == "Default", default
created = client.create_run("0", run_name="in-default")
assert client.get_run(created.info.run_id).info.run_name == "in-default"

# --- dataset inputs ------------------------------------------------------------------
try:
    import pandas as pd

    dataset = mlflow.data.from_pandas(pd.DataFrame({"x": [1, 2, 3]}), source="s3://bucket/train.csv", name="train")
    with mlflow.start_run(run_id=run_ids[4]):
        mlflow.log_input(dataset, context="training")
    inputs = client.get_run(run_ids[4]).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("train", dataset.digest)], inputs
    assert inputs[0].tags[0].value == "training", inputs
except ImportError:
    print("pandas missing: dataset inputs not checked", file=sys.stderr)

# --- MLflow 2: a logged model is run artifacts, loaded back from runs:/ -------------------------
if MAJOR == 2:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    features, labels = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    with mlflow.start_run(run_name="model") as model_run:
        mlflow.sklearn.log_model(LogisticRegression().fit(features, labels), "model")
    loaded = mlflow.pyfunc.load_model(f"runs:/{model_run.info.run_id}/model")
    assert list(loaded.predict(features)) == [0, 0, 1, 1]
    assert "mlflow.log-model.history" in client.get_run(model_run.info.run_id).data.tags

# --- MLflow 3: logged models (autolog, log_model), loaded from models:/ and runs:/ -----------------
if MAJOR >= 3:
    import numpy as np
    from mlflow.entities import LoggedModelStatus
    from sklearn.linear_model import LogisticRegression

    features, labels = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    mlflow.sklearn.autolog()
    with mlflow.start_run(run_name="autolog") as auto_run:
        LogisticRegression().fit(features, labels)
    mlflow.sklearn.autolog(disable=True)
    auto_model = mlflow.last_logged_model()
    assert auto_model is not None and auto_model.source_run_id == auto_run.info.run_id, auto_model
    assert auto_model.status == LoggedModelStatus.READY, auto_model.status
    loaded = mlflow.pyfunc.load_model(f"models:/{auto_model.model_id}")
    assert list(loaded.predict(features)) == [0, 0, 1, 1]

    with mlflow.start_run(run_name="model") as model_run:
        mlflow.log_param("C", 1.0)
        info = mlflow.sklearn.log_model(LogisticRegression(C=1.0).fit(features, labels), name="model")
        mlflow.log_metric("accuracy", 1.0, model_id=info.model_id)
    assert info.model_uri == f"models:/{info.model_id}", info.model_uri
    for uri in (info.model_uri, f"runs:/{model_run.info.run_id}/model"):
        assert list(mlflow.pyfunc.load_model(uri).predict(features)) == [0, 0, 1, 1], uri
    model = client.get_logged_model(info.model_id)
    assert (model.name, model.source_run_id, model.experiment_id) == ("model", model_run.info.run_id, experiment_id)
    assert model.params["C"] == "1.0" and model.status == LoggedModelStatus.READY, (model.params, model.status)
    assert [(m.key, m.value) for m in model.metrics] == [("accuracy", 1.0)], model.metrics
    assert model.artifact_location == f"mlflow-artifacts:/{experiment_id}/models/{info.model_id}/artifacts"
    assert "MLmodel" in [f.path for f in client.list_logged_model_artifacts(info.model_id)]
    found = client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{model_run.info.run_id}'")
    assert [m.model_id for m in found] == [info.model_id], found
    found = client.search_logged_models([experiment_id], filter_string="metrics.accuracy > 0.5")
    assert [m.model_id for m in found] == [info.model_id], found
    page = client.search_logged_models([experiment_id], max_results=1)
    assert len(page) == 1 and page.token, page
    client.set_logged_model_tags(info.model_id, {"stage": "candidate", "temp": "x"})
    client.delete_logged_model_tag(info.model_id, "temp")
    assert client.get_logged_model(info.model_id).tags.get("stage") == "candidate"
    assert "temp" not in client.get_logged_model(info.model_id).tags
    client.delete_logged_model(auto_model.model_id)
    expect_error("RESOURCE_DOES_NOT_EXIST", client.get_logged_model, auto_model.model_id)
    remaining = client.search_logged_models([experiment_id])
    assert [m.model_id for m in remaining] == [info.model_id], remaining

print(f"workflow ok (mlflow {VERSION})")

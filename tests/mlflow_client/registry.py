"""The stock ``mlflow`` client's Model Registry against Runstore (run by tests/test_mlflow_registry.py in
each client of clients.txt): register a logged sklearn model, stages, aliases, search, load it back
from ``models:/name/1``, ``models:/name@alias`` and ``models:/name/Production``, and MLflow's errors."""

import os
import time

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression

VERSION = mlflow.__version__
MAJOR = int(VERSION.split(".")[0])
client = MlflowClient()
suffix = os.environ.get("WORKFLOW_SUFFIX", str(int(time.time()))).replace(".", "-")


def expect_error(code, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except MlflowException as exc:
        assert exc.error_code == code, (code, exc.error_code, exc.message)
        return exc
    raise AssertionError(f"{call.__name__} did not fail with {code}")


features, labels = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
experiment_id = client.create_experiment(f"Registry {suffix}")
with mlflow.start_run(experiment_id=experiment_id, run_name="train") as run:
    mlflow.log_metric("accuracy", 1.0)
    if MAJOR >= 3:
        mlflow.sklearn.log_model(LogisticRegression().fit(features, labels), name="model")
    else:
        mlflow.sklearn.log_model(LogisticRegression().fit(features, labels), "model")
run_id = run.info.run_id

# --- registered models and versions ----------------------------------------------------------------
name = f"classifier-{suffix}"
created = client.create_registered_model(name, description="a tiny classifier")
assert created.name == name and created.description == "a tiny classifier", created
expect_error("RESOURCE_ALREADY_EXISTS", client.create_registered_model, name)
first = mlflow.register_model(f"runs:/{run_id}/model", name)  # the model exists: a new version of it
assert (first.name, first.version, first.run_id, first.current_stage) == (name, "1", run_id, "None"), first
assert first.status == "READY", first.status
second = client.create_model_version(name, first.source, run_id=run_id, description="again")
assert second.version == "2" and second.description == "again", second
other = f"other-{suffix}"
assert mlflow.register_model(f"runs:/{run_id}/model", other).version == "1"  # a new name: made on the way

version = client.get_model_version(name, "1")
assert version.source == first.source and version.run_id == run_id, version
expect_error("RESOURCE_DOES_NOT_EXIST", client.get_model_version, name, "9")
expect_error("RESOURCE_DOES_NOT_EXIST", client.get_registered_model, f"missing-{suffix}")

# --- stages ----------------------------------------------------------------------------------------
client.transition_model_version_stage(name, "1", "Staging")
client.transition_model_version_stage(name, "2", "production")
moved = client.transition_model_version_stage(name, "1", "Production", archive_existing_versions=True)
assert moved.current_stage == "Production", moved
assert client.get_model_version(name, "2").current_stage == "Archived"
expect_error("INVALID_PARAMETER_VALUE", client.transition_model_version_stage, name, "1", "Prod")
latest = client.get_latest_versions(name, stages=["Production"])
assert [(v.version, v.current_stage) for v in latest] == [("1", "Production")], latest
model = client.get_registered_model(name)
assert sorted((v.version, v.current_stage) for v in model.latest_versions) == [
    ("1", "Production"),
    ("2", "Archived"),
], model.latest_versions

# --- aliases ---------------------------------------------------------------------------------------
client.set_registered_model_alias(name, "champion", "2")
assert client.get_model_version_by_alias(name, "champion").version == "2"
assert client.get_registered_model(name).aliases == {"champion": "2"}
assert client.get_model_version(name, "2").aliases == ["champion"]
client.set_registered_model_alias(name, "champion", "1")  # moves
assert client.get_model_version_by_alias(name, "champion").version == "1"

# --- the model, loaded back by version, alias and stage --------------------------------------------
for uri in (f"models:/{name}/1", f"models:/{name}@champion", f"models:/{name}/Production", f"models:/{name}/2"):
    assert list(mlflow.pyfunc.load_model(uri).predict(features)) == [0, 0, 1, 1], uri
uri = client.get_model_version_download_uri(name, "1")
assert uri.startswith("mlflow-artifacts:/"), uri
assert "MLmodel" in os.listdir(mlflow.artifacts.download_artifacts(artifact_uri=uri))

# MLflow 3: log_model(registered_model_name=...) registers the logged model (source models:/<model_id>).
if MAJOR >= 3:
    with mlflow.start_run(experiment_id=experiment_id, run_name="direct") as direct_run:
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(features, labels), name="model", registered_model_name=name
        )
    third = client.get_model_version(name, "3")
    assert (third.run_id, third.source) == (direct_run.info.run_id, f"models:/{info.model_id}"), third
    assert list(mlflow.pyfunc.load_model(f"models:/{name}/3").predict(features)) == [0, 0, 1, 1]
    client.delete_model_version(name, "3")

# --- search, update, rename, delete ----------------------------------------------------------------
found = client.search_registered_models(filter_string=f"name LIKE 'classifier-{suffix}%'")
assert [m.name for m in found] == [name], found
both = client.search_registered_models(filter_string=f"name LIKE '%-{suffix}'", order_by=["name DESC"])
assert [m.name for m in both] == [other, name], both
page = client.search_registered_models(filter_string=f"name LIKE '%-{suffix}'", max_results=1)
assert len(page) == 1 and page.token, page
rest = client.search_registered_models(filter_string=f"name LIKE '%-{suffix}'", max_results=1, page_token=page.token)
assert [m.name for m in rest] == [other], rest
versions = client.search_model_versions(f"name = '{name}'")
assert sorted(v.version for v in versions) == ["1", "2"], versions
by_run = client.search_model_versions(f"run_id = '{run_id}'")
assert sorted((v.name, v.version) for v in by_run) == [(name, "1"), (name, "2"), (other, "1")], by_run

client.update_registered_model(name, description="promoted")
assert client.get_registered_model(name).description == "promoted"
client.update_model_version(name, "1", description="the first")
assert client.get_model_version(name, "1").description == "the first"
renamed = f"renamed-{suffix}"
client.rename_registered_model(other, renamed)
assert client.get_registered_model(renamed).name == renamed
expect_error("RESOURCE_DOES_NOT_EXIST", client.get_registered_model, other)
expect_error("RESOURCE_ALREADY_EXISTS", client.rename_registered_model, renamed, name)

client.delete_registered_model_alias(name, "champion")
expect_error("RESOURCE_DOES_NOT_EXIST", client.get_model_version_by_alias, name, "champion")
client.delete_model_version(name, "2")
expect_error("RESOURCE_DOES_NOT_EXIST", client.get_model_version, name, "2")
client.delete_registered_model(renamed)
expect_error("RESOURCE_DOES_NOT_EXIST", client.get_registered_model, renamed)

print(f"registry ok (mlflow {VERSION})")

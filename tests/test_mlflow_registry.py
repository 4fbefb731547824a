"""MLflow's Model Registry REST API over Runstore's model registry (runs/mlflow/registry.py).

The stock ``mlflow`` clients of tests/mlflow_client/clients.txt run tests/mlflow_client/registry.py
against a live server; the HTTP tests below pin MLflow's error codes and the permission world."""

import os
import subprocess

import pytest

from accounts.models import ApiToken

from .test_artifacts import upload_set
from .test_mlflow_client import CLIENTS, REPO, venv_python

SCRIPT = REPO / "tests" / "mlflow_client" / "registry.py"


@pytest.mark.parametrize("version", sorted(CLIENTS))
def test_stock_mlflow_client_model_registry_workflow_passes(version, live_server, transactional_db, django_user_model):
    python = venv_python(CLIENTS[version])
    user = django_user_model.objects.create_user("registry-user", password="pw")
    _, token = ApiToken.issue(user, name="mlflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DJANGO_", "DATABASE_", "RUNSTORE_"))}
    env.update(
        MLFLOW_TRACKING_URI=live_server.url,
        MLFLOW_TRACKING_TOKEN=token,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT="60",
        WORKFLOW_SUFFIX=version,
        PYTHONWARNINGS="ignore",
    )
    result = subprocess.run(
        [python, str(SCRIPT)], capture_output=True, text=True, timeout=600, env=env, cwd=REPO, check=False
    )
    output = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, output
    assert f"registry ok (mlflow {version})" in result.stdout, output


# --- request by request: MLflow's shapes and error codes, and the permission world -------------------

API = "/api/2.0/mlflow/"
PROXY = "/api/2.0/mlflow-artifacts/artifacts"
MLMODEL = b"flavors:\n  python_function: {}\n"
PICKLE = b"\x80\x04weights" * 1000


def call(client, method, endpoint, body=None):
    if method == "GET":
        return client.get(API + endpoint, body or {})
    return getattr(client, method.lower())(API + endpoint, body or {}, format="json")


def error(response) -> tuple[int, str]:
    return response.status_code, response.json().get("error_code")


@pytest.fixture
def model_run(owner, run, blob_store):
    upload_set(owner, run, "artifacts", {"model/MLmodel": MLMODEL, "model/model.pkl": PICKLE, "notes.txt": b"n"})
    return run


@pytest.fixture
def registered(owner_api, model_run):
    """``acme/clf``, at home in acme/vision, version 1 from ``runs:/<run>/model``."""
    created = call(owner_api, "POST", "registered-models/create", {"name": "acme/clf"})
    assert created.status_code == 200, created.json()
    source = f"runs:/{model_run.uuid.hex}/model"
    version = call(owner_api, "POST", "model-versions/create", {"name": "acme/clf", "source": source})
    assert version.status_code == 200, version.json()
    return version.json()["model_version"]


def test_a_version_from_runs_uri_holds_that_folder_and_its_download_uri_serves_the_bytes(owner_api, registered):
    assert registered["version"] == "1" and registered["current_stage"] == "None" and registered["status"] == "READY"
    uri = call(owner_api, "GET", "model-versions/get-download-uri", {"name": "acme/clf", "version": "1"})
    artifact_uri = uri.json()["artifact_uri"]
    assert artifact_uri.startswith("mlflow-artifacts:/registry/")
    path = artifact_uri.removeprefix("mlflow-artifacts:/")
    listing = owner_api.get(PROXY, {"path": path})
    assert listing.status_code == 200, listing.json()
    assert [(f["path"], f.get("file_size")) for f in listing.json()["files"]] == [
        ("MLmodel", len(MLMODEL)),
        ("model.pkl", len(PICKLE)),
    ]
    response = owner_api.get(f"{PROXY}/{path}/model.pkl")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PICKLE
    assert error(owner_api.get(f"{PROXY}/{path}/notes.txt")) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_registry_errors_are_mlflows(owner_api, registered, model_run):
    again = call(owner_api, "POST", "registered-models/create", {"name": "acme/clf"})
    assert error(again) == (400, "RESOURCE_ALREADY_EXISTS")
    assert error(call(owner_api, "GET", "registered-models/get", {"name": "acme/nope"})) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert error(call(owner_api, "GET", "model-versions/get", {"name": "acme/clf", "version": "7"})) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    bad_name = call(owner_api, "POST", "registered-models/create", {"name": "acme/bad name!"})
    assert error(bad_name) == (400, "INVALID_PARAMETER_VALUE") and "name" in bad_name.json()["message"]
    stage = call(
        owner_api, "POST", "model-versions/transition-stage", {"name": "acme/clf", "version": "1", "stage": "Prod"}
    )
    assert error(stage) == (400, "INVALID_PARAMETER_VALUE") and "stage" in stage.json()["message"]
    bad_version = call(owner_api, "GET", "model-versions/get", {"name": "acme/clf", "version": "one"})
    assert error(bad_version) == (400, "INVALID_PARAMETER_VALUE")
    missing = call(
        owner_api, "POST", "model-versions/create", {"name": "acme/clf", "source": f"runs:/{model_run.uuid.hex}/nope"}
    )
    assert error(missing) == (404, "RESOURCE_DOES_NOT_EXIST") and "nope" in missing.json()["message"]
    foreign = call(owner_api, "POST", "model-versions/create", {"name": "acme/clf", "source": "s3://bucket/model"})
    assert error(foreign) == (400, "INVALID_PARAMETER_VALUE") and "source" in foreign.json()["message"]
    alias = call(owner_api, "GET", "registered-models/alias", {"name": "acme/clf", "alias": "champion"})
    assert error(alias) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_viewer_reads_contributor_promotes_stranger_sees_nothing(api, viewer, contributor, stranger, registered):
    reader = api(viewer)
    assert call(reader, "GET", "registered-models/get", {"name": "acme/clf"}).status_code == 200
    found = call(reader, "GET", "registered-models/search", {"filter": "name LIKE 'acme/%'"})
    assert [m["name"] for m in found.json()["registered_models"]] == ["acme/clf"]
    body = {"name": "acme/clf", "version": "1", "stage": "Production"}
    assert error(call(reader, "POST", "model-versions/transition-stage", body)) == (403, "PERMISSION_DENIED")
    assert error(call(reader, "POST", "registered-models/alias", {**body, "alias": "champion"})) == (
        403,
        "PERMISSION_DENIED",
    )

    writer = api(contributor)
    promoted = call(writer, "POST", "model-versions/transition-stage", body)
    assert promoted.status_code == 200 and promoted.json()["model_version"]["current_stage"] == "Production"
    assert call(writer, "POST", "registered-models/alias", {**body, "alias": "champion"}).status_code == 200
    by_alias = call(reader, "GET", "registered-models/alias", {"name": "acme/clf", "alias": "champion"})
    assert by_alias.json()["model_version"]["version"] == "1"

    outsider = api(stranger)
    assert error(call(outsider, "GET", "registered-models/get", {"name": "acme/clf"})) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert call(outsider, "GET", "registered-models/search", {}).json().get("registered_models", []) == []
    uri = call(reader, "GET", "model-versions/get-download-uri", {"name": "acme/clf", "version": "1"})
    path = uri.json()["artifact_uri"].removeprefix("mlflow-artifacts:/")
    assert error(outsider.get(f"{PROXY}/{path}/MLmodel")) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_registered_model_and_version_searches_read_a_fixed_number_of_statements(
    owner_api, model_run, django_assert_max_num_queries
):
    source = f"runs:/{model_run.uuid.hex}/model"
    for n in range(6):
        assert call(owner_api, "POST", "registered-models/create", {"name": f"acme/m{n}"}).status_code == 200
        for _ in range(2):
            call(owner_api, "POST", "model-versions/create", {"name": f"acme/m{n}", "source": source})
        body = {"name": f"acme/m{n}", "version": "1", "stage": "Production"}
        call(owner_api, "POST", "model-versions/transition-stage", body)
        call(owner_api, "POST", "registered-models/alias", {**body, "alias": "champion"})
    with django_assert_max_num_queries(8):  # 7 measured, for any number of models
        models = call(owner_api, "GET", "registered-models/search", {"filter": "name LIKE 'acme/m%'"})
    assert len(models.json()["registered_models"]) == 6
    assert all(len(m["latest_versions"]) == 2 and m["aliases"] for m in models.json()["registered_models"])
    with django_assert_max_num_queries(6):  # 5 measured, for any number of versions
        versions = call(owner_api, "GET", "model-versions/search", {"filter": "name LIKE 'acme/m%'"})
    assert len(versions.json()["model_versions"]) == 12

"""MLflow 3 logged models through the MLflow-compatible API: the endpoints the 3.x client calls, the
model's link to its source run (a field and a file set on the run), its files behind the artifact
proxy, search, and who may do what (the permission world of tests/conftest.py)."""

import pytest

from runs.models import Attribute, AttributeType, FileEntry

from .conftest import run_url

API = "/api/2.0/mlflow/"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


def post(client, endpoint, body=None):
    return client.post(API + endpoint, body or {}, format="json")


def create_model(client, run, **body):
    body = {"experiment_id": str(run.project_id), "source_run_id": run.uuid.hex, "name": "model", **body}
    response = post(client, "logged-models", body)
    assert response.status_code == 200, response.json()
    return response.json()["model"]


def get_model(client, model_id, **query):
    return client.get(f"{API}logged-models/{model_id}", query)


def upload(client, model, relpath, content):
    info = model["info"]
    url = f"{ARTIFACTS}/{info['experiment_id']}/models/{info['model_id']}/artifacts/{relpath}"
    return client.put(url, content, content_type="application/octet-stream")


def search(client, run, **body):
    response = post(client, "logged-models/search", {"experiment_ids": [str(run.project_id)], **body})
    assert response.status_code == 200, response.json()
    return response.json()


@pytest.fixture
def owner_api(owner, api):
    return api(owner)


def test_created_model_is_linked_to_its_source_run_and_finalized(owner_api, run):
    params = [{"key": "C", "value": "1.0"}]
    model = create_model(owner_api, run, params=params, tags=[{"key": "k", "value": "v"}], model_type="clf")
    info = model["info"]
    assert info["model_id"].startswith("m-") and info["status"] == "LOGGED_MODEL_PENDING"
    assert (info["source_run_id"], info["experiment_id"], info["name"]) == (run.uuid.hex, str(run.project_id), "model")
    assert info["artifact_uri"] == f"mlflow-artifacts:/{run.project_id}/models/{info['model_id']}/artifacts"
    assert info["tags"] == [{"key": "k", "value": "v"}] and model["data"]["params"] == params
    assert Attribute.objects.get(run=run, path="models/model/model_id").string_value == info["model_id"]
    finalized = owner_api.patch(
        f"{API}logged-models/{info['model_id']}",
        {"model_id": info["model_id"], "status": "LOGGED_MODEL_READY"},
        format="json",
    )
    assert finalized.status_code == 200, finalized.json()
    assert finalized.json()["model"]["info"]["status"] == "LOGGED_MODEL_READY"
    assert get_model(owner_api, info["model_id"]).json()["model"]["info"]["status"] == "LOGGED_MODEL_READY"


def test_model_files_are_the_source_runs_files_and_download_byte_identical(owner_api, run, blob_store):
    model = create_model(owner_api, run)
    model_id = model["info"]["model_id"]
    content = bytes(range(256)) * 64
    assert upload(owner_api, model, "MLmodel", b"flavors: {}\n").status_code == 200
    assert upload(owner_api, model, "data/model.pkl", content).status_code == 200
    stored = FileEntry.objects.filter(attribute__run=run, attribute__path="models/model/files")
    assert sorted(stored.values_list("relpath", flat=True)) == ["MLmodel", "data/model.pkl"]
    assert Attribute.objects.get(run=run, path="models/model/files").type == AttributeType.FILE_SET
    listed = owner_api.get(f"{API}logged-models/{model_id}/artifacts/directories").json()
    assert listed["root_uri"] == model["info"]["artifact_uri"]
    assert listed["files"] == [{"path": "MLmodel", "is_dir": False, "file_size": 12}, {"path": "data", "is_dir": True}]
    proxied = owner_api.get(ARTIFACTS, {"path": f"{run.project_id}/models/{model_id}/artifacts/data"}).json()
    assert proxied["files"] == [{"path": "model.pkl", "is_dir": False, "file_size": len(content)}]
    downloaded = owner_api.get(f"{ARTIFACTS}/{run.project_id}/models/{model_id}/artifacts/data/model.pkl")
    assert b"".join(downloaded.streaming_content) == content
    by_file = owner_api.get(f"{API}logged-models/{model_id}/artifacts/files", {"artifact_file_path": "MLmodel"})
    assert b"".join(by_file.streaming_content) == b"flavors: {}\n"
    assert not FileEntry.objects.filter(attribute__run=run, attribute__path="artifacts").exists()
    native = owner_api.get(run_url(run, "files"), {"path": "models/model/files"})  # the run's files, natively
    assert native.status_code == 200, native.json()
    assert "data/model.pkl" in str(native.json())


def test_a_second_model_of_the_same_name_in_a_run_gets_its_own_folder(owner_api, run):
    first = create_model(owner_api, run)["info"]["model_id"]
    second = create_model(owner_api, run)["info"]["model_id"]
    fields = dict(Attribute.objects.filter(run=run, path__endswith="/model_id").values_list("path", "string_value"))
    assert fields == {"models/model/model_id": first, "models/model-2/model_id": second}


def test_tags_params_and_metrics_of_a_model(owner_api, run):
    model_id = create_model(owner_api, run)["info"]["model_id"]
    tags = {"tags": [{"key": "stage", "value": "candidate"}, {"key": "temp", "value": "x"}]}
    assert owner_api.patch(f"{API}logged-models/{model_id}/tags", tags, format="json").status_code == 200
    assert owner_api.delete(f"{API}logged-models/{model_id}/tags/temp").status_code == 200
    missing = owner_api.delete(f"{API}logged-models/{model_id}/tags/temp")
    assert (missing.status_code, missing.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    params = {"model_id": model_id, "params": [{"key": "alpha", "value": "0.5"}]}
    assert post(owner_api, f"logged-models/{model_id}/params", params).status_code == 200
    metric = {"key": "acc", "value": 0.9, "timestamp": 5, "step": 1, "model_id": model_id, "dataset_name": "eval"}
    for _ in range(2):  # a retried request links the point once
        assert post(owner_api, "runs/log-batch", {"run_id": run.uuid.hex, "metrics": [metric]}).status_code == 200
    logged = {"run_id": run.uuid.hex, "key": "loss", "value": 0.1, "timestamp": 6, "step": 1, "model_id": model_id}
    assert post(owner_api, "runs/log-metric", logged).status_code == 200
    model = get_model(owner_api, model_id).json()["model"]
    assert model["info"]["tags"] == [{"key": "stage", "value": "candidate"}]
    assert model["data"]["params"] == [{"key": "alpha", "value": "0.5"}]
    metrics = [(m["key"], m["value"], m.get("dataset_name"), m["run_id"]) for m in model["data"]["metrics"]]
    assert metrics == [("acc", 0.9, "eval", run.uuid.hex), ("loss", 0.1, None, run.uuid.hex)]
    run_metrics = post(owner_api, "runs/search", {"experiment_ids": [str(run.project_id)]}).json()["runs"][0]
    assert {m["key"] for m in run_metrics["data"]["metrics"]} == {"acc", "loss"}  # still the run's metrics too


def test_search_logged_models_filters_orders_and_pages(owner_api, run):
    ids = {}
    for name, acc in (("alpha", 0.5), ("beta", 0.9), ("gamma", 0.7)):
        model_id = create_model(owner_api, run, name=name, tags=[{"key": "kind", "value": name[0]}])["info"]["model_id"]
        metric = {"key": "acc", "value": acc, "timestamp": 1, "step": 0, "model_id": model_id}
        post(owner_api, "runs/log-batch", {"run_id": run.uuid.hex, "metrics": [metric]})
        ids[name] = model_id
    owner_api.patch(f"{API}logged-models/{ids['beta']}", {"status": "LOGGED_MODEL_READY"}, format="json")

    def names(answer):
        return [m["info"]["name"] for m in answer["models"]]

    assert names(search(owner_api, run, filter="name = 'beta'")) == ["beta"]
    assert names(search(owner_api, run, filter=f"source_run_id = '{run.uuid.hex}' AND metrics.acc > 0.6")) == [
        "gamma",
        "beta",
    ]  # newest first by default
    assert names(search(owner_api, run, filter="status = 'READY'")) == ["beta"]
    assert names(search(owner_api, run, filter="tags.kind IN ('a', 'g') AND name LIKE '%a'")) == ["gamma", "alpha"]
    order = [{"field_name": "metrics.acc", "ascending": False}]
    first = search(owner_api, run, order_by=order, max_results=2)
    assert names(first) == ["beta", "gamma"]
    second = search(owner_api, run, order_by=order, max_results=2, page_token=first["next_page_token"])
    assert names(second) == ["alpha"] and "next_page_token" not in second
    bad = post(owner_api, "logged-models/search", {"experiment_ids": [str(run.project_id)], "filter": "nope.x = 1"})
    assert (bad.status_code, bad.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


def test_a_deleted_model_is_found_only_when_deleted_ones_are_allowed(owner_api, run):
    model_id = create_model(owner_api, run)["info"]["model_id"]
    assert owner_api.delete(f"{API}logged-models/{model_id}", {"model_id": model_id}, format="json").status_code == 200
    gone = get_model(owner_api, model_id)
    assert (gone.status_code, gone.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert get_model(owner_api, model_id, allow_deleted="true").status_code == 200
    assert search(owner_api, run)["models"] == []


def test_a_model_without_source_run_takes_files_once_a_run_outputs_it(owner_api, run, blob_store):
    response = post(owner_api, "logged-models", {"experiment_id": str(run.project_id), "name": "loose"})
    model = response.json()["model"]
    assert model["info"]["source_run_id"] == ""
    refused = upload(owner_api, model, "MLmodel", b"x")
    assert (refused.status_code, refused.json()["error_code"]) == (501, "NOT_IMPLEMENTED")
    assert "source run" in refused.json()["message"]
    outputs = {"run_id": run.uuid.hex, "models": [{"model_id": model["info"]["model_id"], "step": 0}]}
    assert post(owner_api, "runs/outputs", outputs).status_code == 200
    assert get_model(owner_api, model["info"]["model_id"]).json()["model"]["info"]["source_run_id"] == run.uuid.hex
    assert upload(owner_api, model, "MLmodel", b"x").status_code == 200
    assert FileEntry.objects.filter(attribute__run=run, attribute__path="models/loose/files").count() == 1


def test_bad_requests_name_the_parameter(owner_api, run, project):
    other = post(owner_api, "experiments/create", {"name": "elsewhere"}).json()["experiment_id"]
    response = post(owner_api, "logged-models", {"experiment_id": other, "source_run_id": run.uuid.hex})
    assert (response.status_code, response.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "source_run_id" in response.json()["message"]
    model_id = create_model(owner_api, run)["info"]["model_id"]
    bad = owner_api.patch(f"{API}logged-models/{model_id}", {"status": "DONE"}, format="json")
    assert (bad.status_code, bad.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "'status'" in bad.json()["message"]
    missing = post(owner_api, "logged-models", {})
    assert (missing.status_code, missing.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    loose = post(owner_api, "logged-models", {"experiment_id": other}).json()["model"]["info"]["model_id"]
    outputs = post(owner_api, "runs/outputs", {"run_id": run.uuid.hex, "models": [{"model_id": loose, "step": 0}]})
    assert (outputs.status_code, outputs.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "experiment" in outputs.json()["message"]
    unknown = get_model(owner_api, "m-" + "0" * 32)
    assert (unknown.status_code, unknown.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


@pytest.mark.parametrize(
    "who, read, write",
    [("owner", 200, 200), ("contributor", 200, 200), ("viewer", 200, 403), ("stranger", 404, 404)],
)
def test_each_role_reads_and_writes_models_as_runs(api, world, owner, run, who, read, write):
    model = create_model(api(owner), run)
    model_id = model["info"]["model_id"]
    client = api(world[who])
    assert get_model(client, model_id).status_code == read
    if read == 200:
        assert len(search(client, run)["models"]) == 1
    created = post(client, "logged-models", {"experiment_id": str(run.project_id), "source_run_id": run.uuid.hex})
    assert created.status_code == write
    tagged = client.patch(f"{API}logged-models/{model_id}/tags", {"tags": [{"key": "a", "value": "b"}]}, format="json")
    assert tagged.status_code == write
    assert upload(client, model, "MLmodel", b"x").status_code == write
    if write == 403:
        assert tagged.json()["error_code"] == "PERMISSION_DENIED"
    if read == 404:
        assert get_model(client, model_id).json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_read_token_reads_models_but_cannot_create_or_change_them(owner, api, run):
    from rest_framework.test import APIClient

    from accounts.models import ApiToken

    model_id = create_model(api(owner), run)["info"]["model_id"]
    token, raw = ApiToken.issue(owner, name="read")
    ApiToken.objects.filter(pk=token.pk).update(scope="read")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert get_model(client, model_id).status_code == 200
    created = post(client, "logged-models", {"experiment_id": str(run.project_id), "source_run_id": run.uuid.hex})
    assert (created.status_code, created.json()["error_code"]) == (403, "PERMISSION_DENIED")
    finalized = client.patch(f"{API}logged-models/{model_id}", {"status": "LOGGED_MODEL_READY"}, format="json")
    assert (finalized.status_code, finalized.json()["error_code"]) == (403, "PERMISSION_DENIED")


def test_purging_the_source_run_keeps_the_model_without_files(owner_api, owner, run):
    from runs import services

    model = create_model(owner_api, run)
    services.purge_run(owner, run)
    info = get_model(owner_api, model["info"]["model_id"]).json()["model"]["info"]
    assert info["source_run_id"] == "" and info["name"] == "model"
    listed = owner_api.get(f"{API}logged-models/{info['model_id']}/artifacts/directories")
    assert (listed.status_code, listed.json()["error_code"]) == (501, "NOT_IMPLEMENTED")

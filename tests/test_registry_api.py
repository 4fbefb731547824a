"""The model registry's REST API: registering, promoting and downloading through HTTP, who may do
what, and the JSON errors for bad input."""

import io
import zipfile

import pytest

from runs.registry import services as registry

from .conftest import client_for
from .test_registry import CONFIG, WEIGHTS, log_files

MODELS = "/api/v1/workspaces/acme/models/"


def body(response) -> bytes:
    return b"".join(response.streaming_content) if hasattr(response, "streaming_content") else response.content


@pytest.fixture
def model_run(owner, run, blob_store):
    return log_files(owner, run)


def register(client, run, path="model/weights", name="resnet", **extra):
    data = {"run": f"acme/vision/{run.human_id}", "path": path, **extra}
    return client.post(f"{MODELS}{name}/versions/", data, format="json")


def test_register_promote_and_download_the_production_version(owner_api, model_run):
    created = register(owner_api, model_run, description="first cut")
    assert created.status_code == 201, created.content
    version = created.json()
    assert version["version"] == 1 and version["stage"] == "none" and version["model"] == "resnet"
    assert version["run"]["id"] == model_run.human_id and version["run"]["metrics"] == {"eval/acc": 0.93}
    assert version["files"] == [
        {
            "relpath": "",
            "name": "model.pt",
            "size": len(WEIGHTS),
            "mime_type": version["files"][0]["mime_type"],
            "sha256": version["files"][0]["sha256"],
        }
    ]
    assert owner_api.get(f"{MODELS}resnet/stages/production/").status_code == 404
    promoted = owner_api.post(f"{MODELS}resnet/versions/1/stage", {"stage": "production"}, format="json")
    assert promoted.status_code == 200 and promoted.json()["stage"] == "production"
    assert promoted.json()["stage_changed_by"] == "owner"
    current = owner_api.get(f"{MODELS}resnet/stages/production/")
    assert current.status_code == 200 and current.json()["version"] == 1
    download = owner_api.get(f"{MODELS}resnet/stages/production/download")
    assert download.status_code == 200 and body(download) == WEIGHTS
    assert download["X-Runstore-Model-Version"] == "1" and 'filename="model.pt"' in download["Content-Disposition"]
    ranged = owner_api.get(f"{MODELS}resnet/versions/1/download", HTTP_RANGE="bytes=2-8")
    assert ranged.status_code == 206 and body(ranged) == WEIGHTS[2:9]


def test_the_production_download_url_follows_promotions_and_keeps_registered_bytes(owner, owner_api, model_run):
    register(owner_api, model_run, path="model/dir", stage="production")
    log_files(owner, model_run, weights=b"retrained" * 1000)  # the run's fields change after registration
    register(owner_api, model_run, path="model/dir", stage="staging")
    first = owner_api.get(f"{MODELS}resnet/stages/production/download")
    assert first["Content-Type"] == "application/zip" and first["X-Runstore-Model-Version"] == "1"
    with zipfile.ZipFile(io.BytesIO(body(first))) as archive:
        assert archive.read("resnet-v1/model.pt") == WEIGHTS
        assert archive.read("resnet-v1/cfg/config.json") == CONFIG
    promoted = owner_api.post(
        f"{MODELS}resnet/versions/2/stage", {"stage": "production", "archive_existing": True}, format="json"
    )
    assert promoted.status_code == 200
    second = owner_api.get(f"{MODELS}resnet/stages/production/download")
    assert second["X-Runstore-Model-Version"] == "2"
    with zipfile.ZipFile(io.BytesIO(body(second))) as archive:
        assert archive.read("resnet-v2/model.pt") == b"retrained" * 1000
    one = owner_api.get(f"{MODELS}resnet/stages/production/download", {"relpath": "cfg/config.json"})
    assert body(one) == CONFIG
    versions = owner_api.get(f"{MODELS}resnet/versions/").json()["results"]
    assert [(v["version"], v["stage"]) for v in versions] == [(2, "production"), (1, "archived")]
    listing = owner_api.get(MODELS).json()["results"]
    assert listing[0]["name"] == "resnet" and listing[0]["latest_versions"] == {"production": 2, "archived": 1}


def test_viewers_read_and_download_but_may_not_register_or_promote(api, owner, viewer, stranger, model_run):
    registry.register_version(owner, model_run, "model/weights", "resnet", stage="staging")
    reader = api(viewer)
    assert reader.get(MODELS).json()["count"] == 1
    assert body(reader.get(f"{MODELS}resnet/stages/staging/download")) == WEIGHTS
    refused = reader.post(f"{MODELS}resnet/versions/1/stage", {"stage": "production"}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["status"] == 403
    assert register(reader, model_run).status_code == 403
    assert reader.delete(f"{MODELS}resnet/").status_code == 403
    assert reader.put(f"{MODELS}resnet/aliases/champion", {"version": 1}, format="json").status_code == 403
    outsider = api(stranger)
    assert outsider.get(MODELS).status_code == 404
    assert outsider.get(f"{MODELS}resnet/stages/staging/download").status_code == 404
    assert outsider.post(f"{MODELS}resnet/versions/1/stage", {"stage": "production"}, format="json").status_code == 404
    assert register(outsider, model_run).status_code == 404
    assert api(None).get(MODELS).status_code == 401
    assert owner_api_stage(api(owner)) == "staging"


def owner_api_stage(client) -> str:
    return client.get(f"{MODELS}resnet/versions/1/").json()["stage"]


@pytest.mark.parametrize(
    ("request_", "status", "field"),
    [
        (
            ("post", "resnet/versions/", {"run": "acme/vision/VIS-1", "path": "model/weights", "stage": "prod"}),
            400,
            "stage",
        ),
        (("post", "resnet/versions/", {"run": "acme/vision/VIS-1"}), 400, "path"),
        (("post", "resnet/versions/", {"run": "acme/vision/VIS-99", "path": "model/weights"}), 404, "run"),
        (("post", "resnet/versions/", {"run": "acme/vision/VIS-1", "path": "eval/acc"}), 409, "path"),
        (("post", "resnet/versions/", {"run": "acme/vision/VIS-1", "path": "model/none"}), 404, "path"),
        (("post", "bad+name%20x/versions/", {"run": "acme/vision/VIS-1", "path": "model/weights"}), 400, "name"),
        (("post", "resnet/versions/1/stage", {"stage": "live"}), 400, "stage"),
        (("post", "resnet/versions/1/stage", ["production"]), 400, "body"),
        (("post", "", {"name": "bert", "project": "nowhere"}), 404, "project"),
        (("post", "", {"name": "resnet", "project": "vision"}), 409, "name"),
        (("patch", "resnet/", {"name": "../x"}), 400, "name"),
        (("put", "resnet/aliases/latest", {"version": 1}), 400, "alias"),
        (("put", "resnet/aliases/champion", {"version": 9}), 404, "version"),
        (("get", "resnet/versions/1/download?relpath=nope", None), 404, "relpath"),
    ],
)
def test_bad_input_is_a_json_error_naming_the_field(owner, owner_api, model_run, request_, status, field):
    registry.register_version(owner, model_run, "model/weights", "resnet")
    method, suffix, data = request_
    response = getattr(owner_api, method)(f"{MODELS}{suffix}", data, format="json")
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["status"] == status and error["field"] == field and error["message"]


def test_unknown_stage_in_the_stable_url_is_a_400(owner, owner_api, model_run):
    registry.register_version(owner, model_run, "model/weights", "resnet")
    response = owner_api.get(f"{MODELS}resnet/stages/live/download")
    assert response.status_code == 400 and response.json()["error"]["field"] == "stage"


def test_listing_models_and_versions_takes_a_fixed_number_of_queries(
    owner, owner_api, model_run, django_assert_max_num_queries
):
    for name in ("a", "b", "c"):
        for _ in range(3):
            registry.register_version(owner, model_run, "model/weights", name, stage="staging")
    with django_assert_max_num_queries(12):
        assert owner_api.get(MODELS).json()["count"] == 3
    with django_assert_max_num_queries(12):
        assert owner_api.get(f"{MODELS}a/versions/").json()["count"] == 3


def test_aliases_over_rest(owner, owner_api, model_run):
    registry.register_version(owner, model_run, "model/weights", "resnet")
    registry.register_version(owner, model_run, "model/weights", "resnet")
    assert owner_api.put(f"{MODELS}resnet/aliases/champion", {"version": 1}, format="json").status_code == 200
    assert owner_api.get(f"{MODELS}resnet/aliases/champion").json()["version"] == 1
    assert owner_api.get(f"{MODELS}resnet/").json()["aliases"] == {"champion": 1}
    assert owner_api.delete(f"{MODELS}resnet/aliases/champion").status_code == 204
    assert owner_api.get(f"{MODELS}resnet/aliases/champion").status_code == 404


def test_client_of_another_workspace_run_is_refused(owner, owner_api, model_run):
    other = client_for(owner).post("/api/v1/workspaces/", {"slug": "other", "name": "Other"}, format="json")
    assert other.status_code == 201
    response = owner_api.post(
        "/api/v1/workspaces/other/models/resnet/versions/",
        {"run": f"acme/vision/{model_run.human_id}", "path": "model/weights"},
        format="json",
    )
    assert response.status_code == 400 and response.json()["error"]["field"] == "run"

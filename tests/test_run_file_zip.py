"""The run page's download buttons: a file field's own file, and a file set (a model directory) as one
streamed ZIP archive."""

import io
import zipfile

import pytest
from django.test import Client

from .conftest import batch, client_for
from .test_files import upload

WEIGHTS = b"\x00\x01weights" * 50_000
CONFIG = b'{"layers": 12}\n'


def ui(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def model_run(owner, run, blob_store):
    api = client_for(owner)
    weights = upload(api, run, "model.safetensors", WEIGHTS).json()["sha256"]
    config = upload(api, run, "config.json", CONFIG).json()["sha256"]
    ops = [
        {
            "op": "upload_set",
            "path": "model/final",
            "files": [
                {"relpath": "model.safetensors", "sha256": weights},
                {"relpath": "cfg/config.json", "sha256": config},
            ],
        },
        {"op": "upload", "path": "model/best", "sha256": weights, "name": "best.safetensors"},
    ]
    assert batch(api, run, ops).status_code == 200
    return run


def zip_url(run, path):
    return f"/w/{run.project.workspace.slug}/{run.project.slug}/runs/{run.human_id}/files.zip?path={path}"


@pytest.mark.django_db
def test_viewer_downloads_a_file_set_as_a_streamed_zip(viewer, model_run):
    response = ui(viewer).get(zip_url(model_run, "model/final"))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/zip"
    assert 'filename="VIS-1-model-final.zip"' in response["Content-Disposition"]
    body = b"".join(response.streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == [
            "VIS-1-model-final/cfg/config.json",
            "VIS-1-model-final/model.safetensors",
        ]
        assert archive.read("VIS-1-model-final/model.safetensors") == WEIGHTS
        assert archive.read("VIS-1-model-final/cfg/config.json") == CONFIG


@pytest.mark.django_db
def test_zip_is_only_for_file_sets_and_only_for_those_who_see_the_run(stranger, viewer, model_run):
    assert ui(viewer).get(zip_url(model_run, "model/best")).status_code == 404  # a single file: its own button
    assert ui(viewer).get(zip_url(model_run, "model/none")).status_code == 404
    assert ui(stranger).get(zip_url(model_run, "model/final")).status_code == 404
    response = ui(None).get(zip_url(model_run, "model/final"))
    assert response.status_code == 302 and "/login" in response["Location"]


@pytest.mark.django_db
def test_run_page_offers_download_buttons_for_files_and_file_sets(viewer, model_run):
    page = ui(viewer).get(f"/w/acme/vision/runs/{model_run.human_id}/").content.decode()
    assert 'href="/w/acme/vision/runs/VIS-1/files.zip?path=model/final" download>Download model/final (.zip)' in page
    assert f'href="/api/v1/runs/{model_run.uuid}/files/download?path=model/best" download>Download</a>' in page

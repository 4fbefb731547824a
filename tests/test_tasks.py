"""Blob processing, storage accounting and exports, run in-process (the worker tests run them for real)."""

import io
import json
import zipfile

import pytest
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile

from projects import services as project_services
from projects.models import ProjectUsage
from runs import exports, processing, storage
from runs import services as run_services
from runs.models import Blob, BlobInfo, BlobPreview, BlobState, Export
from runs.usage import compute_usage, projects_needing_refresh, refresh_project_usage, refresh_usage

from .conftest import batch, run_url
from .roles import role_matrix
from .test_files import upload


@pytest.fixture(autouse=True)
def private_blob_folder(settings, tmp_path):
    """Blobs of these tests never land in (or get cleaned out of) the developer's var/blobs."""
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "blobs")},
        },
    }


def png_bytes(size=(640, 480), color=(200, 30, 30)):
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


NOTEBOOK = json.dumps(
    {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Training notes"]},
            {
                "cell_type": "code",
                "metadata": {},
                "execution_count": 1,
                "outputs": [],
                "source": ["print('hello runstore')"],
            },
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
).encode()


def attach(client, run, name, content, path):
    sha = upload(client, run, name, content).json()["sha256"]
    assert (
        batch(
            client, run, [{"op": "upload", "path": path, "sha256": sha, "name": name}], seq=hash(path) % 10**6
        ).status_code
        == 200
    )
    return sha


def test_image_gets_a_thumbnail_next_to_it(owner_api, run, blob_store):
    sha = attach(owner_api, run, "sample.png", png_bytes(), "images/sample")
    assert processing.process_blob(sha) == BlobState.READY
    info = BlobInfo.objects.get(blob_id=sha)
    assert info.detected_mime_type == "image/png" and info.metadata["width"] == 640 and info.metadata["verified"]
    preview = BlobPreview.objects.get(blob_id=sha, kind="thumbnail")
    assert preview.storage_key == storage.preview_key(sha, "thumbnail") and storages["blobs"].exists(
        preview.storage_key
    )
    response = owner_api.get(run_url(run, "files/preview"), {"path": "images/sample", "kind": "thumbnail"})
    from PIL import Image

    thumb = Image.open(io.BytesIO(b"".join(response.streaming_content)))
    assert response.status_code == 200 and max(thumb.size) == 256 and thumb.size == (256, 192)
    body = owner_api.get(run_url(run, "files/info"), {"path": "images/sample"}).json()
    assert body["processing"]["state"] == "ready" and body["processing"]["previews"] == ["thumbnail"]


def test_notebook_and_source_render_to_sandboxed_html(owner_api, run, blob_store):
    nb = attach(owner_api, run, "analysis.ipynb", NOTEBOOK, "notebooks/analysis")
    src = attach(owner_api, run, "train.py", b"def train(lr=0.1):\n    return lr * 2\n", "source/train")
    processing.process_blob(nb)
    processing.process_blob(src)
    html = owner_api.get(run_url(run, "files/preview"), {"path": "notebooks/analysis", "kind": "html"})
    text = b"".join(html.streaming_content).decode()
    assert "Training notes" in text and "hello runstore" in text
    assert html["Content-Security-Policy"].startswith("sandbox") and html["Content-Type"] == "text/html"
    code = b"".join(
        owner_api.get(run_url(run, "files/preview"), {"path": "source/train", "kind": "html"}).streaming_content
    ).decode()
    assert '<span class="k">def</span>' in code
    assert BlobInfo.objects.get(blob_id=src).metadata["language"] == "Python"


def test_mime_type_is_sniffed_not_trusted():
    assert processing.sniff(png_bytes(), "evil.txt") == "image/png"
    assert processing.sniff(b"\x00\x01\x02binary", "x.py") == "application/octet-stream"
    assert processing.sniff(b"import os\n", "x.py") == "text/x-python"
    assert processing.sniff(NOTEBOOK, "nb.json") == "application/x-ipynb+json"


def test_a_stored_object_that_no_longer_matches_its_hash_is_flagged(owner_api, run, blob_store):
    sha = attach(owner_api, run, "w.bin", b"original", "w")
    key = Blob.objects.get(pk=sha).storage_key
    storages["blobs"].delete(key)
    storages["blobs"].save(key, io.BytesIO(b"tampered"))
    assert processing.process_blob(sha) == BlobState.CORRUPT
    assert "hashes to" in BlobInfo.objects.get(blob_id=sha).error
    response = owner_api.get(run_url(run, "files/preview"), {"path": "w", "kind": "thumbnail"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "preview_not_ready"


def test_a_new_upload_is_queued_for_processing(owner, run, monkeypatch, django_capture_on_commit_callbacks):
    from runs import tasks

    sent = []
    monkeypatch.setattr(tasks.process_blob, "delay", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        blob = run_services.store_upload(owner, run, _hashed("a.txt", b"abc"))
    with django_capture_on_commit_callbacks(execute=True):
        run_services.store_upload(owner, run, _hashed("b.txt", b"abc"))  # same content: stored and processed once
    assert sent == [blob.sha256]
    assert processing.sweep() == 1 and BlobInfo.objects.get(blob=blob).state == BlobState.READY


def _hashed(name, content):
    import hashlib

    f = SimpleUploadedFile(name, content)
    f.sha256 = hashlib.sha256(content).hexdigest()
    return f


READ = {"owner": 200, "contributor": 200, "viewer": 200, "stranger": 404, "anonymous": 401}


@pytest.mark.parametrize("endpoint", ["files/preview", "files/info", "files/url"])
def test_previews_follow_run_visibility(world, run, owner_api, endpoint):
    sha = attach(owner_api, run, "p.png", png_bytes((40, 40)), "img")
    processing.process_blob(sha)
    role_matrix(world, lambda client: client.get(run_url(run, endpoint), {"path": "img"}), READ)


# --- storage accounting ---------------------------------------------------------


def test_usage_is_exact_and_counts_nothing_twice(owner, owner_api, run, project):
    other, _ = run_services.create_run(owner, project)
    batch(
        owner_api,
        run,
        [
            {"op": "append", "path": "loss", "values": [0.5] * 100},
            {"op": "append", "path": "log", "kind": "string", "values": ["abc", "héllo"]},
        ],
    )
    run_services.store_upload(owner, run, _hashed("a.bin", b"x" * 1000))
    run_services.store_upload(owner, other, _hashed("a.bin", b"x" * 1000))  # shared: counted once
    run_services.store_upload(owner, other, _hashed("b.bin", b"y" * 10))
    for _ in range(2):
        usage = refresh_project_usage(project.pk)
    assert (usage.float_points, usage.string_points, usage.blob_count, usage.blob_bytes) == (100, 2, 2, 1010)
    assert usage.series_bytes == 100 * 32 + 2 * 24 + len("abc") + len("héllo".encode())
    assert usage.total_bytes == usage.series_bytes + 1010 and usage.preview_bytes == 0
    assert ProjectUsage.objects.count() == 1 and ProjectUsage.workspace_total(project.workspace_id) == usage.total_bytes


def test_previews_count_towards_usage(owner, owner_api, run, project):
    sha = attach(owner_api, run, "i.png", png_bytes(), "img")
    processing.process_blob(sha)
    preview = BlobPreview.objects.get(blob_id=sha)
    assert compute_usage(project.pk)["preview_bytes"] == preview.size > 0


def test_only_changed_projects_are_recounted(owner, owner_api, run, project, workspace):
    for i in range(3):  # ids of runs and projects must not line up by chance
        run_services.create_run(owner, project_services.create_project(owner, workspace, f"pad{i}", key=f"PAD{i}"))
    quiet = project_services.create_project(owner, workspace, "quiet", key="QT")
    assert set(projects_needing_refresh()) >= {project.pk, quiet.pk}
    refresh_usage()
    assert list(projects_needing_refresh()) == []
    assert batch(owner_api, run, [{"op": "append", "path": "loss", "values": [1.0, 2.0]}]).status_code == 200
    run.refresh_from_db()
    assert run.modified_at > ProjectUsage.objects.get(project=project).computed_at
    assert list(projects_needing_refresh()) == [project.pk]
    assert refresh_usage() == 1 and ProjectUsage.objects.get(project=project).float_points == 2


def test_admin_shows_storage_used(client, owner, run, project):
    from django.contrib.auth.models import User

    admin = User.objects.create_superuser("root", password="pw")
    run_services.store_upload(owner, run, _hashed("a.bin", b"x" * 3000))
    refresh_project_usage(project.pk)
    client.force_login(admin)
    for page in ("/admin/projects/project/", "/admin/projects/workspace/"):
        html = client.get(page).content.decode().replace("\xa0", " ")
        assert "storage used" in html.lower() and "2.9 KB" in html, page
    assert client.get(f"/admin/projects/project/{project.pk}/change/").status_code == 200


# --- exports ---------------------------------------------------------------------


def _run_exports(monkeypatch):
    from runs import tasks

    monkeypatch.setattr(tasks.build_export, "delay", lambda export_id: exports.build(export_id))


def test_project_export_holds_fields_series_and_files(
    owner_api, run, monkeypatch, blob_store, django_capture_on_commit_callbacks
):
    _run_exports(monkeypatch)
    batch(
        owner_api,
        run,
        [
            {"op": "assign", "path": "parameters/lr", "value": 0.1},
            {"op": "append", "path": "loss", "values": [3.0, "NaN", 1.0]},
        ],
    )
    attach(owner_api, run, "model.pt", b"weights", "model")
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_api.post("/api/v1/exports/", {"project": "acme/vision"}, format="json")
    assert response.status_code == 202, response.content
    status = owner_api.get(f"/api/v1/exports/{response.json()['id']}/").json()
    assert status["state"] == "done" and status["progress"] == status["total"] == 1
    download = owner_api.get(status["download_url"])
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["project"] == "acme/vision" and [r["id"] for r in manifest["runs"]] == ["VIS-1"]
    fields = {f["path"]: f["value"] for f in json.loads(archive.read("runs/VIS-1/run.json"))["fields"]}
    assert fields["parameters/lr"] == 0.1
    points = json.loads(archive.read("runs/VIS-1/series/loss.json"))["points"]
    assert [p[2] for p in points] == [3.0, "NaN", 1.0]
    assert archive.read("runs/VIS-1/files/model/model.pt") == b"weights"


def test_a_run_export_holds_its_lineage_and_its_audit_entries(
    owner, owner_api, run, monkeypatch, blob_store, django_capture_on_commit_callbacks
):
    _run_exports(monkeypatch)
    files = [{"path": "a.csv", "hash": "a" * 64, "size": 3}, {"path": "b.csv", "hash": "b" * 64, "size": 4}]
    from runs.artifacts.services import version_hash

    digest = version_hash([(f["path"], f["hash"], f["size"]) for f in files])
    track = {"op": "track", "path": "data/train", "hash": digest, "files": files, "name": "people"}
    assert batch(owner_api, run, [track]).status_code == 200
    attach(owner_api, run, "model.pt", b"weights", "model")
    run_services.delete_run(owner, run)
    run_services.restore_run(owner, run)
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_api.post("/api/v1/exports/", {"project": "acme/vision", "run": "VIS-1"}, format="json")
    assert response.status_code == 202, response.content
    status = owner_api.get(f"/api/v1/exports/{response.json()['id']}/").json()
    archive = zipfile.ZipFile(io.BytesIO(b"".join(owner_api.get(status["download_url"]).streaming_content)))
    lineage = json.loads(archive.read("runs/VIS-1/lineage.json"))
    (data,) = lineage["inputs"]
    assert (data["path"], data["name"], data["file_count"]) == ("data/train", "people", 2)
    assert [f[0] if isinstance(f, list) else f["path"] for f in data["files"]] == ["a.csv", "b.csv"]
    assert [o["path"] for o in lineage["outputs"]] == ["model"]
    audit = json.loads(archive.read("runs/VIS-1/audit.json"))
    assert [e["action"] for e in audit] == ["run.deleted", "run.restored", "export.requested"]
    assert audit[0]["actor"] == "owner"


def test_building_an_export_twice_gives_one_archive(owner, run, project):
    export = Export.objects.create(project=project, run=run, requested_by=owner)
    exports.build(export.pk)
    Export.objects.filter(pk=export.pk).update(state="failed")
    exports.build(export.pk)
    export.refresh_from_db()
    assert export.state == "done" and export.progress == 1 and storages["blobs"].exists(export.storage_key)


def test_exports_follow_project_visibility(world, owner, run, project, monkeypatch):
    _run_exports(monkeypatch)
    role_matrix(
        world,
        lambda client: client.post("/api/v1/exports/", {"project": "acme/vision", "run": str(run.uuid)}, format="json"),
        {**READ, "owner": 202, "contributor": 202, "viewer": 202},
    )
    assert sorted(Export.objects.values_list("requested_by__username", flat=True)) == ["contributor", "owner", "viewer"]
    export = Export.objects.create(project=project, requested_by=owner)
    exports.build(export.pk)
    role_matrix(world, lambda client: client.get(f"/api/v1/exports/{export.pk}/"), READ)
    role_matrix(world, lambda client: client.get(f"/api/v1/exports/{export.pk}/download"), READ)


def test_export_of_an_unknown_run_names_the_field(owner_api, run):
    response = owner_api.post("/api/v1/exports/", {"project": "acme/vision", "run": "VIS-99"}, format="json")
    assert response.status_code == 404 and response.json()["error"]["field"] == "run"

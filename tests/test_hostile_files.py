"""Hostile file names, cross-project upload answers and upload sizes (issue 10: defects 1, 10, 12)."""

import hashlib
import io
import json
import os
import zipfile

import pytest
import requests
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile

from projects import services as project_services
from runs import exports, processing
from runs import services as run_services
from runs.models import Attribute, Blob, Export, FileEntry, PendingUpload, Upload
from runs.paths import file_name_error, relpath_error

from .conftest import batch, make_user, run_url, s3_blob_storage
from .test_files import download, upload

HOSTILE_NAMES = ["../../x", "/abs/path", "a/b", "..\\..\\x", "a\\b", "..", ".", "", "x\x00y", "x\x1by", "x\ny"]
HOSTILE_RELPATHS = [
    "../x",
    "a/../../b",
    "/etc/passwd",
    "a//b",
    "./a",
    "a/./b",
    "a/",
    "a\\b",
    "..\\x",
    "x\x07y",
    "",
]


@pytest.fixture
def local_blobs(settings, tmp_path):
    """Blobs in a folder of the test's own (for tests of validation, where the store does not matter)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }


def _sha(owner_api, run, content=b"payload", name="f.bin"):
    response = upload(owner_api, run, name, content)
    assert response.status_code == 201, response.content
    return response.json()["sha256"]


def _error(response):
    assert response.status_code == 400, response.content
    return response.json()["error"]


# --- defect 1: the server refuses names that climb out of a folder ------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_batch_rejects_file_name_with_traversal(owner_api, run, local_blobs, name):
    sha = _sha(owner_api, run)
    cases = [
        ({"op": "upload", "path": "model", "sha256": sha, "name": name}, "ops[1].name"),
        (
            {"op": "append", "path": "images", "kind": "file", "values": [{"sha256": sha, "name": name}]},
            "ops[1].values[0].name",
        ),
        (
            {"op": "upload_set", "path": "ckpt", "files": [{"relpath": "ok.bin", "sha256": sha, "name": name}]},
            "ops[1].files[0].name",
        ),
    ]
    for seq, (op, field) in enumerate(cases, start=1):
        response = batch(owner_api, run, [{"op": "assign", "path": "x", "value": 1}, op], seq=seq)
        error = _error(response)
        assert error["field"] == field and error["op_index"] == 1, error
        assert error["code"] in ("invalid_file_name", "invalid"), error
    assert not FileEntry.objects.exists() and not Attribute.objects.filter(run=run, path="x").exists()


@pytest.mark.parametrize("relpath", HOSTILE_RELPATHS)
def test_batch_rejects_relpath_that_is_not_a_normalised_relative_path(owner_api, run, local_blobs, relpath):
    sha = _sha(owner_api, run)
    op = {
        "op": "upload_set",
        "path": "ckpt",
        "files": [{"relpath": "fine/a.bin", "sha256": sha}, {"relpath": relpath, "sha256": sha}],
    }
    error = _error(batch(owner_api, run, [op]))
    assert error["field"] == "ops[0].files[1].relpath" and error["op_index"] == 0, error
    assert not FileEntry.objects.exists()


@pytest.mark.parametrize("path", ["a/../b", "../a", "a/..", "./a", "a/./b", ".."])
def test_batch_rejects_dot_segments_in_field_paths(owner_api, run, local_blobs, path):
    sha = _sha(owner_api, run)
    for seq, op in enumerate(
        [
            {"op": "upload", "path": path, "sha256": sha},
            {"op": "assign", "path": path, "value": 1},
            {"op": "assign", "path": "ns", "value": {"..": {"x": 1}}}
            if path == ".."
            else {"op": "append", "path": path, "values": [1.0]},
        ],
        start=1,
    ):
        error = _error(batch(owner_api, run, [op], seq=seq))
        assert error["field"] == "ops[0].path" and error["code"] == "invalid_path", error
    assert not Attribute.objects.filter(run=run).exclude(path="sys/tags").exists()


def test_plain_names_and_nested_relpaths_are_accepted(owner_api, run, local_blobs):
    sha = _sha(owner_api, run, b"ok")
    response = batch(
        owner_api,
        run,
        [
            {"op": "upload", "path": "model", "sha256": sha, "name": "weights (final) v1.2.tar.gz"},
            {"op": "append", "path": "images", "kind": "file", "values": [{"sha256": sha, "name": "données ..x.png"}]},
            {
                "op": "upload_set",
                "path": "ckpt",
                "files": [{"relpath": "a/b/c..d/e.bin", "sha256": sha}, {"relpath": ".hidden/x", "sha256": sha}],
            },
        ],
    )
    assert response.status_code == 200, response.content
    listing = owner_api.get(run_url(run, "files"), {"path": "ckpt"}).json()["files"]
    assert sorted(f["relpath"] for f in listing) == [".hidden/x", "a/b/c..d/e.bin"]
    assert sorted(f["name"] for f in listing) == ["e.bin", "x"]


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "x\x00y"])
def test_direct_upload_rejects_a_name_that_is_not_a_plain_file_name(owner_api, run, name):
    response = owner_api.post(
        run_url(run, "uploads/direct"), {"sha256": "a" * 64, "size": 3, "name": name}, format="json"
    )
    assert response.status_code == 400 and response.json()["error"]["field"] == "name", response.content
    assert not PendingUpload.objects.exists()


def test_multipart_upload_keeps_only_the_base_name(owner_api, run, local_blobs):
    response = upload(owner_api, run, "../../etc/evil.sh", b"#!/bin/sh")
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "evil.sh"
    assert Upload.objects.get(run=run).name == "evil.sh"


# --- defect 1: names stored before the rules stay readable, sanitised on the way out -------------


def _store_hostile(owner_api, run):
    """Files stored with hostile names, as an older server accepted them (written straight to the DB)."""
    a, b, c = (_sha(owner_api, run, content, f"{i}.bin") for i, content in enumerate([b"A", b"BB", b"CCC"]))
    assert (
        batch(
            owner_api,
            run,
            [
                {"op": "upload", "path": "model", "sha256": a, "name": "model.pt"},
                {
                    "op": "upload_set",
                    "path": "ckpt",
                    "files": [
                        {"relpath": "one", "sha256": a},
                        {"relpath": "two", "sha256": b},
                        {"relpath": "three", "sha256": c},
                    ],
                },
                {"op": "append", "path": "images", "kind": "file", "values": [{"sha256": b, "name": "img.png"}]},
            ],
        ).status_code
        == 200
    )
    model = FileEntry.objects.get(attribute__path="model")
    FileEntry.objects.filter(pk=model.pk).update(name="../../../home/user/.bashrc")
    relpaths = {"one": "../../.ssh/authorized_keys", "two": "/etc/cron.d/evil", "three": "sub\\..\\..\\x.bin"}
    for old, new in relpaths.items():
        FileEntry.objects.filter(attribute__path="ckpt", relpath=old).update(relpath=new, name=new.rsplit("/", 1)[-1])
    FileEntry.objects.filter(attribute__path="images").update(name="/tmp/../../evil\x1b.png")
    Attribute.objects.filter(run=run, path="images").update(path="x/../../images")
    return relpaths


def test_stored_hostile_names_are_sanitised_in_file_lists_and_downloads(owner_api, run, blob_store):
    _store_hostile(owner_api, run)
    listing = owner_api.get(run_url(run, "files"), {"path": "ckpt"}).json()["files"]
    assert len(listing) == 3
    for entry in listing:
        assert relpath_error(entry["relpath"]) is None, entry
        assert not entry["name"] or file_name_error(entry["name"]) is None, entry
        response, body = download(owner_api, run, path="ckpt", relpath=entry["relpath"])
        assert response.status_code == 200 and body in (b"A", b"BB", b"CCC"), entry
        assert "/" not in response["Content-Disposition"].split("filename", 1)[1], response["Content-Disposition"]
    model = owner_api.get(run_url(run, "files"), {"path": "model"}).json()["files"][0]
    assert model["name"] == ".bashrc"
    response, body = download(owner_api, run, path="model")
    assert body == b"A" and response["Content-Disposition"] == 'attachment; filename=".bashrc"'
    images = owner_api.get(run_url(run, "files"), {"path": "x/../../images"}).json()["files"]
    assert images[0]["name"] == "evil_.png"
    response, body = download(owner_api, run, path="x/../../images", step=0)
    assert body == b"BB" and 'filename="evil_.png"' in response["Content-Disposition"]


def test_export_zip_entries_are_safe_relative_paths(owner_api, run, blob_store):
    _store_hostile(owner_api, run)
    batch(owner_api, run, [{"op": "append", "path": "loss", "values": [1.0]}], seq=99)
    Attribute.objects.filter(run=run, path="loss").update(path="../../loss")
    export = Export.objects.create(project=run.project, requested_by=run.owner)
    assert exports.build(export.pk) == "done"
    export.refresh_from_db()
    with storages["blobs"].open(export.storage_key, "rb") as stream:
        archive = zipfile.ZipFile(io.BytesIO(stream.read()))
    names = archive.namelist()
    assert len(names) == len(set(names))
    for name in names:
        assert relpath_error(name) is None and not name.startswith("/"), name
        assert name == "manifest.json" or name.startswith("runs/VIS-1/"), name
    files = {n: archive.read(n) for n in names if n.startswith("runs/VIS-1/files/")}
    assert sorted(files.values()) == sorted([b"A", b"A", b"BB", b"BB", b"CCC"])
    assert json.loads(archive.read("runs/VIS-1/series/__/__/loss.json"))["points"][0][2] == 1.0


# --- defect 10: an upload answers with what this caller sent ------------------------------------


def _other_tenant(api):
    """A second user with a workspace and project of their own: no membership in ``acme``."""
    other = make_user("mallory")
    workspace = project_services.create_workspace(other, "mallory-ws", "Mallory")
    project = project_services.create_project(other, workspace, "probe", key="PRB")
    run, _ = run_services.create_run(other, project)
    return api(other), run


def _multipart(client, run, name, content, content_type):
    data = {"file": SimpleUploadedFile(name, content, content_type=content_type)}
    return client.post(run_url(run, "uploads"), data, format="multipart")


def test_upload_of_bytes_another_project_holds_answers_with_the_callers_own_type(api, owner_api, run, blob_store):
    secret = b"quarterly numbers, not public"
    first = _multipart(owner_api, run, "secret.xlsx", secret, "application/x-acme-secret")
    assert first.status_code == 201 and first.json()["mime_type"] == "application/x-acme-secret"
    probe_api, probe_run = _other_tenant(api)
    fresh = _multipart(probe_api, probe_run, "fresh.txt", b"never uploaded anywhere", "text/plain")
    probe = _multipart(probe_api, probe_run, "guess.txt", secret, "text/plain")
    assert probe.status_code == fresh.status_code == 201
    assert probe.json() == {
        "sha256": hashlib.sha256(secret).hexdigest(),
        "size": len(secret),
        "name": "guess.txt",
        "mime_type": "text/plain",
    }
    assert set(probe.json()) == set(fresh.json())
    # Attaching it without a MIME type gives the prober's type too, never the other project's.
    sha = probe.json()["sha256"]
    assert batch(probe_api, probe_run, [{"op": "upload", "path": "f", "sha256": sha}]).status_code == 200
    listed = probe_api.get(run_url(probe_run, "files"), {"path": "f"}).json()["files"][0]
    assert listed["mime_type"] == "text/plain"
    info = probe_api.get(run_url(probe_run, "files/info"), {"path": "f"}).json()
    assert info["mime_type"] == "text/plain"


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), "blue").save(out, format="PNG")
    return out.getvalue()


def test_processing_of_bytes_another_project_holds_is_not_revealed(
    api, owner_api, run, blob_store, django_capture_on_commit_callbacks
):
    """What processing learnt from another project's upload (state, previews) is not shown until
    processing has run again for this project's own upload, which the upload queues."""
    image = _png()
    sha = hashlib.sha256(image).hexdigest()
    assert _multipart(owner_api, run, "plot.png", image, "image/png").status_code == 201
    assert processing.process_blob(sha) == "ready"  # the worker, for the first project
    probe_api, probe_run = _other_tenant(api)
    with django_capture_on_commit_callbacks() as queued:
        assert _multipart(probe_api, probe_run, "guess.png", image, "image/png").status_code == 201
    assert len(queued) == 1, "the second project's upload must queue processing of its own"
    assert batch(probe_api, probe_run, [{"op": "upload", "path": "f", "sha256": sha}]).status_code == 200
    info = probe_api.get(run_url(probe_run, "files/info"), {"path": "f"}).json()["processing"]
    assert info == {
        "state": "pending",
        "detected_mime_type": None,
        "metadata": {},
        "error": None,
        "preview_error": None,
        "previews": [],
    }
    preview = probe_api.get(run_url(probe_run, "files/preview"), {"path": "f", "kind": "thumbnail"})
    assert preview.status_code == 404 and preview.json()["error"]["code"] == "preview_not_ready"
    # once the queued task has run for this upload, the project sees what any upload would
    assert processing.process_blob(sha) == "ready"
    info = probe_api.get(run_url(probe_run, "files/info"), {"path": "f"}).json()["processing"]
    assert info["state"] == "ready" and info["previews"] == ["thumbnail"]
    thumbnail = probe_api.get(run_url(probe_run, "files/preview"), {"path": "f", "kind": "thumbnail"})
    assert thumbnail.status_code == 200 and b"".join(thumbnail.streaming_content).startswith(b"\x89PNG")
    thumbnail.close()


def test_direct_upload_of_bytes_another_project_holds_answers_with_the_callers_own_type(api, owner_api, run, settings):
    s3_blob_storage(settings)
    secret = os.urandom(1000)
    assert _multipart(owner_api, run, "secret.bin", secret, "application/x-acme-secret").status_code == 201
    probe_api, probe_run = _other_tenant(api)
    started = probe_api.post(
        run_url(probe_run, "uploads/direct"),
        {
            "sha256": hashlib.sha256(secret).hexdigest(),
            "size": len(secret),
            "name": "guess.txt",
            "mime_type": "text/plain",
        },
        format="json",
    )
    assert started.status_code == 201 and started.json()["exists"] is False  # only this project's uploads count
    assert requests.put(started.json()["url"], data=secret, timeout=30).status_code == 200
    done = probe_api.post(
        run_url(probe_run, f"uploads/direct/{started.json()['upload_id']}/complete"), {}, format="json"
    )
    assert done.status_code == 201, done.content
    assert done.json() == {
        "sha256": hashlib.sha256(secret).hexdigest(),
        "size": len(secret),
        "name": "guess.txt",
        "mime_type": "text/plain",
    }
    again = probe_api.post(
        run_url(probe_run, "uploads/direct"),
        {
            "sha256": hashlib.sha256(secret).hexdigest(),
            "size": len(secret),
            "name": "again.csv",
        },
        format="json",
    )
    assert again.status_code == 200 and again.json()["mime_type"] == "text/csv" and again.json()["name"] == "again.csv"


# --- defect 12: RUNSTORE_MAX_UPLOAD_BYTES ---------------------------------------------------------


def test_upload_above_the_size_limit_is_413_and_nothing_is_stored(owner_api, run, settings, blob_store):
    settings.RUNSTORE_MAX_UPLOAD_BYTES = 1000
    response = upload(owner_api, run, "big.bin", b"x" * 1001)
    assert response.status_code == 413, response.content
    error = response.json()["error"]
    assert error["field"] == "file" and error["code"] == "upload_too_large" and error["limit"] == 1000
    assert not Blob.objects.exists() and not Upload.objects.exists()
    assert upload(owner_api, run, "fits.bin", b"x" * 1000).status_code == 201


def test_upload_with_a_content_length_above_the_limit_is_refused_before_the_body_is_read(
    owner_api, run, settings, local_blobs
):
    settings.RUNSTORE_MAX_UPLOAD_BYTES = 1000
    data = {"file": SimpleUploadedFile("big.bin", b"tiny")}
    response = owner_api.post(run_url(run, "uploads"), data, format="multipart", CONTENT_LENGTH=str(10 * 1024**3))
    assert response.status_code == 413 and response.json()["error"]["field"] == "file", response.content
    assert not Blob.objects.exists()


def test_direct_upload_declaring_more_than_the_limit_is_413(owner_api, run, settings):
    settings.RUNSTORE_MAX_UPLOAD_BYTES = 1000
    response = owner_api.post(
        run_url(run, "uploads/direct"), {"sha256": "a" * 64, "size": 1001, "name": "x.bin"}, format="json"
    )
    assert response.status_code == 413, response.content
    assert response.json()["error"]["field"] == "size" and response.json()["error"]["code"] == "upload_too_large"
    assert not PendingUpload.objects.exists()


def test_direct_upload_is_checked_against_the_limit_again_on_complete(owner_api, run, settings):
    s3_blob_storage(settings)
    content = os.urandom(2000)
    started = owner_api.post(
        run_url(run, "uploads/direct"),
        {
            "sha256": hashlib.sha256(content).hexdigest(),
            "size": len(content),
            "name": "x.bin",
        },
        format="json",
    )
    assert started.status_code == 201
    assert requests.put(started.json()["url"], data=content, timeout=30).status_code == 200
    settings.RUNSTORE_MAX_UPLOAD_BYTES = 1000
    done = owner_api.post(run_url(run, f"uploads/direct/{started.json()['upload_id']}/complete"), {}, format="json")
    assert done.status_code == 413 and done.json()["error"]["field"] == "size", done.content
    assert not Blob.objects.exists() and not PendingUpload.objects.exists()

"""Direct uploads and presigned downloads against a real S3 gateway (SeaweedFS)."""

import hashlib
import os

import pytest
import requests
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile

from runs import storage
from runs.models import Blob, PendingUpload, Upload

from .conftest import batch, run_url, s3_blob_storage
from .roles import ROLES, role_matrix


@pytest.fixture
def s3(settings):
    s3_blob_storage(settings, querystring_expire=120)
    return storages["blobs"]


def start(client, run, content, name="data.bin"):
    return client.post(
        run_url(run, "uploads/direct"),
        {
            "sha256": hashlib.sha256(content).hexdigest(),
            "size": len(content),
            "name": name,
        },
        format="json",
    )


def complete(client, run, upload_id, parts=None):
    return client.post(
        run_url(run, f"uploads/direct/{upload_id}/complete"), {"parts": parts} if parts else {}, format="json"
    )


def test_direct_upload_then_presigned_download(owner_api, run, s3):
    content = os.urandom(300_000)
    started = start(owner_api, run, content, "weights.pt")
    assert started.status_code == 201 and started.json()["method"] == "PUT"
    assert requests.put(started.json()["url"], data=content, timeout=30).status_code == 200
    done = complete(owner_api, run, started.json()["upload_id"])
    assert done.status_code == 201, done.content
    sha = done.json()["sha256"]
    assert s3.exists(Blob.objects.get(pk=sha).storage_key) and not PendingUpload.objects.exists()
    assert list(storage.list_keys("staging")) == []
    assert (
        batch(owner_api, run, [{"op": "upload", "path": "model", "sha256": sha, "name": "weights.pt"}]).status_code
        == 200
    )
    link = owner_api.get(run_url(run, "files/url"), {"path": "model"}).json()
    assert link["direct"] and link["expires_in"] == 120
    fetched = requests.get(link["url"], timeout=30)
    assert fetched.content == content and 'filename="weights.pt"' in fetched.headers["Content-Disposition"]
    again = start(owner_api, run, content)
    assert again.status_code == 200 and again.json()["exists"] is True  # the project holds it: nothing to send


def test_big_direct_upload_goes_in_parts(owner_api, run, s3, settings):
    settings.RUNSTORE_MULTIPART_THRESHOLD = 6 * 1024 * 1024
    settings.RUNSTORE_MULTIPART_CHUNK = 5 * 1024 * 1024
    content = os.urandom(11 * 1024 * 1024)
    started = start(owner_api, run, content).json()
    assert started["part_size"] == 5 * 1024 * 1024 and len(started["parts"]) == 3
    parts = []
    for part in started["parts"]:
        offset = (part["part_number"] - 1) * started["part_size"]
        answer = requests.put(part["url"], data=content[offset : offset + started["part_size"]], timeout=60)
        parts.append({"part_number": part["part_number"], "etag": answer.headers["ETag"]})
    assert complete(owner_api, run, started["upload_id"]).json()["error"]["field"] == "parts"
    done = complete(owner_api, run, started["upload_id"], parts)
    assert done.status_code == 201 and done.json()["size"] == len(content)
    with storage.open_blob(Blob.objects.get().storage_key) as stream:
        stream.seek(len(content) - 10)
        assert stream.read() == content[-10:]


def test_content_that_does_not_match_the_declared_hash_is_refused(owner_api, run, s3):
    started = start(owner_api, run, b"declared").json()
    requests.put(started["url"], data=b"something else", timeout=30)
    response = complete(owner_api, run, started["upload_id"])
    assert response.status_code == 400 and response.json()["error"]["code"] == "hash_mismatch"
    assert not Blob.objects.exists() and not PendingUpload.objects.exists() and list(storage.list_keys("staging")) == []


def test_completing_before_uploading_is_a_conflict(owner_api, run, s3):
    started = start(owner_api, run, b"not yet").json()
    response = complete(owner_api, run, started["upload_id"])
    assert response.status_code == 409 and response.json()["error"]["field"] == "upload_id"


def test_content_known_elsewhere_must_still_be_uploaded(owner, owner_api, run, s3, workspace):
    from projects import services as project_services
    from runs import services as run_services

    other = project_services.create_project(owner, workspace, "other", key="OTH")
    other_run, _ = run_services.create_run(owner, other)
    content = b"secret in another project"
    started = start(owner_api, other_run, content).json()
    requests.put(started["url"], data=content, timeout=30)
    complete(owner_api, other_run, started["upload_id"])
    again = start(owner_api, run, content)
    assert again.status_code == 201 and again.json()["exists"] is False  # knowing a hash grants nothing
    assert not Upload.objects.filter(run=run).exists()


def test_direct_uploads_need_s3(owner_api, run):
    response = start(owner_api, run, b"x")
    assert response.status_code == 409 and response.json()["error"]["field"] == "storage"


def test_who_may_upload_directly(world, run, s3):
    names = iter(f"{role}.bin" for role in ROLES)
    role_matrix(
        world,
        lambda client: start(client, run, b"abc", name=next(names)),
        {"owner": 201, "contributor": 201, "viewer": 403, "stranger": 404, "anonymous": 401},
        check={role: lambda _: not PendingUpload.objects.exists() for role in ("stranger", "viewer")},
    )
    assert PendingUpload.objects.count() == 2


def test_ranged_reads_stream_from_s3(s3):
    content = os.urandom(3 * 1024 * 1024 + 5)
    storage.save_bytes("blobs/x/y/object", content)
    with storage.open_blob("blobs/x/y/object") as stream:
        assert stream.read(10) == content[:10]
        stream.seek(2 * 1024 * 1024)
        assert stream.read(5) == content[2 * 1024 * 1024 : 2 * 1024 * 1024 + 5]
        stream.seek(-5, os.SEEK_END)
        assert stream.read() == content[-5:] and stream.read() == b""
    assert storage.hash_blob("blobs/x/y/object")[:2] == (hashlib.sha256(content).hexdigest(), len(content))


def test_an_unreachable_s3_store_is_a_503_naming_the_file_and_keeps_nothing(owner_api, run, settings):
    from botocore.config import Config

    s3_blob_storage(settings)  # the real gateway's settings, then its address replaced by a closed port
    options = settings.STORAGES["blobs"]["OPTIONS"]
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {
            **settings.STORAGES["blobs"],
            "OPTIONS": {
                **options,
                "endpoint_url": "http://127.0.0.1:9",
                "client_config": Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=2),
            },
        },
    }
    content = os.urandom(1000)
    response = owner_api.post(
        run_url(run, "uploads"), {"file": SimpleUploadedFile("w.bin", content)}, format="multipart"
    )
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("storage_unavailable", "file")
    assert response["Retry-After"]
    assert not Upload.objects.exists() and not Blob.objects.filter(pk=hashlib.sha256(content).hexdigest()).exists()

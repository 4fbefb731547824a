import hashlib

from django.core.files.storage import storages

from runs.models import Blob

from .conftest import batch, client_for, run_url
from .roles import role_matrix


def upload(client, run, name, content, **extra):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {"file": SimpleUploadedFile(name, content), **extra}
    return client.post(run_url(run, "uploads"), data, format="multipart")


def download(client, run, **params):
    response = client.get(run_url(run, "files/download"), params, **params.pop("headers", {}))
    return response, b"".join(response.streaming_content) if hasattr(
        response, "streaming_content"
    ) else response.content


def test_upload_attach_and_download_a_file(owner_api, run, blob_store):
    content = b"weights" * 1000
    response = upload(owner_api, run, "model.pt", content)
    assert response.status_code == 201, response.content
    sha = response.json()["sha256"]
    assert sha == hashlib.sha256(content).hexdigest() and response.json()["size"] == len(content)
    assert storages["blobs"].exists(Blob.objects.get(pk=sha).storage_key)
    assert (
        batch(
            owner_api, run, [{"op": "upload", "path": "model/weights", "sha256": sha, "name": "model.pt"}]
        ).status_code
        == 200
    )
    listing = owner_api.get(run_url(run, "files"), {"path": "model/weights"}).json()
    assert listing["files"][0]["name"] == "model.pt" and listing["files"][0]["size"] == len(content)
    response, body = download(owner_api, run, path="model/weights")
    assert response.status_code == 200 and body == content
    assert 'filename="model.pt"' in response["Content-Disposition"]
    response, body = download(owner_api, run, path="model/weights", headers={"HTTP_RANGE": "bytes=7-13"})
    assert response.status_code == 206 and body == content[7:14]
    assert response["Content-Range"] == f"bytes 7-13/{len(content)}"
    response, body = download(owner_api, run, path="model/weights", headers={"HTTP_RANGE": "bytes=-5"})
    assert body == content[-5:]
    response, _ = download(owner_api, run, path="model/weights", headers={"HTTP_RANGE": f"bytes={len(content)}-"})
    assert response.status_code == 416


def test_writers_upload_members_download_a_file(world, run, blob_store):
    write = {"owner": 201, "contributor": 201, "viewer": 403, "stranger": 404, "anonymous": 401}
    uploads = role_matrix(
        world,
        lambda client: upload(client, run, "model.pt", b"weights"),
        write,
        check=dict.fromkeys(["stranger", "viewer"], lambda _: not Blob.objects.exists()),
    )
    sha = uploads["owner"].json()["sha256"]
    assert batch(client_for(world["owner"]), run, [{"op": "upload", "path": "model", "sha256": sha}]).status_code == 200
    read = {**write, "owner": 200, "contributor": 200, "viewer": 200}
    role_matrix(world, lambda client: client.get(run_url(run, "files/download"), {"path": "model"}), read)


def test_identical_content_is_stored_once(owner_api, run, blob_store):
    first = upload(owner_api, run, "a.txt", b"same").json()["sha256"]
    second = upload(owner_api, run, "b.txt", b"same").json()["sha256"]
    assert first == second and Blob.objects.count() == 1


def test_declared_hash_must_match(owner_api, run):
    response = upload(owner_api, run, "a.txt", b"abc", sha256="0" * 64)
    assert response.status_code == 400 and response.json()["error"]["code"] == "hash_mismatch"
    assert Blob.objects.count() == 0


def test_file_set_and_file_series(owner_api, run, blob_store):
    a = upload(owner_api, run, "a.bin", b"A").json()["sha256"]
    b = upload(owner_api, run, "b.bin", b"BB").json()["sha256"]
    ops = [
        {
            "op": "upload_set",
            "path": "ckpt",
            "files": [{"relpath": "x/a.bin", "sha256": a}, {"relpath": "b.bin", "sha256": b}],
        },
        {
            "op": "append",
            "path": "samples",
            "kind": "file",
            "values": [{"sha256": a, "name": "s0.png"}, {"sha256": b, "name": "s1.png"}],
        },
    ]
    assert batch(owner_api, run, ops).status_code == 200
    files = owner_api.get(run_url(run, "files"), {"path": "ckpt"}).json()["files"]
    assert sorted(f["relpath"] for f in files) == ["b.bin", "x/a.bin"]
    _, body = download(owner_api, run, path="ckpt", relpath="x/a.bin")
    assert body == b"A"
    _, body = download(owner_api, run, path="samples", step=1)
    assert body == b"BB"
    fields = {f["path"]: f for f in owner_api.get(run_url(run, "attributes")).json()["fields"]}
    assert fields["ckpt"]["value"] == {"files": 2, "size": 3}
    assert fields["samples"]["value"]["count"] == 2
    response = owner_api.get(run_url(run, "files/download"), {"path": "ckpt"})
    assert response.status_code == 400 and response.json()["error"]["field"] == "relpath"


def test_a_blob_from_another_project_cannot_be_attached(owner_api, run, owner, workspace):
    from projects import services as project_services
    from runs import services

    other_project = project_services.create_project(owner, workspace, "other", key="OTH")
    other_run, _ = services.create_run(owner, other_project)
    sha = upload(owner_api, other_run, "x", b"secret").json()["sha256"]
    response = batch(owner_api, run, [{"op": "upload", "path": "f", "sha256": sha}])
    assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_blob"


def test_upload_needs_a_file_field(owner_api, run):
    response = owner_api.post(run_url(run, "uploads"), {"nothing": "here"}, format="multipart")
    assert response.status_code == 400 and response.json()["error"]["field"] == "file"

"""``track_files``: the file list it sends, the hash cache, parallel hashing, S3 prefixes, and the
versions the server keeps of what a run consumed and produced."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from runstore._internal import artifacts

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def api_get(server, project: str, run, suffix: str) -> dict:
    human = run["sys/id"].fetch()
    url = f"{server.url}/api/v1/runs/{project}/{human}/{suffix}"
    response = requests.get(url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30)
    assert response.status_code == 200, response.text
    result: dict = response.json()
    return result


def test_track_files_sends_its_file_list_and_the_server_keeps_inputs_and_outputs(connect, server, project, tmp_path):
    data = make_tree(tmp_path / "data", {"a.csv": b"1,2\n", "sub/b.csv": b"3,4\n"})
    model = make_tree(tmp_path / "model", {"weights.bin": b"w" * 100})
    run = connect()
    run["data/train"].track_files(data, name="tabular")
    run["model"].track_files(model, role="output", name="classifier")
    run["checkpoint"].upload_files(str(model))
    assert run.wait(60)
    body = api_get(server, project, run, "artifacts")
    assert [(i["path"], i["name"], i["file_count"], i["size"]) for i in body["inputs"]] == [
        ("data/train", "tabular", 2, 8)
    ]
    outputs = {o["path"]: o for o in body["outputs"]}
    assert set(outputs) == {"model", "checkpoint"}
    # one file: the version is the file's SHA-256, so the uploaded copy is the same version
    assert outputs["model"]["hash"] == outputs["checkpoint"]["hash"] == hashlib.sha256(b"w" * 100).hexdigest()
    version = requests.get(
        f"{server.url}/api/v1/artifact-versions/{body['inputs'][0]['hash']}",
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=30,
    ).json()
    assert [(f["path"], f["size"]) for f in version["files"]] == [("a.csv", 4), ("sub/b.csv", 4)]
    assert version["files"][0]["hash"] == hashlib.sha256(b"1,2\n").hexdigest()
    run.stop()
    assert run.status()["errors"] == 0


def test_a_consumer_of_a_produced_version_links_back_to_its_producer(connect, server, project, tmp_path):
    data = make_tree(tmp_path / "prepared", {"x.npy": b"x" * 10, "y.npy": b"y" * 10})
    producer = connect()
    producer["prepared"].track_files(data, role="output", name="prepared")
    assert producer.wait(60)
    consumer = connect()
    consumer["data"].track_files(data)
    assert consumer.wait(60)
    chain = api_get(server, project, consumer, "lineage")
    assert [r["id"] for r in chain["runs"]] == [consumer["sys/id"].fetch(), producer["sys/id"].fetch()]


def test_track_files_refuses_a_bad_role_at_the_call(connect, tmp_path):
    run = connect(mode="offline")
    with pytest.raises(ValueError, match="role"):
        run["data"].track_files(tmp_path, role="both")


def test_unchanged_files_come_from_the_hash_cache_and_changed_ones_are_hashed_again(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "d", {f"f{i}.bin": bytes([i]) * 1000 for i in range(20)})
    cache = artifacts.HashCache(tmp_path / "home" / artifacts.CACHE_NAME)
    read: list[Path] = []
    real = artifacts.sha256_of

    def counting(path: Path) -> str:
        read.append(path)
        return real(path)

    monkeypatch.setattr(artifacts, "sha256_of", counting)
    first = artifacts.hash_local(root, cache, pytest.fail)
    assert len(read) == 20 and first[3] == ("f11.bin", hashlib.sha256(bytes([11]) * 1000).hexdigest(), 1000)
    read.clear()
    assert artifacts.hash_local(root, cache, pytest.fail) == first and read == []
    (root / "f3.bin").write_bytes(b"changed")
    second = artifacts.hash_local(root, cache, pytest.fail)
    assert read == [root / "f3.bin"]
    assert dict((r, h) for r, h, _ in second)["f3.bin"] == hashlib.sha256(b"changed").hexdigest()


def test_the_hash_cache_is_shared_by_processes_hashing_at_once(tmp_path):
    root = make_tree(tmp_path / "d", {f"f{i}.bin": os.urandom(5000) for i in range(200)})
    home = tmp_path / "home"
    script = (
        "import sys; from pathlib import Path; from runstore._internal import artifacts as a\n"
        "c = a.HashCache(Path(sys.argv[2]) / a.CACHE_NAME)\n"
        "print(a.version_hash(a.hash_local(Path(sys.argv[1]), c, sys.exit)))\n"
    )
    procs = [
        subprocess.Popen([PYTHON, "-c", script, str(root), str(home)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    expected = artifacts.version_hash(artifacts.hash_local(root, None, pytest.fail))
    assert outputs == {expected}
    cached = artifacts.HashCache(home / artifacts.CACHE_NAME)
    keys = [(str(p), p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino) for p in root.iterdir()]
    assert len(cached.get_many(keys)) == 200


@pytest.fixture
def s3(monkeypatch):
    """The test SeaweedFS (var/services.env) as the client's S3, and a fresh prefix in its bucket."""
    endpoint = os.environ.get("RUNSTORE_TEST_S3_ENDPOINT")
    if not endpoint:
        pytest.skip("RUNSTORE_TEST_S3_ENDPOINT not set (scripts/services.sh up starts SeaweedFS)")
    monkeypatch.setenv("RUNSTORE_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", os.environ["RUNSTORE_TEST_S3_ACCESS_KEY"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", os.environ["RUNSTORE_TEST_S3_SECRET_KEY"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = artifacts.s3_client()
    bucket = os.environ["RUNSTORE_TEST_S3_BUCKET"]
    prefix = f"artifacts-test/{uuid.uuid4().hex}"
    yield client, bucket, prefix
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])


def test_an_s3_prefix_is_listed_with_sizes_and_etags_without_downloading(s3, connect, server, project, monkeypatch):
    client, bucket, prefix = s3
    for name, content in {"a.txt": b"alpha", "sub/b.txt": b"beta!"}.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=content)
    client.put_object(Bucket=bucket, Key=f"{prefix}2/other.txt", Body=b"not under the folder")
    downloads: list[str] = []
    real_client = artifacts.s3_client

    def guarded():
        c = real_client()
        c.meta.events.register("before-call.s3.GetObject", lambda **kw: downloads.append("get"))
        return c

    monkeypatch.setattr(artifacts, "s3_client", guarded)
    entries = artifacts.list_s3(f"s3://{bucket}/{prefix}")
    assert [(r, n) for r, _, n in entries] == [("a.txt", 5), ("sub/b.txt", 5)]
    assert entries[0][1] == "etag:" + hashlib.md5(b"alpha").hexdigest()  # S3 ETag of a simple upload
    run = connect()
    run["data/raw"].track_files(f"s3://{bucket}/{prefix}", name="raw")
    assert run.wait(60)
    tracked = run["data/raw"].fetch()
    assert tracked["file_count"] == 2 and tracked["size"] == 10 and tracked["location"] == f"s3://{bucket}/{prefix}"
    inputs = api_get(server, project, run, "artifacts")["inputs"]
    assert inputs[0]["name"] == "raw" and inputs[0]["hash"] == artifacts.version_hash(entries)
    assert downloads == []


def test_an_s3_location_that_cannot_be_listed_warns_and_the_run_goes_on(connect, monkeypatch, caplog):
    monkeypatch.setenv("RUNSTORE_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    run = connect()
    with caplog.at_level(logging.WARNING, logger="runstore"):
        run["data"].track_files("s3://no-such-bucket/prefix")
        run["after"] = 1
        assert run.wait(60)
    assert run["after"].fetch() == 1 and not run.exists("data/hash")
    assert "cannot list s3://no-such-bucket/prefix" in caplog.text

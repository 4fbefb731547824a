"""An artifact version's whole lineage as one archive, for an audit: the version, the runs that produced
and consumed it and the chain back from the producers, each run with its fields, series, lineage and
audit entries; only what the downloader may export, nothing of projects they cannot see."""

import io
import json
import zipfile

from django.test import Client

from projects.models import AuditEvent
from runs import services as run_services
from runs.artifacts.services import version_hash

from .conftest import batch, client_for


def ui(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def send(api, run, ops):
    run._seq = getattr(run, "_seq", 0) + 1  # each batch of a run its own sequence number
    assert batch(api, run, ops, seq=run._seq).status_code == 200


def track(api, run, path, files, name, role):
    digest = version_hash([(f["path"], f["hash"], f["size"]) for f in files])
    send(api, run, [{"op": "track", "path": path, "hash": digest, "files": files, "name": name, "role": role}])
    return digest


def test_the_lineage_record_holds_the_version_its_producers_chain_and_consumers(owner, viewer, stranger, project):
    api = client_for(owner)
    raw = [{"path": "raw.csv", "hash": "a" * 64, "size": 100}, {"path": "raw2.csv", "hash": "f" * 64, "size": 1}]
    clean = [{"path": "clean.csv", "hash": "b" * 64, "size": 50}, {"path": "meta.json", "hash": "c" * 64, "size": 2}]
    source, _ = run_services.create_run(owner, project, name="collect")
    track(api, source, "data/raw", raw, "raw", "output")
    prep, _ = run_services.create_run(owner, project, name="prep")
    track(api, prep, "data/raw", raw, "raw", "input")
    digest = track(api, prep, "data/clean", clean, "clean", "output")
    send(api, prep, [{"op": "append", "path": "rows", "values": [10.0, 20.0]}])
    train, _ = run_services.create_run(owner, project, name="train")
    track(api, train, "data/train", clean, "clean", "input")
    unrelated, _ = run_services.create_run(owner, project, name="unrelated")

    url = f"/w/acme/-/artifact-versions/{digest}/lineage.zip"
    assert url in ui(owner).get(f"/w/acme/-/artifacts/clean?v={digest}").content.decode()
    response = ui(viewer).get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["version"]["hash"] == digest and manifest["version"]["name"] == "clean"
    assert [r["run"]["id"] for r in manifest["produced_by"]] == [prep.human_id]
    assert [r["run"]["id"] for r in manifest["consumed_by"]] == [train.human_id]
    exported = {r["id"] for r in manifest["runs"]}
    assert exported == {source.human_id, prep.human_id, train.human_id}  # the chain back to the raw data
    assert unrelated.human_id not in exported and manifest["left_out"] == []
    base = f"runs/acme/vision/{prep.human_id}"
    assert json.loads(archive.read(f"{base}/series/rows.json"))["points"][1][2] == 20.0
    lineage = json.loads(archive.read(f"{base}/lineage.json"))
    assert [i["name"] for i in lineage["inputs"]] == ["raw"] and [o["name"] for o in lineage["outputs"]] == ["clean"]
    assert isinstance(json.loads(archive.read(f"{base}/audit.json")), list)
    event = AuditEvent.objects.get(action="export.lineage")
    assert event.actor == viewer and event.details["hash"] == digest

    assert ui(stranger).get(url).status_code == 404  # not even told the version exists
    assert ui(viewer).get(f"/w/acme/-/artifact-versions/{'9' * 64}/lineage.zip").status_code == 404

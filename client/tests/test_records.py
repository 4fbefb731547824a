"""``runstore artifacts list|lineage`` and ``runstore erase`` against a live server: a workspace's
artifacts, a version's lineage archive, and deleting runs for good with the record printed."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import requests

from runstore.cli import main


def cli(server, *args: str) -> list[str]:
    return ["--url", server.url, "--api-token", server.token, *args]


def status_of(server, ref: str) -> int:
    url = f"{server.url}/api/v1/runs/{ref}/"
    return requests.get(url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30).status_code


def test_list_the_artifacts_download_a_lineage_and_erase_the_consumers(connect, server, project, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "people.csv").write_bytes(b"name\nada\n")
    digest = hashlib.sha256(b"name\nada\n").hexdigest()
    producer = connect()
    producer["data"].track_files(data, role="output", name="people")
    consumer = connect()
    consumer["data/train"].track_files(data, name="people")
    assert producer.wait(60) and consumer.wait(60)
    consumer_id = f"{project}/{consumer['sys/id'].fetch()}"
    producer_id = f"{project}/{producer['sys/id'].fetch()}"
    producer.stop()
    consumer.stop()

    assert main(cli(server, "artifacts", "list", "alice", "--name", "PEOP", "--format", "json")) == 0
    (row,) = [r for r in json.loads(capsys.readouterr().out) if r["latest"]["hash"] == digest]
    assert (row["name"], row["consumers"], row["producers"]) == ("people", 1, 1)

    assert main(cli(server, "artifacts", "lineage", "alice", digest, "-o", str(tmp_path))) == 0
    archive = Path(capsys.readouterr().out.strip())
    assert archive.parent == tmp_path and not list(tmp_path.glob("*.part"))
    manifest = json.loads(zipfile.ZipFile(archive).read("manifest.json"))
    assert manifest["version"]["hash"] == digest

    # without --yes nothing goes: the runs that would are printed
    consumers = ["erase", "--consumers-of", digest, "--workspace", "alice", "--reason", "consent withdrawn"]
    assert main(cli(server, *consumers)) == 2
    assert consumer_id.rsplit("/", 1)[1] in capsys.readouterr().err and status_of(server, consumer_id) == 200
    assert main(cli(server, *consumers, "--yes")) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["reason"] == "consent withdrawn" and [r["id"] for r in record["runs"]] == [
        consumer_id.rsplit("/", 1)[1]
    ]
    assert status_of(server, consumer_id) == 404 and status_of(server, producer_id) == 200

    assert main(cli(server, "erase", producer_id, "--yes")) == 1  # no reason: refused, nothing deleted
    assert status_of(server, producer_id) == 200
    assert main(cli(server, "erase", producer_id, "--reason", "GDPR request", "--yes")) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["subject"] == f"run {producer_id.rsplit('/', 1)[1]}"
    assert status_of(server, producer_id) == 404


def test_export_a_run_as_an_archive_with_its_lineage_and_audit_entries(connect, server, project, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "people.csv").write_bytes(b"name\nada\n")
    run = connect()
    run["parameters/lr"] = 0.1
    run["data/train"].track_files(data, name="people")
    assert run.wait(60)
    key = run["sys/id"].fetch()
    run.stop()

    assert main(cli(server, "export", project, key, "--no-wait")) == 0
    export = json.loads(capsys.readouterr().out)
    assert export["run"] == key and export["state"] in ("pending", "queued", "running", "done")
    # the server's worker builds it (this test server runs none: build it as the task would)
    server.manage("shell", "-c", f"from runs.tasks import build_export; build_export({export['id']!r})")

    assert main(cli(server, "export", "--id", export["id"], "-o", str(tmp_path), "--timeout", "60")) == 0
    archive = Path(capsys.readouterr().out.strip())
    assert archive.parent == tmp_path and archive.suffix == ".zip" and not list(tmp_path.glob("*.part"))
    names = zipfile.ZipFile(archive).namelist()
    assert "manifest.json" in names
    lineage = json.loads(zipfile.ZipFile(archive).read(f"runs/{key}/lineage.json"))
    assert [v["name"] for v in lineage["inputs"]] == ["people"]
    assert f"runs/{key}/audit.json" in names

    # an export that never gets built is reported after the timeout, not waited for forever
    assert main(cli(server, "export", project, key, "--timeout", "1")) == 1
    assert "after 1 s" in capsys.readouterr().err

"""Schemathesis against a live server: every operation of ``/api/schema/``, positive and negative
data, the stateful phase; no 5xx and every response as the schema describes it.

The server is pytest-django's live server on the suite's own database (SQLite or PostgreSQL), seeded
with a workspace, a project, a run holding every kind of field, a file, a file set and an export, so
operations on a run, a workspace, a project or an export address real objects. The run is bounded by
``RUNSTORE_FUZZ_SECONDS`` (default 90 per database).
"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from accounts.models import ApiToken
from projects import services as project_services
from runs import processing
from runs import services as run_services
from runs.artifacts.services import version_hash
from runs.models import Export
from runs.registry import services as registry

from ..conftest import client_for, s3_blob_storage

pytestmark = pytest.mark.fuzz

REPO = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = "not_a_server_error,response_schema_conformance"


TRACKED_FILES = [{"path": "a.jpg", "hash": "a" * 64, "size": 10}, {"path": "b.jpg", "hash": "b" * 64, "size": 20}]
TRACKED = version_hash([(f["path"], f["hash"], f["size"]) for f in TRACKED_FILES])
CONSUMED_FILES = [{"path": "c.csv", "hash": "c" * 64, "size": 30}, {"path": "d.csv", "hash": "d" * 64, "size": 40}]
CONSUMED = version_hash([(f["path"], f["hash"], f["size"]) for f in CONSUMED_FILES])


def _upload(owner, run, name: str, content: bytes, mime: str) -> str:
    response = client_for(owner).post(
        f"/api/v1/runs/{run.uuid}/uploads",
        {"file": SimpleUploadedFile(name, content, content_type=mime)},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    return response.json()["sha256"]


def _seed(owner):
    """A run holding every kind of field; a processed image, so its thumbnail can be fetched."""
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    run, _ = run_services.create_run(owner, project, name="baseline", tags=["base"])
    notes = _upload(owner, run, "notes.txt", b"hello fuzz\n", "text/plain")
    image = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(image, format="PNG")
    dot = _upload(owner, run, "dot.png", image.getvalue(), "image/png")
    assert processing.process_blob(dot) == "ready"
    ops = [
        {"op": "assign", "path": "parameters", "value": {"lr": 0.01, "optimizer": "adam", "layers": 3, "bn": True}},
        {"op": "append", "path": "train/loss", "values": [1.0, 0.5, 0.25]},
        {"op": "append", "path": "train/log", "kind": "string", "values": ["a", "b"]},
        {"op": "upload", "path": "notes", "sha256": notes, "name": "notes.txt"},
        {"op": "upload", "path": "image", "sha256": dot, "name": "dot.png"},
        {"op": "upload_set", "path": "data", "files": [{"relpath": "x/notes.txt", "sha256": notes}]},
        {"op": "track", "path": "data/train", "hash": TRACKED, "files": TRACKED_FILES, "name": "imagenet"},
    ]
    run_services.apply_batch(run.owner, run, stream="seed", seq=0, raw_ops=ops)
    # a model with an alias; one whose production version nothing else touches (the stage reads); and
    # one for each DELETE operation, which would otherwise turn the other registry operations into 404s
    # from the file set, so the downloads of one of its files (relpath) find it
    kept = registry.register_version(owner, run, "data", "resnet", stage="production")
    registry.set_alias(owner, kept, "champion")
    registry.register_version(owner, run, "data", "served", stage="production")
    for name in ("doomed-model", "doomed-version", "doomed-alias", "renamed"):
        registry.set_alias(owner, registry.register_version(owner, run, "notes", name), "gone")
    export = Export.objects.create(project=project, run=run, requested_by=owner)
    doomed, _ = run_services.create_run(owner, project, name="to delete")
    # GDPR erasures: a record to read, a run to erase by reference, and a version whose only consumer
    # may be erased (the seeded run's own versions must stay)
    gone, _ = run_services.create_run(owner, project, name="erased before")
    erasure = run_services.erase_runs(owner, [gone], reason="fuzz seed", subject=f"run {gone.human_id}")
    erasable, _ = run_services.create_run(owner, project, name="to erase")
    consumer, _ = run_services.create_run(owner, project, name="consumer to erase")
    track = [{"op": "track", "path": "data/train", "hash": CONSUMED, "files": CONSUMED_FILES, "name": "people"}]
    run_services.apply_batch(owner, consumer, stream="seed", seq=0, raw_ops=track)
    return workspace, project, run, export, doomed, {"erasure": erasure, "erasable": erasable}


def _config(run, doomed, workspace, project, export, pending_upload: str | None, seeds: dict) -> str:
    """Real ids and names, so every operation reaches its logic instead of a 404."""
    lines = ["[parameters]"]
    fixed = {
        "path.run_ref": str(run.uuid),
        "path.workspace_slug": workspace.slug,
        "path.workspace": workspace.slug,
        "path.model_name": "resnet",
        "path.version": 1,
        "path.alias": "champion",
        "path.stage": "production",
        "path.digest": TRACKED,
        "path.name": "imagenet",
        "path.export_id": str(export.pk),
        "path.erasure_id": seeds["erasure"].pk,
        "query.project": project.full_name,
        "body.project": project.full_name,
    }
    lines += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in fixed.items()]
    per_operation = [
        # deleting the seeded run would turn every later operation on it into a 404
        ("include-name", "DELETE /api/v1/runs/{run_ref}/", {"path.run_ref": str(doomed.uuid)}),
        ("include-path-regex", "/series", {"query.path": "train/loss"}),
        ("include-path-regex", "/files(/download|/info|/url)?$", {"query.path": "notes"}),
        ("include-path-regex", "/files/preview$", {"query.path": "image"}),
        ("include-path", "/api/v1/workspaces/{slug}/", {"path.slug": workspace.slug}),
        ("include-path", "/api/v1/workspaces/{workspace_slug}/projects/{slug}/", {"path.slug": project.slug}),
        ("include-path-regex", "/runs/groups$", {"query.group_by": "sys/owner"}),
        # deleting the seeded model, its version or its alias would turn the other registry operations into 404s
        (
            "include-name",
            "DELETE /api/v1/workspaces/{workspace}/models/{model_name}/",
            {"path.model_name": "doomed-model"},
        ),
        (
            "include-name",
            "DELETE /api/v1/workspaces/{workspace}/models/{model_name}/versions/{version}/",
            {"path.model_name": "doomed-version"},
        ),
        (
            "include-name",
            "DELETE /api/v1/workspaces/{workspace}/models/{model_name}/aliases/{alias}",
            {"path.model_name": "doomed-alias", "path.alias": "gone"},
        ),
        (
            "include-name",
            "GET /api/v1/workspaces/{workspace}/models/{model_name}/stages/{stage}/",
            {"path.model_name": "served"},
        ),
        (
            "include-name",
            "GET /api/v1/workspaces/{workspace}/models/{model_name}/stages/{stage}/download",
            {"path.model_name": "served", "query.relpath": "x/notes.txt"},
        ),
        (
            "include-name",
            "GET /api/v1/workspaces/{workspace}/models/{model_name}/versions/{version}/download",
            {"query.relpath": "x/notes.txt"},
        ),
        # a PATCH may rename the model it is given: a model of its own, so the others keep their name
        ("include-name", "PATCH /api/v1/workspaces/{workspace}/models/{model_name}/", {"path.model_name": "renamed"}),
        # a new model's home project is named by its slug
        ("include-name", "POST /api/v1/workspaces/{workspace}/models/", {"body.project": project.slug}),
        # a new version comes from the seeded run's file field
        (
            "include-name",
            "POST /api/v1/workspaces/{workspace}/models/{model_name}/versions/",
            {"body.run": str(run.uuid), "body.path": "notes"},
        ),
    ]
    # an erasure deletes what it names: a run and a version's consumer of their own
    per_operation += [
        (
            "include-name",
            "POST /api/v1/erasures/",
            {"body.runs": [str(seeds["erasable"].uuid)], "body.reason": "fuzz"},
        ),
        (
            "include-name",
            "POST /api/v1/workspaces/{workspace}/artifact-versions/{digest}/erase-consumers",
            {"path.digest": CONSUMED, "body.reason": "fuzz"},
        ),
    ]
    if pending_upload:
        complete = "/api/v1/runs/{run_ref}/uploads/direct/{upload_id}/complete"
        per_operation.append(("include-path", complete, {"path.upload_id": pending_upload}))
    for key, value, params in per_operation:
        lines += ["", "[[operations]]", f"{key} = {json.dumps(value)}"]
        lines.append(
            "parameters = { " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in params.items()) + " }"
        )
    return "\n".join(lines) + "\n"


@pytest.mark.django_db(transaction=True)
def test_api_schema_fuzzing_finds_no_server_error_and_no_schema_violation(
    live_server, django_user_model, tmp_path, settings
):
    """Bounded by RUNSTORE_FUZZ_SECONDS; on the S3 store when make test started one (direct uploads need it)."""
    pending_upload = None
    if os.environ.get("RUNSTORE_TEST_S3_ENDPOINT"):
        s3_blob_storage(settings)
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    workspace, project, run, export, doomed, seeds = _seed(owner)
    _, token = ApiToken.issue(owner, name="fuzz")
    if os.environ.get("RUNSTORE_TEST_S3_ENDPOINT"):
        started = client_for(owner).post(
            f"/api/v1/runs/{run.uuid}/uploads/direct",
            {"sha256": "b" * 64, "size": 10, "name": "later.bin"},
            format="json",
        )
        assert started.status_code == 201, started.content
        pending_upload = started.json()["upload_id"]
    seconds = os.environ.get("RUNSTORE_FUZZ_SECONDS", "90")
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(run, doomed, workspace, project, export, pending_upload, seeds))
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(config),
            "run",
            f"{live_server.url}/api/schema/",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--mode",
            "all",
            "--max-time",
            seconds,
            "--workers",
            "1",
            "--seed",
            os.environ.get("RUNSTORE_FUZZ_SEED", "1"),
            "--header",
            f"Authorization: Bearer {token}",
            "--request-timeout",
            "30",
            "--no-color",
            "--output-truncate",
            "false",
        ],
        capture_output=True,
        text=True,
        timeout=int(seconds) * 3 + 300,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks", "PYTHONPATH": str(REPO)},
    )
    print(result.stdout[-30000:])
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-3000:]
    assert "Missing test data" not in result.stdout, result.stdout[-5000:]

"""Schemathesis against a live server: every operation of ``/api/schema/``, positive and negative
data, the stateful phase; no 5xx and every response as the schema describes it.

The server is pytest-django's live server on the suite's own database (SQLite or PostgreSQL), seeded
with a workspace, a project, a run holding every kind of field, a file, a file set and an export, so
operations on a run, a workspace, a project or an export address real objects. The run is bounded by
``RUNSTORE_FUZZ_SECONDS`` (default 90 per database).
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import ApiToken
from projects import services as project_services
from runs import services as run_services
from runs.models import Export

from ..conftest import client_for

pytestmark = pytest.mark.fuzz

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = "not_a_server_error,response_schema_conformance"


def _seed(owner):
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    run, _ = run_services.create_run(owner, project, name="baseline", tags=["base"])
    content = b"hello fuzz\n"
    sha256 = hashlib.sha256(content).hexdigest()
    response = client_for(owner).post(
        f"/api/v1/runs/{run.uuid}/uploads",
        {"file": SimpleUploadedFile("notes.txt", content, content_type="text/plain")},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    run_services.apply_batch(
        run,
        stream="seed",
        seq=0,
        raw_ops=[
            {"op": "assign", "path": "parameters", "value": {"lr": 0.01, "optimizer": "adam", "layers": 3, "bn": True}},
            {"op": "append", "path": "train/loss", "values": [1.0, 0.5, 0.25]},
            {"op": "append", "path": "train/log", "kind": "string", "values": ["a", "b"]},
            {"op": "upload", "path": "notes", "sha256": sha256, "name": "notes.txt"},
            {"op": "upload_set", "path": "data", "files": [{"relpath": "x/notes.txt", "sha256": sha256}]},
        ],
    )
    export = Export.objects.create(project=project, run=run, requested_by=owner)
    return workspace, project, run, export


@pytest.mark.django_db(transaction=True)
def test_api_schema_fuzzing_finds_no_server_error_and_no_schema_violation(
    live_server, django_user_model, tmp_path, settings
):
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    workspace, project, run, export = _seed(owner)
    _, token = ApiToken.issue(owner, name="fuzz")
    seconds = os.environ.get("RUNSTORE_FUZZ_SECONDS", "90")
    config = tmp_path / "schemathesis.toml"
    params = {
        "path.run_ref": str(run.uuid),
        "path.workspace_slug": workspace.slug,
        "path.slug": project.slug,
    }
    params["path.export_id"] = str(export.pk)
    config.write_text("[parameters]\n" + "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in params.items()))
    report = tmp_path / "junit.xml"
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
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
            "--output-truncate",
            "false",
        ],
        capture_output=True,
        text=True,
        timeout=int(seconds) * 3 + 300,
        cwd=tmp_path,
    )
    print(result.stdout[-20000:])
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-3000:]

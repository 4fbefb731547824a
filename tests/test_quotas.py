"""Storage, run, project and upload quotas: refused with 403 ``quota_exceeded`` naming the workspace,
the quota, what is used and the limit; what was accepted is never lost, a refused batch applies nothing."""

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from projects import quotas
from projects import services as project_services
from projects.models import Project, WorkspaceUsage
from runs import tasks
from runs.models import Attribute, Blob, Run, RunBatch, Upload

from .conftest import batch, run_url

FLOAT_POINT = 32  # bytes a float point counts for (runs/usage.py)


def _points(n, start=0):
    return [{"op": "append", "path": "train/loss", "values": [0.5] * n, "steps": list(range(start, start + n))}]


def _stored_points(run):
    attr = Attribute.objects.filter(run=run, path="train/loss").first()
    return attr.count if attr else 0


def _quota_error(response):
    assert response.status_code == 403, response.content
    return response.json()["error"]


def test_batches_are_refused_once_storage_is_over_the_quota(owner_api, run, workspace):
    project_services.set_quota(workspace, by=None, storage_bytes=10 * FLOAT_POINT)
    assert batch(owner_api, run, _points(8), seq=1).status_code == 200  # 0 used: admitted
    assert batch(owner_api, run, _points(8, 8), seq=2).status_code == 200  # 8 of 10 used: admitted, now over
    refused = batch(owner_api, run, _points(8, 16), seq=3)
    assert _quota_error(refused) == {
        "status": 403,
        "code": "quota_exceeded",
        "message": "workspace acme is over its storage quota: 512 bytes used of 320 bytes "
        "(this write needs 256 bytes more)",
        "workspace": "acme",
        "quota": "storage_bytes",
        "used": 16 * FLOAT_POINT,
        "limit": 10 * FLOAT_POINT,
        "requested": 8 * FLOAT_POINT,
    }
    # Nothing of the refused batch was applied, and it can be sent again later under its number.
    assert _stored_points(run) == 16
    assert not RunBatch.objects.filter(run=run, seq=3).exists()


def test_a_refused_batch_applies_none_of_its_operations(owner_api, run, workspace):
    project_services.set_quota(workspace, by=None, storage_bytes=0)
    ops = [{"op": "assign", "path": "parameters/lr", "value": 0.1}, *_points(4)]
    assert _quota_error(batch(owner_api, run, ops, seq=1))["quota"] == "storage_bytes"
    assert not Attribute.objects.filter(run=run, path__in=["parameters/lr", "train/loss"]).exists()
    # A batch without series points stores nothing the quota counts: it is accepted.
    assert batch(owner_api, run, ops[:1], seq=2).status_code == 200


def test_replays_of_accepted_batches_are_neither_refused_nor_counted_again(owner_api, run, workspace):
    project_services.set_quota(workspace, by=None, storage_bytes=10 * FLOAT_POINT)
    first = batch(owner_api, run, _points(9), seq=1)
    second = batch(owner_api, run, _points(9, 9), seq=2)
    assert first.status_code == second.status_code == 200
    used = quotas.used_bytes(workspace)
    for seq, start in ((1, 0), (2, 9)):  # the client retries after a lost acknowledgement
        replay = batch(owner_api, run, _points(9, start), seq=seq)
        assert replay.status_code == 200 and replay.json()["duplicate"] is True
    assert quotas.used_bytes(workspace) == used == 18 * FLOAT_POINT
    assert _stored_points(run) == 18


def test_runs_per_project_quota_counts_runs_in_the_trash(owner, owner_api, run, workspace):
    project_services.set_quota(workspace, by=None, runs_per_project=2)
    assert owner_api.post("/api/v1/runs/", {"project": "acme/vision", "name": "second"}).status_code == 201
    assert owner_api.delete(run_url(run)).status_code in (200, 204)  # trashed, still counted until purged
    refused = owner_api.post("/api/v1/runs/", {"project": "acme/vision", "name": "third"})
    assert _quota_error(refused) == {
        "status": 403,
        "code": "quota_exceeded",
        "message": "workspace acme is over its runs per project quota: 2 used of 2",
        "workspace": "acme",
        "quota": "runs_per_project",
        "used": 2,
        "limit": 2,
    }
    assert Run.objects.filter(project__slug="vision").count() == 2
    # Another project of the workspace has its own count.
    assert owner_api.post("/api/v1/runs/", {"project": "acme/other"}).status_code == 201


def test_projects_quota_refuses_a_new_project(owner_api, project, workspace):
    project_services.set_quota(workspace, by=None, projects=1)
    refused = owner_api.post("/api/v1/workspaces/acme/projects/", {"slug": "audio"})
    assert _quota_error(refused) == {
        "status": 403,
        "code": "quota_exceeded",
        "message": "workspace acme is over its projects quota: 1 used of 1",
        "workspace": "acme",
        "quota": "projects",
        "used": 1,
        "limit": 1,
    }
    # The first logged run of a new project cannot create it either.
    assert _quota_error(owner_api.post("/api/v1/runs/", {"project": "acme/audio"}))["quota"] == "projects"
    assert list(Project.objects.filter(workspace=workspace).values_list("slug", flat=True)) == ["vision"]


def test_projects_quota_is_a_403_page_with_its_message_in_the_ui(owner, project, workspace):
    project_services.set_quota(workspace, by=None, projects=1)
    browser = Client()
    browser.force_login(owner)
    response = browser.post("/w/acme/-/new-project", {"slug": "audio", "visibility": "private"})
    assert response.status_code == 403
    assert b"workspace acme is over its projects quota: 1 used of 1" in response.content


def test_upload_bytes_quota_refuses_a_larger_file_and_stores_nothing(owner_api, run, workspace):
    project_services.set_quota(workspace, by=None, upload_bytes=10)
    ok = owner_api.post(run_url(run, "uploads"), {"file": SimpleUploadedFile("a.txt", b"x" * 10)}, format="multipart")
    assert ok.status_code == 201
    refused = owner_api.post(
        run_url(run, "uploads"), {"file": SimpleUploadedFile("b.txt", b"y" * 11)}, format="multipart"
    )
    assert _quota_error(refused) == {
        "status": 403,
        "code": "quota_exceeded",
        "message": "workspace acme is over its largest upload quota: an upload of 11 bytes, the limit is 10 bytes",
        "workspace": "acme",
        "quota": "upload_bytes",
        "used": 11,
        "limit": 10,
    }
    assert Upload.objects.filter(run=run).count() == 1 and Blob.objects.count() == 1


def test_uploads_count_against_the_storage_quota_once_per_project(owner_api, run, workspace):
    project_services.set_quota(workspace, by=None, storage_bytes=100)
    content = b"z" * 80
    for name in ("a.bin", "again.bin"):  # the same bytes twice: stored once, counted once
        response = owner_api.post(
            run_url(run, "uploads"), {"file": SimpleUploadedFile(name, content)}, format="multipart"
        )
        assert response.status_code == 201
    assert quotas.used_bytes(workspace) == 80
    assert (
        owner_api.post(
            run_url(run, "uploads"), {"file": SimpleUploadedFile("b.bin", b"w" * 30)}, format="multipart"
        ).status_code
        == 201
    )  # 80 of 100 used: admitted, now over
    refused = owner_api.post(run_url(run, "uploads"), {"file": SimpleUploadedFile("c.bin", b"v")}, format="multipart")
    assert _quota_error(refused)["quota"] == "storage_bytes"
    assert Upload.objects.filter(run=run).count() == 2


def test_usage_recount_is_exact_and_keeps_bytes_admitted_while_it_counts(owner_api, run, workspace):
    project_services.set_quota(workspace, by=None, storage_bytes=1000 * FLOAT_POINT)
    assert batch(owner_api, run, _points(10), seq=1).status_code == 200
    # A batch admitted and then failed (a type conflict) is forgiven by the next recount.
    conflict = [{"op": "assign", "path": "train/loss", "value": "text"}, *_points(5, 100)]
    assert batch(owner_api, run, conflict, seq=2).status_code == 409
    assert quotas.used_bytes(workspace) == 15 * FLOAT_POINT
    tasks.refresh_usage()
    usage = WorkspaceUsage.objects.get(workspace=workspace)
    assert (usage.bytes, usage.admitted) == (10 * FLOAT_POINT, 0)

    # A recount that began before a batch was admitted keeps that batch's bytes.
    admitted_before = quotas.admitted_snapshot(workspace.pk)
    exact = quotas.used_bytes(workspace)
    assert batch(owner_api, run, _points(7, 10), seq=3).status_code == 200
    quotas.recount(workspace.pk, exact, admitted_before=admitted_before)
    assert quotas.used_bytes(workspace) == 17 * FLOAT_POINT
    tasks.refresh_usage()
    assert quotas.used_bytes(workspace) == 17 * FLOAT_POINT


def test_without_quotas_nothing_is_refused(owner_api, run, workspace):
    limits = quotas.limits(workspace)
    assert (limits.storage_bytes, limits.runs_per_project, limits.projects, limits.upload_bytes) == (None,) * 4
    assert batch(owner_api, run, _points(1000), seq=1).status_code == 200
    assert owner_api.post("/api/v1/runs/", {"project": "acme/more"}).status_code == 201

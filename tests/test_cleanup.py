"""The trash, purging, and the clean-up of storage after crashes and broken uploads."""

import hashlib
import io
from datetime import timedelta

import pytest
from django.core.files.storage import storages
from django.utils import timezone

from runs import cleanup, rollups, storage
from runs import services as run_services
from runs.models import Attribute, Blob, FileEntry, PendingUpload, Run, SeriesRollup, Upload

from .conftest import batch, run_url
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


def point_count(series_id):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs_floatpoint WHERE series_id = %s", [series_id])
        return cursor.fetchone()[0]


def later(days):
    return timezone.now() + timedelta(days=days)


def test_deleted_run_waits_in_the_trash_then_is_purged(owner, owner_api, run, project, blob_store, settings):
    settings.RUNSTORE_TRASH_DAYS = 30
    other, _ = run_services.create_run(owner, project)
    own = upload(owner_api, run, "own.bin", b"only this run").json()["sha256"]
    shared = upload(owner_api, run, "shared.bin", b"both runs").json()["sha256"]
    upload(owner_api, other, "shared.bin", b"both runs")
    batch(
        owner_api,
        run,
        [
            {"op": "append", "path": "loss", "values": [1.0] * 100},
            {"op": "upload", "path": "model", "sha256": own},
            {"op": "upload", "path": "shared", "sha256": shared},
        ],
    )
    loss = Attribute.objects.get(run=run, path="loss")
    rollups.roll_up(loss.pk)
    own_key, shared_key = Blob.objects.get(pk=own).storage_key, Blob.objects.get(pk=shared).storage_key

    assert owner_api.delete(run_url(run)).status_code == 204
    assert owner_api.get(run_url(run)).status_code == 404  # gone from every view, but still stored
    assert cleanup.purge_expired(now=later(29)) == 0 and Run.objects.filter(pk=run.pk).exists()

    assert cleanup.purge_expired(now=later(31)) == 1
    assert not Run.objects.filter(pk=run.pk).exists() and not Attribute.objects.filter(run_id=run.pk).exists()
    assert point_count(loss.pk) == 0 and not SeriesRollup.objects.filter(series_id=loss.pk).exists()
    assert not Blob.objects.filter(pk=own).exists() and not storages["blobs"].exists(own_key)
    assert Blob.objects.filter(pk=shared).exists() and storages["blobs"].exists(shared_key)  # another run holds it
    assert Upload.objects.filter(run=other).count() == 1
    assert cleanup.purge_run(run.pk) is False  # purging again does nothing


def test_live_runs_are_never_purged(run, settings):
    settings.RUNSTORE_TRASH_DAYS = 0
    assert cleanup.purge_run(run.pk) is False and cleanup.purge_expired(now=later(1000)) == 0
    assert Run.objects.filter(pk=run.pk).exists()


def test_purge_updates_storage_accounting(owner, owner_api, run, project):
    from projects.models import ProjectUsage

    batch(owner_api, run, [{"op": "append", "path": "loss", "values": [1.0] * 10}])
    run_services.delete_run(owner, run)
    cleanup.purge_run(run.pk)
    usage = ProjectUsage.objects.get(project=project)
    assert usage.float_points == 0 and usage.total_bytes == 0


def test_upload_saved_before_a_failed_transaction_is_cleaned_up(owner, run, blob_store, settings, monkeypatch):
    from django.core.files.uploadedfile import SimpleUploadedFile

    content = b"stored, but its row never committed"
    uploaded = SimpleUploadedFile("x.bin", content)
    uploaded.sha256 = hashlib.sha256(content).hexdigest()

    def crash(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Upload.objects, "get_or_create", crash)
    with pytest.raises(RuntimeError):
        run_services.store_upload(owner, run, uploaded)
    key = Blob(sha256=uploaded.sha256, size=0).storage_key
    assert storages["blobs"].exists(key) and not Blob.objects.exists()
    settings.RUNSTORE_ORPHAN_GRACE_SECONDS = 3600
    assert cleanup.clean_orphans()["objects"] == 0  # too young: it may be an upload in progress
    settings.RUNSTORE_ORPHAN_GRACE_SECONDS = 0
    assert cleanup.clean_orphans(now=later(1))["objects"] == 1
    assert not storages["blobs"].exists(key)


def test_a_client_that_disconnects_mid_upload_leaves_nothing(owner_api, run, blob_store, settings):
    boundary = "XyZ"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + b"A" * 50_000  # no closing boundary: the connection dropped
    response = owner_api.generic(
        "POST", run_url(run, "uploads"), body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert response.status_code == 400
    settings.RUNSTORE_ORPHAN_GRACE_SECONDS = 0
    cleanup.clean_orphans(now=later(1))
    assert not Blob.objects.exists() and list(storage.list_keys("blobs")) == []


def test_abandoned_direct_uploads_and_their_objects_are_removed(run, blob_store, settings):
    pending = PendingUpload.objects.create(run=run, staging_key="staging/abc", sha256="0" * 64, size=5)
    storage.save_bytes("staging/abc", b"12345")
    storage.save_bytes("staging/no-row", b"12345")
    settings.RUNSTORE_ORPHAN_GRACE_SECONDS = 0
    removed = cleanup.clean_orphans(now=later(1))
    assert removed["pending_uploads"] == 1 and not PendingUpload.objects.filter(pk=pending.pk).exists()
    assert list(storage.list_keys("staging")) == []


def test_unreferenced_blob_rows_and_their_previews_are_removed(owner, owner_api, run, settings):
    from runs import processing
    from runs.models import BlobPreview

    from .test_tasks import png_bytes

    sha = upload(owner_api, run, "i.png", png_bytes()).json()["sha256"]
    processing.process_blob(sha)
    preview_key = BlobPreview.objects.get(blob_id=sha).storage_key
    Upload.objects.filter(blob_id=sha).delete()  # e.g. its project was deleted
    settings.RUNSTORE_ORPHAN_GRACE_SECONDS = 0
    assert cleanup.clean_orphans(now=later(1))["blobs"] == 2  # the blob and its thumbnail
    assert not Blob.objects.filter(pk=sha).exists() and not storages["blobs"].exists(preview_key)


def test_referenced_files_survive_clean_up(owner_api, run, settings, blob_store):
    sha = upload(owner_api, run, "keep.bin", b"keep me").json()["sha256"]
    batch(owner_api, run, [{"op": "upload", "path": "f", "sha256": sha}])
    settings.RUNSTORE_ORPHAN_GRACE_SECONDS = 0
    cleanup.clean_orphans(now=later(1))
    assert FileEntry.objects.filter(blob_id=sha).exists() and storages["blobs"].exists(
        Blob.objects.get(pk=sha).storage_key
    )
    assert io.BytesIO(b"".join(storage.iter_blob(Blob.objects.get(pk=sha).storage_key))).read() == b"keep me"


def test_deleting_a_project_leaves_no_point_file_or_row_behind(owner, owner_api, run, project, blob_store):
    """A project deleted (admin or UI) takes its runs' points, roll-ups, files and stored objects with it;
    a file another project also holds stays."""
    from projects import services as project_services

    elsewhere = project_services.create_project(owner, project.workspace, "kept", key="KPT")
    kept_run, _ = run_services.create_run(owner, elsewhere)
    only_here = upload(owner_api, run, "own.bin", b"only this project").json()["sha256"]
    shared = upload(owner_api, run, "shared.bin", b"both projects").json()["sha256"]
    upload(owner_api, kept_run, "shared.bin", b"both projects")
    batch(
        owner_api,
        run,
        [
            {"op": "append", "path": "loss", "values": [1.0] * 100},
            {"op": "upload", "path": "model", "sha256": only_here},
        ],
    )
    loss = Attribute.objects.get(run=run, path="loss")
    rollups.roll_up(loss.pk)
    assert point_count(loss.pk) == 100 and SeriesRollup.objects.filter(series_id=loss.pk).exists()
    own_key, shared_key = Blob.objects.get(pk=only_here).storage_key, Blob.objects.get(pk=shared).storage_key

    project_services.delete_project(project, by=owner)

    assert not Run.objects.filter(project_id=project.pk).exists()
    assert point_count(loss.pk) == 0 and not SeriesRollup.objects.filter(series_id=loss.pk).exists()
    assert not Attribute.objects.filter(run_id=run.pk).exists()
    assert not Blob.objects.filter(pk=only_here).exists() and not storages["blobs"].exists(own_key)
    assert Blob.objects.filter(pk=shared).exists() and storages["blobs"].exists(shared_key)

"""Domain writes for runs: create, update, delete, uploads, batches."""

import mimetypes

from django.core.exceptions import ValidationError
from rest_framework.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from projects import permissions
from projects.models import Project

from .errors import ApiError
from .ingest import apply_batch, record_fields
from .models import Attribute, AttributeType, Blob, Run, RunState, SavedView, Upload
from .paths import safe_file_name
from . import processing
from .storage import save_blob

__all__ = ["apply_batch", "create_run", "update_run", "delete_run", "restore_run", "store_upload", "ping_run"]

FINAL_STATES = {RunState.FINISHED, RunState.FAILED, RunState.ABORTED}


def _allocate_number(project: Project) -> int:
    # The UPDATE takes the project row's lock until commit, so concurrent
    # creates in one project get consecutive numbers, never the same one.
    Project.objects.filter(pk=project.pk).update(run_counter=F("run_counter") + 1)
    return Project.objects.filter(pk=project.pk).values_list("run_counter", flat=True).get()


def create_run(user, project: Project, *, name="", description="", tags=(), custom_run_id=None) -> tuple[Run, bool]:
    """Create a run (or return the live one with ``custom_run_id``); returns (run, created)."""
    permissions.require(user, "write", project)
    if custom_run_id:
        existing = Run.objects.filter(project=project, custom_run_id=custom_run_id, deleted_at__isnull=True).first()
        if existing:
            return existing, False
    try:
        with transaction.atomic():
            number = _allocate_number(project)
            now = timezone.now()
            run = Run.objects.create(
                project=project, number=number, name=name, description=description, owner=user,
                custom_run_id=custom_run_id or None, created_at=now, modified_at=now, ping_at=now,
            )
            if tags:
                Attribute.objects.create(
                    run=run, project=project, path="sys/tags", type=AttributeType.STRING_SET, json_value=sorted(set(tags))
                )
                record_fields(project.pk, [("sys/tags", AttributeType.STRING_SET)])
    except IntegrityError:
        if custom_run_id:
            # Another process created the run with this custom id first.
            return Run.objects.get(project=project, custom_run_id=custom_run_id), False
        raise
    run.project = project
    return run, True


def update_run(user, run: Run, **changes) -> Run:
    permissions.require(user, "write", run.project)
    now = timezone.now()
    fields = ["modified_at"]
    for name in ("name", "description"):
        if name in changes:
            setattr(run, name, changes[name])
            fields.append(name)
    if "state" in changes:
        state = RunState(changes["state"])
        run.state = state
        run.finished_at = now if state in FINAL_STATES else None
        fields += ["state", "finished_at"]
    run.modified_at = now
    with transaction.atomic():
        run.save(update_fields=fields)
        if "tags" in changes:
            Attribute.objects.update_or_create(
                run=run, path="sys/tags",
                defaults={"type": AttributeType.STRING_SET, "json_value": sorted(set(changes["tags"])), "updated_at": now},
                create_defaults={
                    "project_id": run.project_id, "type": AttributeType.STRING_SET,
                    "json_value": sorted(set(changes["tags"])), "updated_at": now,
                },
            )
            record_fields(run.project_id, [("sys/tags", AttributeType.STRING_SET)])
    return run


def ping_run(user, run: Run) -> None:
    permissions.require(user, "write", run.project)
    Run.objects.filter(pk=run.pk).update(ping_at=timezone.now())


def delete_run(user, run: Run) -> None:
    """Soft delete: the run moves to the trash; ``runs.tasks.purge_trash`` purges it after RUNSTORE_TRASH_DAYS."""
    permissions.require(user, "write", run.project)
    Run.objects.filter(pk=run.pk).update(deleted_at=timezone.now())


def upload_name(uploaded) -> str:
    """The uploader's file name, reduced to a plain base name."""
    return safe_file_name(uploaded.name or "", fallback="")[:255]


def upload_mime_type(uploaded) -> str:
    """The MIME type the uploader sent (or one guessed from its file name)."""
    mime = uploaded.content_type if uploaded.content_type not in (None, "", "application/octet-stream") else None
    return (mime or mimetypes.guess_type(uploaded.name or "")[0] or "application/octet-stream")[:200]


def store_upload(user, run: Run, uploaded) -> Blob:
    """Store an uploaded file (already hashed while streaming) and record it for the run.

    Blobs are shared by content across projects, so what the caller is told about its upload
    (name, MIME type, size) comes from ``upload_name``/``upload_mime_type`` and the bytes it
    sent, never from the shared Blob row, which another project may have created."""
    permissions.require(user, "write", run.project)
    sha256 = getattr(uploaded, "sha256", None)
    if not sha256:
        raise ValidationError({"file": "upload was not hashed; check FILE_UPLOAD_HANDLERS"})
    expected = getattr(uploaded, "expected_sha256", None)
    if expected and expected != sha256:
        raise ApiError(400, "hash_mismatch", f"uploaded content hashes to {sha256}, not {expected}", field="sha256")
    name, mime = upload_name(uploaded), upload_mime_type(uploaded)
    blob = Blob(sha256=sha256, size=uploaded.size, mime_type=mime)
    save_blob(blob.storage_key, uploaded)
    with transaction.atomic():
        blob, created = Blob.objects.get_or_create(sha256=sha256, defaults={"size": uploaded.size, "mime_type": mime})
        upload, created_upload = Upload.objects.get_or_create(run=run, blob=blob, defaults={"name": name, "mime_type": mime})
        if not created_upload and (upload.name, upload.mime_type) != (name, mime):
            Upload.objects.filter(pk=upload.pk).update(name=name, mime_type=mime)  # the latest upload names it
        if created or processing.processed_before_upload(blob.pk, run.project_id):
            processing.enqueue(blob.sha256)  # bytes another project uploaded are processed again for this one
    return blob


def restore_run(user, run: Run) -> None:
    """Undo a soft delete: the run is back in every list."""
    permissions.require(user, "write", run.project)
    Run.objects.filter(pk=run.pk).update(deleted_at=None)


def save_view(user, project: Project, *, name: str, shared: bool, columns: list, query: str, sort: str, group_by: str):
    """Save (or overwrite) the caller's named view of the run table; sharing it with the project
    needs the right to write there (contributor), like any change others will see."""
    permissions.require(user, "view", project)
    if shared:
        permissions.require(user, "write", project)
    view, _ = SavedView.objects.update_or_create(
        project=project, owner=user, name=name,
        defaults={"shared": shared, "columns": columns, "query": query, "sort": sort, "group_by": group_by},
    )
    return view


def delete_view(user, view) -> None:
    """Only a view's owner may delete it (a shared view is others' to read, not to remove)."""
    if view.owner_id != user.pk:
        raise PermissionDenied("Only its owner may delete a view.")
    view.delete()

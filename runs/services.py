"""Domain writes for runs: create, update, delete, uploads, batches."""

import mimetypes
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.http import Http404
from django.utils import timezone

from projects import audit, permissions, quotas
from projects.models import Project

from . import exports, ingest, maintenance, processing, storage
from .errors import ApiError
from .ingest import record_fields
from .models import (
    Attribute,
    AttributeType,
    Blob,
    Erasure,
    Export,
    FileEntry,
    PendingUpload,
    Run,
    RunState,
    SavedView,
    Upload,
)
from .paths import safe_file_name
from .storage import save_blob
from .webhooks import events as webhook_events

__all__ = [
    "apply_batch",
    "create_run",
    "update_run",
    "tag_runs",
    "delete_run",
    "restore_run",
    "purge_run",
    "ping_run",
    "mark_crashed_runs",
    "store_upload",
    "start_direct_upload",
    "complete_upload",
    "request_export",
    "record_export_download",
    "record_table_export",
    "save_view",
    "delete_view",
]

FINAL_STATES = {RunState.FINISHED, RunState.FAILED, RunState.ABORTED}


def apply_batch(user, run: Run, *, stream: str, seq: int | None, raw_ops, fields=None) -> dict:
    """Apply one batch of operations to ``run`` as ``user`` (see :func:`apply_batch_body`).

    ``seq=None`` and ``fields``: a caller that made the batch idempotent itself, touched the run in
    its open transaction and read the stored fields (see ``runs.ingest.apply_batch``)."""
    if seq is None:
        permissions.require_on_project(user, "write", run.project_id, not_found="run not found")

        def admit(nbytes, is_replay):
            quotas.admit_bytes(run.project.workspace, nbytes, accepted=is_replay)

        return ingest.apply_batch(run, stream=stream, seq=None, raw_ops=raw_ops, admit=admit, fields=fields)
    return apply_batch_body(user, run, {"stream": stream, "seq": seq, "ops": raw_ops})


def apply_batch_body(user, run: Run, body, *, ref: str | None = None) -> dict:
    """Apply the batch endpoint's ``body`` to ``run``: 404 unless ``user`` may view its project, 403
    unless they may write there (one query, ``require_on_project``: this runs for every batch), and
    only then is the body read, so a caller without access learns nothing from a malformed one."""
    permissions.require_on_project(
        user, "write", run.project_id, not_found=f"run {ref!r} not found" if ref else "run not found"
    )
    stream, seq, raw_ops = ingest.parse_envelope(body)

    def admit(nbytes, is_replay):
        quotas.admit_bytes(run.project.workspace, nbytes, accepted=is_replay)

    return ingest.apply_batch(run, stream=stream, seq=seq, raw_ops=raw_ops, admit=admit)


def _allocate_number(project: Project) -> int:
    # The UPDATE takes the project row's lock until commit, so concurrent
    # creates in one project get consecutive numbers, never the same one;
    # RETURNING (PostgreSQL, SQLite 3.35+) reads the number in the same statement.
    quote = connection.ops.quote_name
    table, column = quote(Project._meta.db_table), quote(Project._meta.get_field("run_counter").column)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = {column} + 1 WHERE id = %s RETURNING {column}", [project.pk])
        row = cursor.fetchone()
    if row is None:
        raise Project.DoesNotExist(f"project {project.pk} does not exist")
    return row[0]


CREATION_TIME_SKEW = timedelta(minutes=1)  # clocks of the importing machine and the server differ a little


def create_run(
    user, project: Project, *, name="", description="", tags=(), custom_run_id=None, creation_time=None
) -> tuple[Run, bool]:
    """Create a run (or return the live one with ``custom_run_id``); returns (run, created).

    ``creation_time`` (an aware datetime, not in the future) sets ``sys/creation_time`` of a run
    being created, so an importer keeps the original time; an existing run keeps its own."""
    permissions.require(user, "write", project)
    if creation_time is not None:
        if timezone.is_naive(creation_time):
            raise ApiError(400, "invalid", "creation_time needs a time zone offset", field="creation_time")
        if creation_time > timezone.now() + CREATION_TIME_SKEW:
            raise ApiError(400, "invalid", "creation_time must not be in the future", field="creation_time")
    if custom_run_id:
        existing = Run.objects.filter(project=project, custom_run_id=custom_run_id, deleted_at__isnull=True).first()
        if existing:
            return existing, False
    try:
        with transaction.atomic():
            number = _allocate_number(project)
            # Counted after the project's row is locked (above): concurrent creations count in turn.
            quotas.admit_run(project, lambda: Run.objects.filter(project=project).count())
            now = timezone.now()
            run = Run.objects.create(
                project=project,
                number=number,
                name=name,
                description=description,
                owner=user,
                custom_run_id=custom_run_id or None,
                created_at=creation_time or now,
                modified_at=now,
                ping_at=now,
            )
            # what the run serializer reads (a prefetch's to_attr, not a model field): no query for a run just made
            setattr(run, "tag_attributes", [])  # noqa: B010
            if tags:
                tags_field = Attribute.objects.create(
                    run=run,
                    project=project,
                    path="sys/tags",
                    type=AttributeType.STRING_SET,
                    json_value=sorted(set(tags)),
                )
                record_fields(project.pk, [("sys/tags", AttributeType.STRING_SET)])
                setattr(run, "tag_attributes", [tags_field])  # noqa: B010
            webhook_events.emit_run_event(run, webhook_events.m.RUN_CREATED)
            maintenance.after_bulk_write()  # a burst of new runs: analyzed while it still arrives
    except IntegrityError:
        if custom_run_id:
            # Another process created the run with this custom id first.
            return Run.objects.get(project=project, custom_run_id=custom_run_id), False
        raise
    run.project = project
    return run, True


def update_run(user, run: Run, **changes) -> Run:
    """Change a run's name, description, state (a final state sets ``finished_at``) or tags."""
    permissions.require(user, "write", run.project)
    return _change_run(run, **changes)


def tag_runs(user, project: Project, runs, *, add=(), remove=()) -> list[Run]:
    """Add and remove tags on runs of ``project`` (the run table's bulk action); one permission check
    for all of them, runs of other projects are left alone."""
    permissions.require(user, "write", project)
    runs = [run for run in runs if run.project_id == project.pk]
    current = {a.run_id: a.json_value for a in Attribute.objects.filter(run__in=runs, path="sys/tags")}
    for run in runs:
        tags = (set(current.get(run.pk) or []) | set(add)) - set(remove)
        _change_run(run, tags=sorted(tags))
    return runs


def _change_run(run: Run, **changes) -> Run:
    now = timezone.now()
    fields = ["modified_at"]
    for name in ("name", "description"):
        if name in changes:
            setattr(run, name, changes[name])
            fields.append(name)
    events: list[tuple[str, dict]] = []
    changed = {f"sys/{name}" for name in ("name", "description") if name in changes}
    if "state" in changes:
        state = RunState(changes["state"])
        if state != run.state and state in (RunState.FINISHED, RunState.FAILED):
            event = webhook_events.m.RUN_FINISHED if state == RunState.FINISHED else webhook_events.m.RUN_FAILED
            events.append((event, {"state": state.value}))
        changed.add("sys/state")
        run.state = state
        run.finished_at = now if state in FINAL_STATES else None
        fields += ["state", "finished_at"]
    run.modified_at = now
    with transaction.atomic():
        run.save(update_fields=fields)
        if "tags" in changes:
            changed.add("sys/tags")
            before = set(
                Attribute.objects.filter(run=run, path="sys/tags").values_list("json_value", flat=True).first() or []
            )
            after = set(changes["tags"])
            if after - before:
                events.append((webhook_events.m.RUN_TAG_ADDED, {"tags": sorted(after - before)}))
            if before - after:
                events.append((webhook_events.m.RUN_TAG_REMOVED, {"tags": sorted(before - after)}))
            Attribute.objects.update_or_create(
                run=run,
                path="sys/tags",
                defaults={
                    "type": AttributeType.STRING_SET,
                    "json_value": sorted(set(changes["tags"])),
                    "updated_at": now,
                },
                create_defaults={
                    "project_id": run.project_id,
                    "type": AttributeType.STRING_SET,
                    "json_value": sorted(set(changes["tags"])),
                    "updated_at": now,
                },
            )
            record_fields(run.project_id, [("sys/tags", AttributeType.STRING_SET)])
        webhook_events.emit_run_events(run, events, changed)
    return run


def ping_run(user, run: Run) -> None:
    """The client's "still alive": records the time, and a run marked crashed is running again."""
    permissions.require(user, "write", run.project)
    Run.objects.filter(pk=run.pk).update(ping_at=timezone.now())
    Run.objects.filter(pk=run.pk, state=RunState.CRASHED).update(state=RunState.RUNNING)


def mark_crashed_runs(now=None) -> int:
    """Mark crashed every running run whose last ping or write is older than RUNSTORE_CRASH_AFTER
    seconds (its process died without saying so: ``kill -9``, a lost machine); returns how many.
    Its duration then ends at the last ping; a later ping or batch makes it running again."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.RUNSTORE_CRASH_AFTER)
    with transaction.atomic():
        silent = list(
            Run.objects.select_for_update()
            .filter(state=RunState.RUNNING, ping_at__lt=cutoff, deleted_at__isnull=True)
            .values_list("pk", flat=True)
        )
        if not silent:
            return 0
        Run.objects.filter(pk__in=silent).update(state=RunState.CRASHED)
        webhook_events.emit_runs_event(silent, webhook_events.m.RUN_CRASHED)
    return len(silent)


def delete_run(user, run: Run) -> None:
    """Soft delete: the run moves to the trash; ``runs.tasks.purge_trash`` purges it after RUNSTORE_TRASH_DAYS."""
    permissions.require(user, "delete", run.project)
    with transaction.atomic():
        # Already in the trash: nothing changes (its time in the trash is not restarted), nothing is audited.
        if Run.objects.filter(pk=run.pk, deleted_at__isnull=True).update(deleted_at=timezone.now()):
            audit.record("run.deleted", actor=user, project=run.project, target=run)


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
    quotas.admit_upload(run.project.workspace, uploaded.size, store=not _in_project(run, sha256))
    blob = Blob(sha256=sha256, size=uploaded.size, mime_type=mime)
    try:
        save_blob(blob.storage_key, uploaded)
    except storage.StorageFull:
        raise ApiError(
            507,
            "insufficient_storage",
            "the server's blob store is full: the file was not stored (nothing of it was kept); retry later",
            field="file",
            headers={"Retry-After": "30"},
        ) from None
    except storage.StorageUnavailable:
        raise ApiError(
            503,
            "storage_unavailable",
            "the server's blob store is unavailable for now: the file was not stored; retry shortly",
            field="file",
            headers={"Retry-After": "5"},
        ) from None
    return _record_upload(run, sha256=sha256, size=uploaded.size, name=name, mime=mime)


def _in_project(run: Run, sha256: str) -> bool:
    """Whether ``run``'s project holds these bytes already (storage counts them once per project)."""
    return Upload.objects.filter(run__project_id=run.project_id, blob_id=sha256).exists()


def _record_upload(run: Run, *, sha256: str, size: int, name: str, mime: str, pending=None) -> Blob:
    """The rows of stored content uploaded to ``run`` (its bytes already at the blob's key), and its
    processing queued when the blob is new or was processed for another project's upload only."""
    with transaction.atomic():
        blob, created = Blob.objects.get_or_create(sha256=sha256, defaults={"size": size, "mime_type": mime})
        upload, created_upload = Upload.objects.get_or_create(
            run=run, blob=blob, defaults={"name": name, "mime_type": mime}
        )
        if not created_upload and (upload.name, upload.mime_type) != (name, mime):
            Upload.objects.filter(pk=upload.pk).update(name=name, mime_type=mime)  # the latest upload names it
        if pending is not None:
            pending.delete()
        if created or processing.processed_before_upload(blob.pk, run.project_id):
            processing.enqueue(blob.sha256)  # bytes another project uploaded are processed again for this one
    return blob


def start_direct_upload(
    user, run: Run, *, sha256: str, size: int, name: str = "", mime_type: str = ""
) -> tuple[dict, bool]:
    """Start an upload straight to the S3 store; returns (the answer, whether an upload was started).

    Content this project already uploaded needs no upload (it is recorded for ``run`` at once);
    whether another project holds the same bytes is never revealed. Otherwise a pending upload gets
    one presigned PUT, or presigned parts above RUNSTORE_MULTIPART_THRESHOLD."""
    permissions.require(user, "write", run.project)
    if not storage.is_s3():
        raise ApiError(
            409,
            "direct_upload_unavailable",
            "blob storage is a local folder: POST the file to uploads",
            field="storage",
        )
    blob = Blob.objects.filter(pk=sha256, size=size).first()
    if blob is not None and Upload.objects.filter(run__project_id=run.project_id, blob=blob).exists():
        mime = mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        Upload.objects.update_or_create(run=run, blob=blob, defaults={"name": name, "mime_type": mime})
        return {"exists": True, "sha256": blob.sha256, "size": size, "name": name, "mime_type": mime}, False
    quotas.admit_upload(run.project.workspace, size)
    pending = PendingUpload(run=run, sha256=sha256, size=size, name=name, mime_type=mime_type)
    pending.staging_key = f"staging/{pending.id}"
    body = {"exists": False, "upload_id": str(pending.id), "expires_in": storage.url_expiry()}
    if size > settings.RUNSTORE_MULTIPART_THRESHOLD:
        upload_id, part_size, urls = storage.start_multipart(pending.staging_key, size)
        pending.multipart_id = upload_id
        body.update(
            {
                "method": "PUT",
                "part_size": part_size,
                "parts": [{"part_number": i + 1, "url": u} for i, u in enumerate(urls)],
            }
        )
    else:
        body.update({"method": "PUT", "url": storage.presigned_put(pending.staging_key)})
    pending.save()
    return body, True


def complete_upload(user, run: Run, upload_id, *, parts=None) -> dict:
    """Finish a direct upload of ``run``: the object is read back (streamed), its SHA-256 and size
    checked, and moved to its content address; returns what the caller sent (never what a shared
    blob row says, which another project may have made)."""
    permissions.require(user, "write", run.project)
    pending = PendingUpload.objects.filter(pk=upload_id, run=run).first()
    if pending is None:
        raise Http404("no such upload in progress")
    if pending.multipart_id:
        if not parts:
            raise ApiError(400, "invalid", "parts: the part numbers and ETags are required", field="parts")
        try:
            storage.complete_multipart(pending.staging_key, pending.multipart_id, parts)
        except Exception as exc:
            raise ApiError(400, "upload_incomplete", f"the store refused to complete the upload: {exc}", field="parts")
    try:
        digest, size, head = storage.hash_blob(pending.staging_key)
    except Exception:
        raise ApiError(409, "upload_incomplete", "nothing was uploaded to the URL yet", field="upload_id")
    if digest != pending.sha256 or size != pending.size:
        storage.delete_key(pending.staging_key)
        pending.delete()
        raise ApiError(
            400,
            "hash_mismatch",
            f"uploaded content hashes to {digest} ({size} bytes), not {pending.sha256} ({pending.size} bytes)",
            field="sha256",
        )
    if size > settings.RUNSTORE_MAX_UPLOAD_BYTES:
        storage.delete_key(pending.staging_key)
        pending.delete()
        raise ApiError(
            413,
            "upload_too_large",
            f"size: {size} bytes is above the upload limit of {settings.RUNSTORE_MAX_UPLOAD_BYTES} bytes",
            field="size",
            limit=settings.RUNSTORE_MAX_UPLOAD_BYTES,
        )
    # Its bytes were admitted when the upload started; a largest-upload quota lowered since still applies.
    quotas.admit_upload(run.project.workspace, size, store=False)
    mime = pending.mime_type or processing.sniff(head, pending.name)
    storage.move(pending.staging_key, Blob(sha256=digest, size=size, mime_type=mime).storage_key)
    _record_upload(run, sha256=digest, size=size, name=pending.name, mime=mime, pending=pending)
    return {"sha256": digest, "size": size, "name": pending.name, "mime_type": mime}


def request_export(user, project: Project, run: Run | None = None) -> Export:
    """Queue a ZIP export of ``project`` (or of one of its runs); the task builds it after commit."""
    permissions.require(user, "export", project)
    if run is not None and run.project_id != project.pk:
        raise ValueError("the run is not in the exported project")
    with transaction.atomic():
        export = Export.objects.create(project=project, run=run, requested_by=user)
        audit.record(
            "export.requested",
            actor=user,
            project=project,
            target=run if run is not None else project,
            details={"export": str(export.pk)},
        )
        exports.enqueue(export)
    return export


def record_export_download(user, export: Export, *, range_header: str = "") -> None:
    """Audit that ``user`` downloaded ``export`` (the download view calls it; ``export`` is one they may see)."""
    permissions.require(user, "export", export.project)
    details = {"export": str(export.pk), "size": export.size}
    if range_header:
        details["range"] = range_header[:100]
    audit.record(
        "export.downloaded",
        actor=user,
        project=export.project,
        target=export.run if export.run_id else export.project,
        details=details,
    )


def record_table_export(user, project: Project, *, fmt: str, query: str, columns: list[str], sort: str) -> None:
    """Audit that ``user`` downloaded the run table's view of ``project`` as ``fmt`` (CSV or Parquet);
    the table export view calls it once the view's query has run."""
    permissions.require(user, "export", project)
    audit.record(
        "export.table",
        actor=user,
        project=project,
        target=project,
        details={"format": fmt, "query": query[:1000], "columns": columns[:200], "sort": sort[:300]},
    )


def purge_run(user, run: Run) -> bool:
    """Remove a run and everything only it holds now, instead of after RUNSTORE_TRASH_DAYS in the
    trash: for those who manage its project (the admin's "purge now"). It passes through the trash."""
    permissions.require(user, "manage", run.project)
    from . import cleanup

    Run.objects.filter(pk=run.pk, deleted_at__isnull=True).update(deleted_at=timezone.now())
    purged = cleanup.purge_run(run.pk)
    if purged:
        audit.record("run.purged", actor=user, project=run.project, target=str(run), details={"run_id": run.pk})
    return purged


MAX_ERASURE_REASON = 1000


def erase_runs(user, runs: list[Run], *, reason: str, subject: str) -> Erasure:
    """Delete runs for good now (GDPR erasure), with everything only they hold: fields, series and their
    points, file entries and the blobs no other run or model version uses. Needs ``manage`` on each
    run's project and a reason; writes an :class:`Erasure` record (kept for good) and an audit entry.
    All runs must be of one project."""
    reason = (reason or "").strip()
    if not reason:
        raise ApiError(400, "invalid", "reason: say why these runs are erased (it is recorded)", field="reason")
    if len(reason) > MAX_ERASURE_REASON:
        raise ApiError(400, "invalid", f"reason: at most {MAX_ERASURE_REASON} characters", field="reason")
    if not runs:
        raise ApiError(400, "invalid", "runs: nothing to erase", field="runs")
    project = runs[0].project
    if any(r.project_id != project.pk for r in runs):
        raise ApiError(400, "invalid", "runs: all runs of one erasure must be of one project", field="runs")
    permissions.require(user, "manage", project)
    from . import cleanup

    ids = [r.pk for r in runs]
    attrs = Attribute.objects.filter(run_id__in=ids)
    series = attrs.filter(type__in=[AttributeType.FLOAT_SERIES, AttributeType.STRING_SERIES])
    blob_ids = set(Upload.objects.filter(run_id__in=ids).values_list("blob_id", flat=True))
    blob_ids |= set(FileEntry.objects.filter(attribute__run_id__in=ids).values_list("blob_id", flat=True))
    sizes = dict(Blob.objects.filter(pk__in=blob_ids).values_list("pk", "size"))
    counts = {
        "fields": attrs.count(),
        "series": series.count(),
        "points": sum(c or 0 for c in series.values_list("count", flat=True)),
        "files": FileEntry.objects.filter(attribute__run_id__in=ids).count(),
    }
    listed = [
        {"uuid": str(r.uuid), "id": r.human_id, "name": r.name, "created_at": r.created_at.isoformat()} for r in runs
    ]
    Run.objects.filter(pk__in=ids, deleted_at__isnull=True).update(deleted_at=timezone.now())
    for run_id in ids:
        cleanup.purge_run(run_id)
    kept = set(Blob.objects.filter(pk__in=blob_ids).values_list("pk", flat=True))
    gone = [sha for sha in sizes if sha not in kept]
    counts |= {"blobs_deleted": len(gone), "bytes_deleted": sum(sizes[sha] for sha in gone), "blobs_kept": len(kept)}
    record = Erasure.objects.create(
        actor=user,
        actor_name=user.get_username(),
        project=project,
        project_label=f"{project.workspace.slug}/{project.slug}",
        subject=subject[:300],
        reason=reason,
        runs=listed,
        counts=counts,
    )
    audit.record(
        "run.erased",
        actor=user,
        project=project,
        target=subject[:300],
        details={"erasure": record.pk, "runs": [r["id"] for r in listed], **counts},
    )
    return record


def erase_runs_by_project(user, runs: list[Run], *, reason: str, subject: str) -> list[Erasure]:
    """:func:`erase_runs` for runs of several projects: one erasure (record) per project, in the order
    the projects first appear. The ``manage`` right on every project (403), then the reason (400) are
    checked before anything is deleted, so a refusal deletes nothing."""
    if not runs:
        raise ApiError(400, "invalid", "runs: nothing to erase", field="runs")
    groups: dict[int, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.project_id, []).append(run)
    for group in groups.values():
        permissions.require(user, "manage", group[0].project)
    reason = (reason or "").strip()
    if not reason:
        raise ApiError(400, "invalid", "reason: say why these runs are erased (it is recorded)", field="reason")
    if len(reason) > MAX_ERASURE_REASON:
        raise ApiError(400, "invalid", f"reason: at most {MAX_ERASURE_REASON} characters", field="reason")
    return [erase_runs(user, group, reason=reason, subject=subject) for group in groups.values()]


def restore_run(user, run: Run) -> None:
    """Undo a soft delete: the run is back in every list."""
    permissions.require(user, "delete", run.project)
    with transaction.atomic():
        if Run.objects.filter(pk=run.pk, deleted_at__isnull=False).update(deleted_at=None):
            audit.record("run.restored", actor=user, project=run.project, target=run)


def save_view(
    user,
    project: Project,
    *,
    name: str,
    shared: bool,
    columns: list,
    query: str,
    sort: str,
    group_by: str,
    dashboard: dict | None = None,
):
    """Save (or overwrite) the caller's named view of the run table; sharing it with the project
    needs the right to write there (contributor), like any change others will see. ``dashboard``
    (the view's project dashboard) is kept as it was when None (a save from the table)."""
    permissions.require(user, "view", project)
    if shared:
        permissions.require_may_share(user, project)
    defaults = {"shared": shared, "columns": columns, "query": query, "sort": sort, "group_by": group_by}
    if dashboard is not None:
        defaults["dashboard"] = dashboard
    view, _ = SavedView.objects.update_or_create(project=project, owner=user, name=name, defaults=defaults)
    return view


def delete_view(user, view: SavedView) -> None:
    """Only a view's owner may delete it (a shared view is others' to read, not to remove)."""
    permissions.require_owned(
        user, "manage", owner_id=view.owner_id, shared=view.shared, project=view.project, noun="saved view"
    )
    view.delete()

"""The trash and the clean-up of storage.

Deleting a run only sets ``deleted_at`` (the run is in the trash and can be
restored). After RUNSTORE_TRASH_DAYS, :func:`purge_run` removes its points,
roll-ups, fields, files and batches in one transaction, then the blobs no
other run references (rows first, stored objects after the commit). Whatever
a crash leaves in storage without a row — an upload saved before its
transaction failed, a direct upload never completed, a blob whose row was
purged — :func:`clean_orphans` removes once it is older than
RUNSTORE_ORPHAN_GRACE_SECONDS.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from . import series as series_store
from . import storage
from .models import Attribute, Blob, BlobPreview, Export, FileEntry, PendingUpload, Run, Upload
from .registry.models import ModelVersionFile
from .usage import refresh_usage

logger = logging.getLogger(__name__)
EXPORT_KEEP_DAYS = 7


def _chunks(items, size=500):
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i : i + size]


def purge_expired(now=None) -> int:
    cutoff = (now or timezone.now()) - timedelta(days=settings.RUNSTORE_TRASH_DAYS)
    ids = list(Run.objects.filter(deleted_at__isnull=False, deleted_at__lte=cutoff).values_list("pk", flat=True))
    return sum(1 for run_id in ids if purge_run(run_id))


def _blob_keys(shas) -> list[str]:
    keys = [Blob(sha256=sha, size=0).storage_key for sha in shas]
    keys += list(BlobPreview.objects.filter(blob_id__in=shas).values_list("storage_key", flat=True))
    return keys


def delete_unreferenced_blobs(candidates) -> list[str]:
    """Delete the rows of blobs among ``candidates`` that nothing references; return their storage keys.

    Call inside a transaction; delete the returned keys after it commits.
    """
    candidates = set(candidates)
    if not candidates:
        return []
    if connection.vendor == "postgresql":
        list(Blob.objects.select_for_update().filter(pk__in=candidates).values_list("pk", flat=True))
    referenced = set(Upload.objects.filter(blob_id__in=candidates).values_list("blob_id", flat=True))
    referenced |= set(FileEntry.objects.filter(blob_id__in=candidates).values_list("blob_id", flat=True))
    # a registered model version keeps the files it was registered with, after its run is purged
    referenced |= set(ModelVersionFile.objects.filter(blob_id__in=candidates).values_list("blob_id", flat=True))
    doomed = sorted(candidates - referenced)
    keys = _blob_keys(doomed)
    Blob.objects.filter(pk__in=doomed).delete()
    return keys


def _delete_keys(keys) -> None:
    for key in keys:
        try:
            storage.delete_key(key)
        except Exception as exc:  # left for clean_orphans
            logger.warning("could not delete %s: %s", key, exc)


def purge_run(run_id: int) -> bool:
    """Remove a run in the trash and everything only it holds. False when there was nothing to do."""
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id, deleted_at__isnull=False).first()
        if run is None:
            return False
        project_id = run.project_id
        series_ids = list(Attribute.objects.filter(run_id=run_id).values_list("pk", flat=True))
        for chunk in _chunks(series_ids):
            series_store.delete_points(chunk)
        candidates = set(Upload.objects.filter(run_id=run_id).values_list("blob_id", flat=True))
        candidates |= set(FileEntry.objects.filter(attribute__run_id=run_id).values_list("blob_id", flat=True))
        export_keys = [k for k in Export.objects.filter(run_id=run_id).values_list("storage_key", flat=True) if k]
        pending = list(PendingUpload.objects.filter(run_id=run_id).values_list("staging_key", "multipart_id"))
        FileEntry.objects.filter(attribute__run_id=run_id).delete()
        Attribute.objects.filter(run_id=run_id).delete()
        run.delete()
        keys = delete_unreferenced_blobs(candidates)
    for staging_key, multipart_id in pending:
        if multipart_id:
            storage.abort_multipart(staging_key, multipart_id)
    _delete_keys(keys + export_keys + [k for k, _ in pending])
    refresh_usage([project_id])  # and its workspace's total, which the storage quota reads
    logger.info("purged run %s (%d series, %d stored objects)", run_id, len(series_ids), len(keys))
    return True


def purge_project(sender=None, *, project, **kwargs) -> int:
    """Purge every run of ``project`` (each in its own transaction) and its project-wide exports:
    the receiver of ``projects.services.project_emptying``. Returns how many runs went."""
    run_ids = list(Run.objects.filter(project=project).values_list("pk", flat=True))
    Run.objects.filter(pk__in=run_ids, deleted_at__isnull=True).update(deleted_at=timezone.now())
    purged = sum(purge_run(run_id) for run_id in run_ids)
    exports = Export.objects.filter(project=project)
    keys = [k for k in exports.values_list("storage_key", flat=True) if k]
    exports.delete()
    _delete_keys(keys)
    return purged


def clean_orphans(now=None) -> dict:
    now = now or timezone.now()
    grace = now - timedelta(seconds=settings.RUNSTORE_ORPHAN_GRACE_SECONDS)
    removed = {"pending_uploads": 0, "blobs": 0, "objects": 0, "exports": 0}

    for pending in PendingUpload.objects.filter(created_at__lt=grace):
        if pending.multipart_id:
            storage.abort_multipart(pending.staging_key, pending.multipart_id)
        _delete_keys([pending.staging_key])
        pending.delete()
        removed["pending_uploads"] += 1

    unreferenced = Blob.objects.filter(
        created_at__lt=grace, uploads__isnull=True, entries__isnull=True, model_files__isnull=True
    )
    with transaction.atomic():
        keys = delete_unreferenced_blobs(unreferenced.values_list("pk", flat=True)[:10_000])
    _delete_keys(keys)
    removed["blobs"] = len(keys)

    for export in Export.objects.filter(created_at__lt=now - timedelta(days=EXPORT_KEEP_DAYS)):
        _delete_keys([export.storage_key] if export.storage_key else [])
        export.delete()
        removed["exports"] += 1

    # Stored objects without a row, e.g. saved just before a failed transaction or a crash.
    known_staging = set(PendingUpload.objects.values_list("staging_key", flat=True))
    known_exports = set(Export.objects.exclude(storage_key="").values_list("storage_key", flat=True))
    for prefix in ("blobs", "previews", "staging", "exports"):
        batch = []
        for key, _, modified in storage.list_keys(prefix):
            if modified is not None and modified >= grace:
                continue
            batch.append(key)
            if len(batch) >= 1000:
                removed["objects"] += _drop_unknown(prefix, batch, known_staging, known_exports)
                batch = []
        removed["objects"] += _drop_unknown(prefix, batch, known_staging, known_exports)
    return removed


def _drop_unknown(prefix, keys, known_staging, known_exports) -> int:
    if not keys:
        return 0
    if prefix == "blobs":
        shas = {k.rsplit("/", 1)[-1]: k for k in keys}
        known = set(Blob.objects.filter(pk__in=list(shas)).values_list("pk", flat=True))
        doomed = [k for sha, k in shas.items() if sha not in known]
    elif prefix == "previews":
        known = set(BlobPreview.objects.filter(storage_key__in=keys).values_list("storage_key", flat=True))
        doomed = [k for k in keys if k not in known]
    elif prefix == "staging":
        doomed = [k for k in keys if k not in known_staging]
    else:
        doomed = [k for k in keys if k not in known_exports]
    _delete_keys(doomed)
    return len(doomed)

"""Celery tasks of the runs app. Each is idempotent: running one twice, or again after
a worker was killed half way, finishes the work and counts nothing twice.

Queues (``tracker.celery``): ``rollup_series`` on ``ingest``, ``process_blob`` and
``preview_blob`` on ``media``, the rest on ``maintenance``.
"""

import logging
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from . import cleanup, exports, maintenance, processing, rollups, services, usage
from . import series as series_store

logger = logging.getLogger(__name__)

# Transient failures (lost connection, lock timeout, store hiccup) are retried with backoff.
RETRY: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": (OperationalError, InterfaceError, DatabaseError, ConnectionError, TimeoutError),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 8,
}


@shared_task(**RETRY)
def rollup_series(series_ids: list[int]) -> dict:
    """Pack the full blocks small appends left as rows, then write the final roll-up buckets, of
    these float series (all of them together: rollups.roll_up_many)."""
    series_store.pack_many(series_ids)
    done = rollups.roll_up_many(series_ids)
    return {str(sid): done[sid] for sid in series_ids}


@shared_task(**RETRY)
def sweep_rollups() -> int:
    """Roll up every series left behind (broker down when its batch committed, a lost task)."""
    stale = rollups.stale_series()
    series_store.pack_many(stale)
    rollups.roll_up_many(stale)
    return len(stale)


@shared_task(**RETRY)
def process_blob(sha256: str) -> str:
    """Verify and sniff one blob, then queue its preview."""
    return processing.process_blob(sha256, inline_previews=False)


# Previews decode untrusted files: a soft time limit well under the hard one (CELERY_TASK_TIME_LIMIT)
# stops one that runs too long, and processing records it as the preview's failure.
@shared_task(**RETRY, soft_time_limit=settings.RUNSTORE_MEDIA_SOFT_TIME_LIMIT)
def preview_blob(sha256: str) -> str:
    """Make the preview of one verified blob (thumbnail, notebook/source HTML, video poster)."""
    return processing.make_preview(sha256)


@shared_task(**RETRY)
def sweep_blobs() -> int:
    """Process blobs whose processing never ran (for example, enqueued while the broker was down)."""
    return processing.sweep()


@shared_task(**RETRY)
def purge_trash() -> int:
    """Purge runs that have been in the trash longer than RUNSTORE_TRASH_DAYS."""
    return cleanup.purge_expired()


@shared_task(**RETRY)
def mark_crashed_runs() -> int:
    """Mark crashed the running runs whose pings stopped RUNSTORE_CRASH_AFTER seconds ago."""
    return services.mark_crashed_runs()


@shared_task(**RETRY)
def purge_run(run_id: int) -> bool:
    return cleanup.purge_run(run_id)


@shared_task(**RETRY)
def refresh_usage(project_ids: list[int] | None = None) -> int:
    """Recompute the storage usage of the given projects, or of every project that changed since its last count."""
    return usage.refresh_usage(project_ids)


@shared_task(**RETRY)
def clean_orphans() -> dict:
    """Remove stored objects no row points at: abandoned direct uploads, unreferenced blobs, old exports."""
    return cleanup.clean_orphans()


@shared_task(**RETRY)
def build_export(export_id: str) -> str:
    return exports.build(export_id)


@shared_task(**RETRY)
def maintain_query_tables(after_write: bool = False) -> dict:
    """ANALYZE (and VACUUM where the visibility map fell behind) the query tables that bulk writes
    changed. A check queued by a write (``after_write``) waits for a pass already under way."""
    return maintenance.maintain(wait=after_write)

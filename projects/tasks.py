"""Celery tasks of the projects app (on the ``maintenance`` queue, ``tracker.celery``)."""

from celery import shared_task

from . import audit


@shared_task(acks_late=True)
def purge_audit() -> int:
    """Drop audit entries older than RUNSTORE_AUDIT_RETENTION_DAYS (daily, from beat); idempotent."""
    return audit.purge_expired()

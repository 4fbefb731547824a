"""The Celery app: background work on three queues, and the periodic maintenance schedule.

* ``ingest``       roll-ups of series after batches (short, frequent)
* ``media``        blob processing: hash check, type sniffing; thumbnails, previews (under a short
                   soft time limit, RUNSTORE_MEDIA_SOFT_TIME_LIMIT)
* ``maintenance``  storage accounting, trash purge, orphan clean-up, exports, sweeps, webhook deliveries

Production runs workers on Redis (``CELERY_BROKER_URL=redis://...``), e.g. one
``-Q ingest`` worker per few web processes and one ``-Q media,maintenance``;
the embedded mode (``make run``) runs one worker on all three queues with beat
inside it, on kombu's filesystem broker. Tasks are idempotent and acknowledged
late, so a worker killed mid-task leaves the message to be run again.
"""

import os

from celery import Celery, signals
from celery.schedules import crontab
from kombu import Exchange, Queue

from . import logs
from .env import env_choice, env_int

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")

# settings.RUNSTORE_MAINTENANCE_INTERVAL, read the same way: tracker.settings imports this module first
MAINTENANCE_INTERVAL = env_int("RUNSTORE_MAINTENANCE_INTERVAL", 10, minimum=1)

QUEUES = ("ingest", "media", "maintenance")

app = Celery("tracker")
app.config_from_object("django.conf:settings", namespace="CELERY")
# One direct exchange per queue: a message goes to exactly one queue.
app.conf.task_queues = [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES]
app.conf.update(
    task_default_queue="maintenance", task_default_exchange="maintenance", task_default_routing_key="maintenance"
)
app.conf.task_routes = {
    "runs.tasks.rollup_series": {"queue": "ingest"},
    "runs.tasks.process_blob": {"queue": "media"},
    "runs.tasks.preview_blob": {"queue": "media"},
    "runs.tasks.*": {"queue": "maintenance"},
    "runs.webhooks.tasks.*": {"queue": "maintenance"},  # webhook deliveries and their retries
    "projects.tasks.*": {"queue": "maintenance"},
}
app.conf.beat_schedule = {
    "sweep-rollups": {"task": "runs.tasks.sweep_rollups", "schedule": 300.0},
    "refresh-usage": {"task": "runs.tasks.refresh_usage", "schedule": 60.0},
    "mark-crashed-runs": {"task": "runs.tasks.mark_crashed_runs", "schedule": 60.0},
    "purge-trash": {"task": "runs.tasks.purge_trash", "schedule": crontab(minute=17)},
    "clean-orphans": {"task": "runs.tasks.clean_orphans", "schedule": crontab(minute=47)},
    "sweep-blobs": {"task": "runs.tasks.sweep_blobs", "schedule": 600.0},
    # the query tables' statistics and visibility map after bulk writes (runs/maintenance.py): a check
    # reads one statistics view, so it runs often and a bulk write's slow plans last seconds; a check
    # not started within its interval is dropped rather than queued behind a long VACUUM
    "maintain-query-tables": {
        "task": "runs.tasks.maintain_query_tables",
        "schedule": float(MAINTENANCE_INTERVAL),
        "options": {"expires": MAINTENANCE_INTERVAL},
    },
    "purge-audit": {"task": "projects.tasks.purge_audit", "schedule": crontab(hour=3, minute=27)},
}
app.autodiscover_tasks()

# The request id of the web request that queues a task travels with it (tracker/logs.py).
signals.before_task_publish.connect(logs.add_request_id_header, weak=False)
signals.task_prerun.connect(logs.bind_task_request_id, weak=False)
signals.task_postrun.connect(logs.unbind_task_request_id, weak=False)
if env_choice("RUNSTORE_LOG_FORMAT", "plain", ("plain", "json")) == "json":
    # Celery then leaves logging to Django's LOGGING: JSON lines from the workers and beat too.
    signals.setup_logging.connect(logs.configure_worker_logging, weak=False)

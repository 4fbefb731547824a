"""The Celery app with a fast schedule, for the beat tests of tests/test_deploy.py: its task is sent
to a queue of the test's own (named by RUNSTORE_TEST_BEAT_QUEUE), where no worker takes it."""

import os

from kombu import Exchange, Queue

from tracker.celery import app

_queue = os.environ["RUNSTORE_TEST_BEAT_QUEUE"]
app.conf.task_queues = [*app.conf.task_queues, Queue(_queue, Exchange(_queue, type="direct"), routing_key=_queue)]
app.conf.beat_schedule = {"tick": {"task": "runs.tasks.sweep_rollups", "schedule": 0.5, "options": {"queue": _queue}}}

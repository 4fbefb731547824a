"""A real Celery worker on Redis: tasks killed with SIGKILL are finished by a retry, and a task
delivered twice counts nothing twice."""

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from projects.models import ProjectUsage
from runs import rollups
from runs.ingest import apply_batch
from runs.models import Attribute, BlobInfo, BlobState, RollupCursor, SeriesRollup
from runs.usage import compute_usage

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent
# Kept for these tests and flushed before each; scripts/test.sh gives each suite running side by side its own.
REDIS_DB = int(os.environ.get("RUNSTORE_TEST_WORKER_REDIS_DB", "13"))


def _redis_url():
    base = os.environ.get("RUNSTORE_TEST_REDIS_URL")
    if not base:
        pytest.skip("RUNSTORE_TEST_REDIS_URL not set (make test starts Redis)")
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"/{REDIS_DB}", "", ""))


def _database_url():
    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        base = urlsplit(os.environ["DATABASE_URL"])
        return urlunsplit((base.scheme, base.netloc, f"/{settings['NAME']}", "", ""))
    name = settings["NAME"]
    if not name or name == ":memory:" or "mode=memory" in str(name):
        pytest.skip("the worker needs a file database: set RUNSTORE_TEST_SQLITE_NAME (scripts/test.sh does)")
    return f"sqlite:///{name}"


class Worker:
    def __init__(self, env, log):
        self.env, self.log, self.proc = env, log, None

    def start(self):
        name = f"test-{uuid.uuid4().hex[:8]}@%h"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(ROOT / ".venv/bin/celery"),
                    "-A",
                    "tracker",
                    "worker",
                    "-Q",
                    "ingest,media,maintenance",
                    "-c",
                    "1",
                    "-P",
                    "prefork",
                    "-n",
                    name,
                    "--without-gossip",
                    "--without-mingle",
                    "-l",
                    "INFO",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while b" ready." not in Path(self.log).read_bytes():
            assert self.proc.poll() is None, Path(self.log).read_text()[-3000:]
            assert time.monotonic() < deadline, "worker not ready in 30 s"
            time.sleep(0.1)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker_env(tmp_path, settings):
    import redis

    broker = _redis_url()
    redis.Redis.from_url(broker).flushdb()
    blob_dir = tmp_path / "blobs"
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(blob_dir)}},
    }
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": broker,
        "CELERY_VISIBILITY_TIMEOUT": "2",
        "RUNSTORE_BLOB_DIR": str(blob_dir),
        "RUNSTORE_STORAGE": "local",
        "RUNSTORE_ROLLUP_CHUNK_POINTS": "100",
        "RUNSTORE_TIMESCALEDB": "auto",
        "RUNSTORE_VAR_DIR": str(tmp_path / "var"),
    }
    return env


@pytest.fixture
def worker(worker_env, tmp_path):
    started = []

    def make():
        w = Worker(worker_env, tmp_path / "worker.log")
        w.start()
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop()


def send(task, *args):
    from tracker.celery import app

    with app.connection_for_write(_redis_url()) as conn:
        task.apply_async(args=list(args), connection=conn)


def wait_for(check, timeout=60, what="condition", interval=0.1):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def cursor_of(series_id):
    return RollupCursor.objects.filter(series_id=series_id).values_list("rolled_until", flat=True).first() or 0


def test_roll_up_killed_mid_task_is_finished_by_the_redelivery(run, worker, settings):
    from runs import tasks

    n = 100_000
    for seq, path in enumerate(["a", "b"]):
        apply_batch(
            run,
            stream="w",
            seq=seq,
            raw_ops=[{"op": "append", "path": path, "values": [float(i % 97) for i in range(n)]}],
        )
    a, b = Attribute.objects.get(run=run, path="a"), Attribute.objects.get(run=run, path="b")
    target = rollups.closed_until(n - 1)

    first = worker()
    send(tasks.rollup_series, [a.pk])
    wait_for(lambda: cursor_of(a.pk) > 0, what="the roll-up to start", interval=0.01)
    first.kill()  # SIGKILL in the middle: 1,000 chunks of 100 points, a few done
    stopped_at = cursor_of(a.pk)
    assert 0 < stopped_at < target, "the task finished before it could be killed; make it longer"

    worker()  # the unacknowledged message comes back after the visibility timeout
    wait_for(lambda: cursor_of(a.pk) == target, timeout=240, what="the redelivered roll-up")
    settings.RUNSTORE_ROLLUP_CHUNK_POINTS = 10**6
    rollups.roll_up(b.pk)  # the same series, rolled up in one go, in this process

    def rows(attr):
        return list(
            SeriesRollup.objects.filter(series=attr)
            .order_by("level", "bucket")
            .values_list(
                "level",
                "bucket",
                "min_value",
                "max_value",
                "sum_value",
                "finite_count",
                "count",
                "first_step",
                "last_step",
                "last_value",
            )
        )

    assert rows(a) == rows(b)
    assert sum(SeriesRollup.objects.filter(series=a, level=0).values_list("count", flat=True)) == target


def test_tasks_delivered_twice_count_nothing_twice(owner, run, project, worker):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from runs import services, tasks

    apply_batch(
        run,
        stream="w",
        seq=1,
        raw_ops=[
            {"op": "append", "path": "loss", "values": [1.0] * 1000},
            {"op": "append", "path": "log", "kind": "string", "values": ["a", "bb"]},
        ],
    )
    content = b"\x89PNG\r\n\x1a\n" + b"not really an image"
    upload = SimpleUploadedFile("x.png", content)
    import hashlib

    upload.sha256 = hashlib.sha256(content).hexdigest()
    blob = services.store_upload(owner, run, upload)
    loss = Attribute.objects.get(run=run, path="loss")
    worker()
    for _ in range(2):
        send(tasks.rollup_series, [loss.pk])
        send(tasks.refresh_usage, [project.pk])
        send(tasks.process_blob, blob.sha256)
    wait_for(lambda: BlobInfo.objects.filter(blob=blob, state=BlobState.READY).exists(), what="blob processing")
    wait_for(lambda: cursor_of(loss.pk) == 992, what="roll-up")
    wait_for(lambda: ProjectUsage.objects.filter(project=project).exists(), what="usage")
    time.sleep(1.5)  # let the second deliveries finish too
    usage = ProjectUsage.objects.get(project=project)
    exact = compute_usage(project.pk)
    assert {k: getattr(usage, k) for k in exact} == exact
    assert (usage.float_points, usage.string_points, usage.blob_bytes) == (1000, 2, len(content))
    assert sum(SeriesRollup.objects.filter(series=loss, level=0).values_list("count", flat=True)) == 992
    assert BlobInfo.objects.filter(blob=blob).count() == 1


@pytest.mark.django_db(transaction=False)
def test_every_scheduled_and_routed_task_is_registered_on_a_queue_the_worker_consumes():
    from tracker.celery import QUEUES, app

    app.loader.import_default_modules()
    registered = {name for name in app.tasks if not name.startswith("celery.")}
    for entry in app.conf.beat_schedule.values():
        assert entry["task"] in registered, f"beat schedules {entry['task']}, which no app registers"
    for pattern, route in app.conf.task_routes.items():
        prefix = pattern.removesuffix("*")
        assert any(name == pattern or (pattern.endswith("*") and name.startswith(prefix)) for name in registered), (
            f"route {pattern} matches no registered task"
        )
        assert route["queue"] in QUEUES
    routed = {name: app.amqp.router.route({}, name)["queue"].name for name in registered}
    assert set(routed.values()) <= set(QUEUES), routed


def test_a_real_worker_delivers_a_webhook_and_retries_it(
    owner, project, run, worker_env, worker, monkeypatch, settings
):
    """A 500 then a 200 from a local receiver: the worker's retry is queued with its countdown on the
    broker and delivered by the same worker; the log shows both attempts."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from runs.webhooks import services as webhook_services
    from runs.webhooks import tasks as webhook_tasks
    from runs.webhooks.models import Delivery

    answers, seen = [500, 200], []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(answers.pop(0) if answers else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    worker_env.update({"RUNSTORE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32", "RUNSTORE_WEBHOOK_RETRY_DELAY": "0.2"})
    monkeypatch.setattr(webhook_services, "_queue", lambda *args, **kwargs: None)  # sent to the test broker below
    try:
        settings.RUNSTORE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
        hook = webhook_services.create_webhook(
            owner, project, url=f"http://127.0.0.1:{server.server_address[1]}/", events=["run.created"]
        )
        delivery = webhook_services.enqueue_delivery(hook, "run.created", run=run, data={})
        worker()
        send(webhook_tasks.deliver, delivery.pk, True)
        wait_for(lambda: Delivery.objects.get(pk=delivery.pk).status == "succeeded", what="the delivery")
    finally:
        server.shutdown()
        server.server_close()
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and len(seen) == 2 and seen[0] == seen[1] == delivery.payload.encode()
    assert list(delivery.attempt_log.values_list("response_code", flat=True)) == [500, 200]

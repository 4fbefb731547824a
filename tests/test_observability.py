"""Structured JSON logs with the request id carried into Celery tasks, and the Prometheus endpoint."""

import json
import logging
from contextlib import contextmanager

import pytest
from django.test import Client

from projects import services as project_services
from runs.models import Attribute, RollupCursor

from .conftest import batch, client_for
from .test_worker import _redis_url, wait_for, worker, worker_env  # noqa: F401  (fixtures)


@contextmanager
def publishing_to(url):
    """Tasks queued in this process go to ``url`` (the worker's Redis) instead of the test broker."""
    from tracker.celery import app

    def reset():
        app._pool = None
        app.amqp._producer_pool = None

    old = app.conf.broker_url
    app.conf.broker_url = url
    reset()
    try:
        yield
    finally:
        app.conf.broker_url = old
        reset()


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.django_db(transaction=True)
def test_task_queued_by_a_request_logs_that_requests_id(owner, run, worker, worker_env, tmp_path):  # noqa: F811
    worker_env["RUNSTORE_LOG_FORMAT"] = "json"
    worker()
    request_id = "trace-4f2a9c"
    with publishing_to(_redis_url()):
        response = client_for(owner).post(
            f"/api/v1/runs/{run.project.workspace.slug}/{run.project.slug}/{run.human_id}/batch",
            {"stream": "s", "seq": 1, "ops": [{"op": "append", "path": "loss", "values": [1.0] * 16}]},
            format="json",
            HTTP_X_REQUEST_ID=request_id,
        )
    assert response.status_code == 200, response.content
    assert response["X-Request-ID"] == request_id
    loss = Attribute.objects.get(run=run, path="loss")
    wait_for(
        lambda: RollupCursor.objects.filter(series_id=loss.pk, rolled_until__gt=0).exists(), what="the roll-up task"
    )

    def task_lines():
        log = (tmp_path / "worker.log").read_text()
        return [
            e for e in json_lines(log) if "runs.tasks.rollup_series" in e["message"] and "succeeded" in e["message"]
        ]

    wait_for(task_lines, timeout=10, what="the task's log line")
    (line,) = task_lines()
    assert line["request_id"] == request_id
    assert {"time", "level", "logger", "message", "user", "path", "status", "duration"} <= set(line)


def test_json_request_line_has_path_status_duration_user_and_request_id(owner, settings, caplog):
    from tracker.logs import JsonFormatter

    settings.RUNSTORE_LOG_FORMAT = "json"
    client = Client()  # a new client loads the middleware with the setting
    client.force_login(owner)
    with caplog.at_level(logging.INFO, logger="runstore.request"):
        response = client.get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces")
    generated = response["X-Request-ID"]
    assert generated and generated != "bad id with spaces"  # an unsafe incoming id is replaced
    (record,) = [r for r in caplog.records if r.name == "runstore.request"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == generated
    assert (line["path"], line["status"], line["user"], line["level"]) == ("/healthz", 200, owner.username, "INFO")
    assert isinstance(line["duration"], float) and line["duration"] >= 0
    assert line["logger"] == "runstore.request" and line["time"].endswith("+00:00")


def test_plain_format_writes_no_request_lines(db, caplog):
    with caplog.at_level(logging.INFO, logger="runstore.request"):
        assert Client().get("/healthz").status_code == 200
    assert not [r for r in caplog.records if r.name == "runstore.request"]


# --- /metrics ----------------------------------------------------------------------------------

TOKEN = "metrics-secret-7c1d"


def scrape(client=None, **headers):
    from prometheus_client.parser import text_string_to_metric_families

    response = (client or Client()).get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_scrape_after_an_ingest_shows_the_counters_moved(owner_api, run, settings):
    settings.RUNSTORE_METRICS_TOKEN = TOKEN
    before = scrape()
    ops = [{"op": "append", "path": "loss", "values": [0.5] * 40}, {"op": "append", "path": "acc", "values": [1.0] * 2}]
    assert batch(owner_api, run, ops).status_code == 200
    assert batch(owner_api, run, ops).status_code == 200  # the same (stream, seq) again: a duplicate, no points
    project = f"{run.project.workspace.slug}/{run.project.slug}"
    assert owner_api.get("/api/v1/runs/", {"project": project, "query": "loss > 0"}).status_code == 200
    project_services.set_quota(run.project.workspace, by=None, storage_bytes=0)
    refused = batch(owner_api, run, [{"op": "append", "path": "loss", "values": [1.0]}], seq=2)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "quota_exceeded"
    from tracker.celery import app

    old = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens: /readyz answers 503
    try:
        assert Client().get("/readyz").status_code == 503
    finally:
        app.conf.broker_url = old
    after = scrape()

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("runstore_ingest_points_total") == 42
    assert moved("runstore_ingest_batches_total", result="applied") == 1
    assert moved("runstore_ingest_batches_total", result="duplicate") == 1
    assert moved("runstore_batch_seconds_count") == 2 and moved("runstore_batch_seconds_sum") > 0
    assert moved("runstore_query_seconds_count") >= 1
    assert moved("runstore_quota_rejections_total", quota="storage_bytes") == 1
    assert moved("runstore_http_server_errors_total", status="503") == 1
    # read at scrape time: the 40 points of loss closed two buckets nobody has rolled up (no worker here)
    assert value(after, "runstore_rollup_lag_series") >= 1 and value(after, "runstore_rollup_lag_steps") >= 32
    from tracker.celery import QUEUES

    if value(after, "runstore_celery_broker_up") == 1:
        for queue in QUEUES:
            assert ("runstore_celery_queue_length", (("queue", queue),)) in after


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Token {TOKEN}"])
def test_scrape_without_the_token_is_refused(settings, db, header):
    settings.RUNSTORE_METRICS_TOKEN = TOKEN
    response = Client().get("/metrics", **({"HTTP_AUTHORIZATION": header} if header else {}))
    assert response.status_code == 403
    assert response.json()["error"]["field"] == "Authorization"
    assert b"runstore_" not in response.content


def test_metrics_do_not_exist_unless_a_token_or_an_allow_list_is_set(db):
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 404


def test_allow_list_admits_listed_addresses_only(settings, db):
    settings.RUNSTORE_METRICS_ALLOW = ["10.1.0.0/16"]
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="10.2.0.1").get("/metrics").status_code == 403
    # an X-Forwarded-For from an untrusted peer does not make it a listed address
    assert Client(REMOTE_ADDR="192.0.2.7").get("/metrics", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 403


def test_queue_lengths_are_read_from_the_broker(settings, db, worker_env):  # noqa: F811
    from runs import tasks

    settings.RUNSTORE_METRICS_TOKEN = TOKEN
    with publishing_to(_redis_url()):
        tasks.rollup_series.delay([1])
        tasks.rollup_series.delay([2])
        tasks.sweep_blobs.delay()
        samples = scrape()
    assert value(samples, "runstore_celery_broker_up") == 1
    lengths = {q: value(samples, "runstore_celery_queue_length", queue=q) for q in ("ingest", "media", "maintenance")}
    assert lengths == {"ingest": 2, "media": 0, "maintenance": 1}

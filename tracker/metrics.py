"""Prometheus metrics at ``/metrics`` (prometheus-client), for a token or an allow-list only.

Counters and histograms are kept by the process that counts them; under gunicorn with
``PROMETHEUS_MULTIPROC_DIR`` set (deploy/gunicorn.conf.py) every worker writes them to files in
that folder and a scrape adds them up. Gauges are read at scrape time: the length of each Celery
queue from the broker (bounded by ``RUNSTORE_METRICS_BROKER_TIMEOUT``) and whatever the apps
register with :func:`register_gauges` (the roll-up lag, from ``runs``; tracker imports no app).

Access: ``Authorization: Bearer <RUNSTORE_METRICS_TOKEN>`` or a client address in
``RUNSTORE_METRICS_ALLOW`` (addresses or CIDR networks, read like every client address, see
``RUNSTORE_TRUSTED_PROXIES``). Neither set: the endpoint does not exist (404); set but not met: 403.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from . import context

logger = logging.getLogger(__name__)

# Every metric of ours lives here (not prometheus_client's global registry, which would add the
# process's own metrics, meaningless summed over gunicorn workers).
REGISTRY = CollectorRegistry(auto_describe=True)

INGEST_POINTS = Counter("runstore_ingest_points", "Series points ingested (rate() of it: points/s)", registry=REGISTRY)
INGEST_BATCHES = Counter("runstore_ingest_batches", "Batches received, by result", ["result"], registry=REGISTRY)
BATCH_SECONDS = Histogram(
    "runstore_batch_seconds",
    "Time to validate and apply one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
QUERY_SECONDS = Histogram(
    "runstore_query_seconds",
    "Time of one run query (run table, query API, charts, exports) under its budget",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
QUOTA_REJECTIONS = Counter(
    "runstore_quota_rejections", "Writes and requests refused by a quota, by quota", ["quota"], registry=REGISTRY
)
SERVER_ERRORS = Counter(
    "runstore_http_server_errors", "Responses with a 5xx status, by status", ["status"], registry=REGISTRY
)

_gauges: list[Callable[[], Iterable[Metric]]] = []


def register_gauges(collect: Callable[[], Iterable[Metric]]) -> None:
    """Add metrics read at scrape time (a callable yielding prometheus_client metric families)."""
    _gauges.append(collect)


def observe_batch(apply: Callable[..., dict]) -> Callable[..., dict]:
    """Wrap the batch engine: its time, and the points of each applied batch."""

    @functools.wraps(apply)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        result = apply(*args, **kwargs)
        BATCH_SECONDS.observe(time.perf_counter() - started)
        INGEST_BATCHES.labels("duplicate" if result.get("duplicate") else "applied").inc()
        INGEST_POINTS.inc(result.get("points") or 0)
        return result

    return wrapper


class ServerErrorMiddleware:
    """Counts every 5xx response (an unhandled exception has become a 500 by the time it gets here)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code >= 500:
            SERVER_ERRORS.labels(str(response.status_code)).inc()
        return response


# --- scrape ----------------------------------------------------------------------------------


def _queue_lengths() -> Iterable[Metric]:
    from tracker.celery import QUEUES, app

    timeout = settings.RUNSTORE_METRICS_BROKER_TIMEOUT
    up = GaugeMetricFamily("runstore_celery_broker_up", "1 when the broker answered this scrape")
    lengths = GaugeMetricFamily(
        "runstore_celery_queue_length", "Messages waiting in each Celery queue", labels=["queue"]
    )
    options = {
        **(app.conf.broker_transport_options or {}),
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    try:
        with app.connection_for_write(transport_options=options) as conn:
            conn.ensure_connection(max_retries=1, timeout=math.ceil(timeout))
            channel: Any = conn.default_channel  # a transport's channel: queue_declare is there
            for queue in QUEUES:
                try:
                    waiting = channel.queue_declare(queue=queue, passive=True).message_count
                except conn.channel_errors:  # not declared yet (an empty Redis list does not exist): empty
                    waiting = 0
                lengths.add_metric([queue], waiting)
    except Exception as exc:  # a scrape reports the broker down instead of failing
        logger.warning("metrics: the broker did not answer: %s", exc)
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    yield up
    yield lengths


class _ScrapeCollector:
    def collect(self):
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            yield from REGISTRY.collect()
        if settings.CELERY_BROKER_URL:
            yield from _queue_lengths()
        for collect in _gauges:
            try:
                yield from collect()
            except Exception as exc:
                logger.warning("metrics: %s failed: %s", getattr(collect, "__name__", collect), exc)


def _allowed(request) -> bool | None:
    """None: the endpoint is off; else whether this request may read it."""
    token, allow = settings.RUNSTORE_METRICS_TOKEN, settings.RUNSTORE_METRICS_ALLOW
    if not token and not allow:
        return None
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer "):
        if hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), token.encode()):
            return True
    if allow:
        address = context.client_address(request)
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(parsed in ipaddress.ip_network(net, strict=False) for net in allow)
    return False


def metrics_view(request):
    allowed = _allowed(request)
    if allowed is None:
        return JsonResponse(
            {
                "error": {
                    "status": 404,
                    "code": "not_found",
                    "message": "metrics are off (set RUNSTORE_METRICS_TOKEN or RUNSTORE_METRICS_ALLOW)",
                }
            },
            status=404,
        )
    if not allowed:
        return JsonResponse(
            {
                "error": {
                    "status": 403,
                    "code": "permission_denied",
                    "message": "metrics need the bearer token RUNSTORE_METRICS_TOKEN or an address in RUNSTORE_METRICS_ALLOW",
                    "field": "Authorization",
                }
            },
            status=403,
        )
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    registry.register(_ScrapeCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

"""gunicorn settings for Runstore's web tier, every value from the environment.

    gunicorn -c deploy/gunicorn.conf.py tracker.wsgi:application

Web processes are stateless: run this on as many hosts as needed behind a load balancer.
"""

import multiprocessing
import os
import shutil
from pathlib import Path


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = _int("GUNICORN_WORKERS", 2 * multiprocessing.cpu_count() + 1)
threads = _int("GUNICORN_THREADS", 4)
worker_class = "gthread"
timeout = _int("GUNICORN_TIMEOUT", 60)  # a batch or query past it is killed; queries have their own budget
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)  # seconds; keep it above the load balancer's idle timeout
max_requests = _int("GUNICORN_MAX_REQUESTS", 10_000)
max_requests_jitter = max_requests // 10
# Runstore logs each request itself (RUNSTORE_LOG_FORMAT=json gives one JSON line per request).
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# The proxy in front terminates TLS and sets X-Forwarded-*; Django decides what to trust
# (RUNSTORE_TRUSTED_PROXIES, RUNSTORE_SECURE_PROXY_SSL_HEADER).
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
preload_app = False  # each worker opens its own database connections

if os.environ.get("RUNSTORE_LOG_FORMAT", "").strip().lower() == "json":
    # gunicorn's own lines (start, worker boot and timeouts) as JSON too, like Django's and Celery's.
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "tracker.logs.JsonFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {
            "gunicorn.error": {"handlers": ["console"], "level": loglevel.upper(), "propagate": False},
            # the request line comes from Runstore (logger runstore.request, with the request id)
            "gunicorn.access": {
                "handlers": ["console"],
                "level": "INFO" if accesslog else "WARNING",
                "propagate": False,
            },
        },
    }


def on_starting(server):
    # Prometheus multi-process mode: every worker writes its metrics to files in this folder,
    # /metrics adds them up. Stale files from an earlier run would count twice: start empty.
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        Path(folder).mkdir(parents=True, exist_ok=True)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

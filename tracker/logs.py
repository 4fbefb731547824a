"""Structured logs: one JSON object per line, with the request id from the web request to the Celery
tasks it queues.

``RUNSTORE_LOG_FORMAT=json`` makes every log record (Django's, Runstore's, gunicorn's error log
and Celery's in the workers) a JSON line with ``time``, ``level``, ``logger``, ``message``,
``request_id``, ``user``, ``path``, ``status`` and ``duration`` (milliseconds; the last four on
the one line :class:`RequestLogMiddleware` writes per request). The request id is the one
``tracker.context`` holds (a sane incoming ``X-Request-ID``, else a new one); a task queued while
a request is served carries it in a message header and logs under it while it runs.
"""

from __future__ import annotations

import json
import logging
import time
from contextvars import Token
from datetime import UTC, datetime

from . import context

REQUEST_ID_HEADER = "runstore_request_id"  # the Celery message header
request_logger = logging.getLogger("runstore.request")

_FIELDS = ("user", "path", "status", "duration")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        elif record.stack_info:
            message = f"{message}\n{self.formatStack(record.stack_info)}"
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "request_id": getattr(record, "request_id", None) or context.current().request_id or None,
        }
        for name in _FIELDS:
            entry[name] = getattr(record, name, None)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _user_name(request) -> str | None:
    user = getattr(request, "user", None)  # set by the auth middleware, or DRF's token authentication
    try:
        return user.get_username() if user is not None and user.is_authenticated else None
    except Exception:  # the session store may be what failed
        return None


class RequestLogMiddleware:
    """One log line per request (logger ``runstore.request``) with path, status, duration and user,
    when ``RUNSTORE_LOG_FORMAT=json`` (the plain format leaves access lines to gunicorn)."""

    def __init__(self, get_response):
        from django.conf import settings

        self.get_response = get_response
        self.enabled = settings.RUNSTORE_LOG_FORMAT == "json"

    def __call__(self, request):
        if not self.enabled:
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        duration = round((time.perf_counter() - started) * 1000, 2)
        level = logging.ERROR if response.status_code >= 500 else logging.INFO
        request_logger.log(
            level,
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "request_id": context.current().request_id,
                "path": request.path,
                "status": response.status_code,
                "duration": duration,
                "user": _user_name(request),
            },
        )
        return response


# --- Celery: the request id travels in a message header ------------------------------------


def add_request_id_header(headers=None, **kwargs) -> None:
    """``before_task_publish``: stamp the message with the id of the request that queues it."""
    request_id = context.current().request_id
    if request_id and headers is not None and REQUEST_ID_HEADER not in headers:
        headers[REQUEST_ID_HEADER] = request_id


_task_tokens: dict[str, Token[context.RequestContext]] = {}


def bind_task_request_id(task_id=None, task=None, **kwargs) -> None:
    """``task_prerun``: the task runs (and logs) under the request id its message carries."""
    request_id = getattr(getattr(task, "request", None), REQUEST_ID_HEADER, None)
    if task_id and isinstance(request_id, str) and request_id:
        _task_tokens[task_id] = context.bind_request_id(request_id)


def unbind_task_request_id(task_id=None, **kwargs) -> None:
    token = _task_tokens.pop(task_id, None) if task_id else None
    if token is not None:
        context.unbind(token)


def configure_worker_logging(**kwargs) -> None:
    """``setup_logging``: in JSON mode the workers log through Django's ``LOGGING`` (JSON lines)
    instead of Celery's own format."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)

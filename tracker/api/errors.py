"""One JSON error shape for every API failure: ``{"error": {"status", "code", "message", ...}}``."""

import sys

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponse, HttpResponseBadRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response

from tracker.params import ParameterError


class ApiError(Exception):
    """An error the API reports as JSON: ``{"error": {"status", "code", "message", ...}}``."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict | None = None, **details):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = {k: v for k, v in details.items() if v is not None}

    def as_dict(self) -> dict:
        return {"status": self.status, "code": self.code, "message": self.message, **self.details}


def _first_message(detail) -> tuple[str | None, str]:
    """Find the first (field path, message) in a DRF error detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            field, message = _first_message(value)
            name = key if key != "non_field_errors" else None
            if field and name:
                return f"{name}.{field}", message
            return (name or field), message
    if isinstance(detail, list) and detail:
        for index, item in enumerate(detail):
            if item:
                field, message = _first_message(item)
                if isinstance(item, (dict, list)) and len(detail) > 1:
                    field = f"[{index}]" + (f".{field}" if field else "")
                return field, message
    return None, str(detail)


BUSY_RETRY_AFTER = 2  # seconds
# PostgreSQL SQLSTATEs of a write that lost a race for a lock: retrying the request succeeds.
_BUSY_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available


def is_busy(exc) -> bool:
    """Whether ``exc`` is the database refusing for now (SQLite's lock, PostgreSQL's lock conflicts)."""
    if not isinstance(exc, OperationalError):
        return False
    if "database is locked" in str(exc) or "database table is locked" in str(exc):
        return True
    return getattr(exc.__cause__, "sqlstate", None) in _BUSY_SQLSTATES


UNAVAILABLE_RETRY_AFTER = 2  # seconds
# PostgreSQL SQLSTATEs of a server that is not there for now: a connection exception (class 08), shut
# down by an administrator or a crash, starting up, out of connection slots.
_UNAVAILABLE_SQLSTATES = {"57P01", "57P02", "57P03", "53300"}


def is_unavailable(exc) -> bool:
    """Whether ``exc`` is the database being unreachable (restarting, failed over, out of connections),
    which the client should retry, as opposed to a defect: a 503 with Retry-After, never a 500."""
    if isinstance(exc, InterfaceError):  # Django's "connection already closed"
        return True
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate:
        return sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES
    if type(cause).__module__.startswith("psycopg"):
        return True  # no SQLSTATE: the connection itself failed (refused, closed by the server)
    return "unable to open database file" in str(exc) or "disk I/O error" in str(exc)  # SQLite's file


def unavailable_body(path: str) -> dict:
    message = "the database is unavailable for now (restarting or unreachable); retry shortly"
    if path.startswith("/api/2.0/mlflow"):
        return {"error_code": "TEMPORARILY_UNAVAILABLE", "message": message}
    return error_body(503, "unavailable", message, retry_after=UNAVAILABLE_RETRY_AFTER)


def error_body(status: int, code: str, message: str, **details) -> dict:
    return {"error": {"status": status, "code": code, "message": message, **details}}


def exception_handler(exc, context):
    if isinstance(exc, ApiError):
        return Response({"error": exc.as_dict()}, status=exc.status, headers=exc.headers)
    if isinstance(exc, ParameterError):
        return Response(error_body(400, "invalid", exc.message, field=exc.name), status=400)
    if isinstance(exc, RequestDataTooBig):
        # Django refuses to read a body above DATA_UPLOAD_MAX_MEMORY_SIZE (the batch limit).
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            error_body(413, "body_too_large", f"request body is larger than {limit} bytes", field="body"), status=413
        )
    if is_busy(exc):
        return Response(
            error_body(
                503,
                "busy",
                "the database is busy (a lock is held by other writes); retry shortly",
                retry_after=BUSY_RETRY_AFTER,
            ),
            status=503,
            headers={"Retry-After": str(BUSY_RETRY_AFTER)},
        )
    if is_unavailable(exc):
        request = context.get("request")
        return Response(
            unavailable_body(request.path if request is not None else "/api/"),
            status=503,
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
        )
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return Response(error_body(400, "invalid", f"body: {exc}", field="body"), status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "not found")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "permission denied")
    elif isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    if not isinstance(exc, exceptions.APIException):
        return None
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc, exceptions.ValidationError):
        field, message = _first_message(exc.detail)
        text = f"{field}: {message}" if field else message
        body = error_body(exc.status_code, "invalid", text, field=field, fields=exc.detail)
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        body = error_body(exc.status_code, code, str(exc.detail))
    return Response(body, status=exc.status_code, headers=headers)


def json_not_found(request, exception=None):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(404, "not_found", f"no API endpoint at {request.path}"), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def json_bad_request(request, exception=None):
    if request.path.startswith("/api/"):
        if isinstance(exception, RequestDataTooBig):
            body = error_body(
                413,
                "body_too_large",
                f"request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes",
                field="body",
            )
            return JsonResponse(body, status=413)
        field = getattr(exception, "name", None)
        return JsonResponse(error_body(400, "bad_request", str(exception) or "bad request", field=field), status=400)
    if isinstance(exception, ParameterError):
        return HttpResponseBadRequest(f"Bad request: {exception.message}", content_type="text/plain; charset=utf-8")
    from django.views.defaults import bad_request

    return bad_request(request, exception)


def json_server_error(request):
    # Django calls this inside its ``except`` block: the exception is still the one being handled.
    if is_unavailable(sys.exc_info()[1]):
        retry = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)}
        if request.path.startswith("/api/"):
            return JsonResponse(unavailable_body(request.path), status=503, headers=retry)
        return HttpResponse(
            "Runstore's database is unavailable for a moment (restarting or unreachable). Try again shortly.",
            status=503,
            content_type="text/plain; charset=utf-8",
            headers=retry,
        )
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(500, "server_error", "internal error; it has been logged"), status=500)
    from django.views.defaults import server_error

    return server_error(request)

"""One JSON error shape for every API failure: ``{"error": {"status", "code", "message", ...}}``."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response

from runs.errors import ApiError


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


def error_body(status: int, code: str, message: str, **details) -> dict:
    return {"error": {"status": status, "code": code, "message": message, **details}}


def exception_handler(exc, context):
    if isinstance(exc, ApiError):
        return Response({"error": exc.as_dict()}, status=exc.status)
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


def json_server_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(500, "server_error", "internal error; it has been logged"), status=500)
    from django.views.defaults import server_error

    return server_error(request)

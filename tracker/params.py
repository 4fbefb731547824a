"""Integer parameters of UI pages and API endpoints, read one way: a malformed or out-of-range
value is a 400 that names the parameter, never a 404 and never an overflow deeper down."""

from django.core.exceptions import BadRequest

INT64_MAX = 2**63 - 1


class ParameterError(BadRequest):
    """A request parameter is malformed; the API renders it as JSON, the UI as a short 400 page."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = f"{name}: {message}"


def int_param(
    params, name: str, default: int | None = None, *, minimum: int = 0, maximum: int = INT64_MAX
) -> int | None:
    """``params[name]`` as an integer in ``[minimum, maximum]``; ``default`` when absent or empty."""
    raw = params.get(name)
    if raw in (None, ""):
        return default
    text = str(raw).strip()
    if len(text) > 20 or not text.lstrip("-").isdigit():
        raise ParameterError(name, f"must be an integer from {minimum} to {maximum}, got {text[:30]!r}")
    value = int(text)
    if not minimum <= value <= maximum:
        raise ParameterError(name, f"must be an integer from {minimum} to {maximum}, got {value}")
    return value


class RejectNulMiddleware:
    """A NUL byte in the path is a 400 naming it, for every route: PostgreSQL refuses NUL in text, so
    a look-up by a path parameter holding one would otherwise end in a database error. (Query
    parameters are checked where they are read, which can say more, e.g. the query's position.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path:
            raise ParameterError("path", "contains a NUL byte")
        return self.get_response(request)

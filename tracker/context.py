"""Who is asking, per request: the client's address, user agent, request id and API token prefix.

:class:`RequestContextMiddleware` fills a context variable at the start of each
request and restores the previous value at its end; anything that runs inside
the request (services, signal receivers, the audit log) reads it with
:func:`current`, without a request object passed down. Outside a request every
value is empty.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from functools import lru_cache

from django.conf import settings

USER_AGENT_MAX_CHARS = 300
REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept only if it is a short token that is safe in logs and headers.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


@dataclass(frozen=True)
class RequestContext:
    address: str = ""
    user_agent: str = ""
    request_id: str = ""
    token_prefix: str = ""


_EMPTY = RequestContext()
_current: ContextVar[RequestContext] = ContextVar("runstore_request_context", default=_EMPTY)


def current() -> RequestContext:
    """The context of the request being served (empty values outside a request)."""
    return _current.get()


def bind_request_id(request_id: str) -> Token[RequestContext]:
    """Run what follows under ``request_id`` (a Celery task queued by a request); undo with :func:`unbind`."""
    return _current.set(replace(_current.get(), request_id=request_id))


def unbind(token: Token[RequestContext]) -> None:
    try:
        _current.reset(token)
    except ValueError:  # set in another context (a thread pool's other thread): nothing of ours to undo
        pass


def set_token_prefix(prefix: str) -> None:
    """Record the prefix of the API token the request presented (set by the token authentication)."""
    _current.set(replace(_current.get(), token_prefix=prefix))


@lru_cache(maxsize=8)
def _trusted_networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def client_address(request) -> str:
    """The client's IP address: the peer's, or, when the peer is a trusted proxy, the nearest
    untrusted address of ``X-Forwarded-For`` (read from the right, the part our proxies wrote)."""
    peer = _ip(request.META.get("REMOTE_ADDR", ""))
    if peer is None:
        return ""
    trusted = _trusted_networks(tuple(getattr(settings, "RUNSTORE_TRUSTED_PROXIES", ())))
    if not trusted or not any(peer in net for net in trusted):
        return str(peer)
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    address = peer
    for hop in reversed(hops):
        parsed = _ip(hop)
        if parsed is None:
            break  # a malformed hop: keep the last address a trusted proxy vouched for
        address = parsed
        if not any(parsed in net for net in trusted):
            break
    return str(address)


def _request_id(request) -> str:
    incoming = request.META.get("HTTP_X_REQUEST_ID", "")
    if incoming and _SAFE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def context_for(request) -> RequestContext:
    return RequestContext(
        address=client_address(request),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:USER_AGENT_MAX_CHARS],
        request_id=_request_id(request),
    )


class RequestContextMiddleware:
    """Sets :func:`current` for the request and echoes its id in the ``X-Request-ID`` response header."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        context = context_for(request)
        reset = _current.set(context)
        try:
            response = self.get_response(request)
        finally:
            _current.reset(reset)
        response[REQUEST_ID_HEADER] = context.request_id
        return response

"""Read-only work on a read replica, and every client reading its own writes.

With ``DATABASE_REPLICA_URL`` set, the database alias ``replica`` exists and reads made inside
:func:`replica_reads` go to it: the run table, the query engine (run lists, groups, suggestions,
fields, exports; everything under ``runs.query.query_budget``) and chart series reads. Everything
else, and every write, uses the primary (``default``).

A client that has just written reads from the primary for ``RUNSTORE_REPLICA_PIN_SECONDS``, so
it sees what it wrote although the replica may lag: a successful request with an unsafe method
(POST, PUT, PATCH, DELETE) pins it, through a cookie for browsers and session clients, and through
a short-lived key per API token (in Redis when there is one, else the Django cache) for tokens.
Requests with an unsafe method, and reads inside a transaction on the primary, never use the
replica. Celery tasks (no request) read from the replica inside :func:`replica_reads`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from . import context

REPLICA = "replica"
PIN_COOKIE = "runstore_primary_until"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

logger = logging.getLogger(__name__)


@dataclass
class _RequestPin:
    pinned: bool  # an unsafe method, or a pin cookie still valid
    token_checked: str = ""  # the token prefix whose pin was looked up


_scope: ContextVar[bool] = ContextVar("runstore_replica_reads", default=False)
_request: ContextVar[_RequestPin | None] = ContextVar("runstore_replica_request", default=None)


def replica_configured() -> bool:
    return REPLICA in connections.settings


@contextmanager
def replica_reads() -> Iterator[None]:
    """Reads made inside this block may go to the replica (read-only work only)."""
    token = _scope.set(True)
    try:
        yield
    finally:
        _scope.reset(token)


def _pin_key(prefix: str) -> str:
    return f"runstore:replica-pin:{prefix}"


@cache
def _redis(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)


def _pin_token(prefix: str, seconds: int) -> None:
    url = settings.RUNSTORE_REPLICA_PIN_REDIS_URL
    try:
        if url:
            _redis(url).set(_pin_key(prefix), 1, ex=seconds)
        else:
            from django.core.cache import cache as django_cache

            django_cache.set(_pin_key(prefix), 1, seconds)
    except Exception as exc:  # the token then may read the replica; the write itself stands
        logger.warning("could not pin token %s to the primary: %s", prefix, exc)


def _token_pinned(prefix: str) -> bool:
    url = settings.RUNSTORE_REPLICA_PIN_REDIS_URL
    try:
        if url:
            return bool(_redis(url).exists(_pin_key(prefix)))
        from django.core.cache import cache as django_cache

        return django_cache.get(_pin_key(prefix)) is not None
    except Exception as exc:  # unknown: read the primary, which is never stale
        logger.warning("could not read the replica pin of token %s: %s", prefix, exc)
        return True


def _pinned() -> bool:
    state = _request.get()
    if state is None:
        return False  # no request: a Celery task or a command
    if state.pinned:
        return True
    prefix = context.current().token_prefix
    if prefix and state.token_checked != prefix:
        state.token_checked = prefix
        state.pinned = _token_pinned(prefix)
    return state.pinned


def read_alias() -> str:
    """The alias read-only work should read from now: the replica unless it is absent, this client
    is pinned to the primary, or the primary is inside a transaction (which may hold unseen writes)."""
    if not replica_configured() or connections[DEFAULT_DB_ALIAS].in_atomic_block or _pinned():
        return DEFAULT_DB_ALIAS
    return REPLICA


class ReplicaRouter:
    """``DATABASE_ROUTERS``: reads inside :func:`replica_reads` go to :func:`read_alias`."""

    def db_for_read(self, model, **hints):
        if _scope.get() and replica_configured():
            return read_alias()
        return None

    def db_for_write(self, model, **hints):
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        return {obj1._state.db, obj2._state.db} <= {DEFAULT_DB_ALIAS, REPLICA, None} or None

    def allow_migrate(self, db, app_label, **hints):
        return db != REPLICA  # the replica follows the primary; nothing migrates it


class ReplicaPinMiddleware:
    """Decides per request whether reads are pinned to the primary, and pins a client after its writes."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not replica_configured():
            return self.get_response(request)
        unsafe = request.method not in SAFE_METHODS
        try:
            until = float(request.COOKIES.get(PIN_COOKIE, "0"))
        except ValueError:
            until = 0.0
        state = _RequestPin(pinned=unsafe or until > time.time())
        token = _request.set(state)
        try:
            response = self.get_response(request)
        finally:
            _request.reset(token)
        if unsafe and response.status_code < 400:
            seconds = settings.RUNSTORE_REPLICA_PIN_SECONDS
            prefix = context.current().token_prefix
            if prefix:
                _pin_token(prefix, seconds)
            else:
                response.set_cookie(
                    PIN_COOKIE,
                    f"{time.time() + seconds:.3f}",
                    max_age=seconds,
                    secure=settings.SESSION_COOKIE_SECURE,
                    httponly=True,
                    samesite="Lax",
                )
        return response

"""Request-rate limits: token buckets per API token (or session user) and per workspace.

:class:`RequestRateThrottle` is a DRF throttle (``REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"]``).
Every authenticated API request takes one token from its caller's bucket (the API token, or the
user of a session) and, when the request concerns a workspace whose
``workspace_requests_per_second`` is set, one from the workspace's bucket too: both or neither.
A bucket holds up to ``burst`` tokens and refills at ``requests_per_second``; the workspace's
:class:`~projects.models.WorkspaceQuota` overrides the installation defaults (``RUNSTORE_QUOTA_*``).
A request concerns a workspace when its token is bound to one, or its URL names one (the view
arguments ``workspace``/``workspace_slug``, or a run reference ``workspace/project/KEY-N``).

The buckets are shared by every web process: in Redis when one is configured (one ``EVALSHA``
refills and takes from all of a request's buckets atomically, on Redis's clock), else in the
database (:class:`~projects.models.RateBucket`: one conditional ``UPDATE`` per bucket, which locks
that bucket's row only, so unrelated tokens never wait on each other). A bucket store that fails
(Redis down, the database locked) lets the request through with a logged warning: rate limiting
never turns into a 500.

Over a bucket: 429 ``rate_limited`` with ``Retry-After`` (whole seconds, at least 1) and
``RateLimit-Limit`` (the burst), ``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until the
bucket is full); allowed API responses carry the ``RateLimit-*`` headers too
(:class:`RateLimitHeadersMiddleware`).
"""

import logging
import math
import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from rest_framework.throttling import BaseThrottle

from tracker import metrics
from tracker.api.errors import ApiError

from . import permissions, quotas
from .models import RateBucket

log = logging.getLogger(__name__)

WARN_EVERY = 60.0  # seconds between two warnings about a failing bucket store, per process
_last_warning = 0.0


@dataclass(frozen=True)
class Bucket:
    key: str
    rate: float  # tokens per second
    burst: int
    what: str  # for messages: "API token 3f9c1a2b", "workspace acme"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the binding bucket is full again
    retry_after: int  # seconds until a request would be allowed (refused requests)
    bucket: Bucket

    def headers(self) -> dict:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


def decide(buckets: list[Bucket], levels: list[float], allowed: bool) -> Decision:
    """The answer and its headers, from each bucket's level after the request (or, refused, before)."""
    if allowed:
        # The headers describe the bucket closest to refusing.
        level, bucket = min(zip(levels, buckets, strict=True), key=lambda pair: pair[0] / pair[1].burst)
        retry_after = 0
    else:
        empty = [(level, bucket) for level, bucket in zip(levels, buckets, strict=True) if level < 1]
        level, bucket = max(empty, key=lambda pair: (1 - pair[0]) / pair[1].rate)
        retry_after = max(1, math.ceil((1 - level) / bucket.rate))
    level = max(0.0, level)
    return Decision(
        allowed=allowed,
        limit=bucket.burst,
        remaining=math.floor(level),
        reset=max(0, math.ceil((bucket.burst - level) / bucket.rate)),
        retry_after=retry_after,
        bucket=bucket,
    )


# --- the stores -------------------------------------------------------------

# KEYS: the buckets; ARGV: a time-to-live margin (ms), then rate and burst of each bucket.
# Returns {allowed (1/0), level of each bucket as a string} (Lua numbers would be truncated).
_TAKE_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local margin = tonumber(ARGV[1])
local levels = {}
local allowed = 1
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'updated')
  local tokens = tonumber(state[1])
  local updated = tonumber(state[2])
  if tokens == nil or updated == nil then
    tokens = burst
    updated = now
  end
  tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
  levels[i] = tokens
  if tokens < 1 then allowed = 0 end
end
local out = {allowed}
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  if allowed == 1 then levels[i] = levels[i] - 1 end
  redis.call('HSET', KEYS[i], 'tokens', tostring(levels[i]), 'updated', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate * 1000) + margin)
  out[i + 1] = tostring(levels[i])
end
return out
"""


def redis_url() -> str:
    """RUNSTORE_RATE_LIMIT_REDIS_URL, else the Celery broker when it is Redis; "" for the database."""
    url = getattr(settings, "RUNSTORE_RATE_LIMIT_REDIS_URL", "")
    if url:
        return url
    broker = getattr(settings, "CELERY_BROKER_URL", "") or ""
    return broker if broker.startswith(("redis://", "rediss://", "unix://")) else ""


@cache
def _redis_script(url: str):
    import redis

    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30)
    return client.register_script(_TAKE_SCRIPT)


def _redis_errors() -> tuple:
    try:
        import redis.exceptions
    except ImportError:
        return ()
    return (redis.exceptions.RedisError, OSError)


def take_redis(url: str, buckets: list[Bucket]) -> tuple[bool, list[float]]:
    prefix = settings.RUNSTORE_RATE_LIMIT_KEY_PREFIX
    args: list = [1000]
    for bucket in buckets:
        args += [repr(float(bucket.rate)), bucket.burst]
    result = _redis_script(url)(keys=[prefix + b.key for b in buckets], args=args)
    return bool(int(result[0])), [float(level) for level in result[1:]]


class _Refused(Exception):
    pass


def take_database(buckets: list[Bucket]) -> tuple[bool, list[float]]:
    """Take one token from every bucket or from none; (allowed, each bucket's level)."""
    own = not connection.in_atomic_block  # the transaction is this function's own
    if len(buckets) == 1 and not (own and connection.vendor == "postgresql"):
        level, ok = _take_row(buckets[0], time.time())
        return ok, [level]
    now = time.time()
    levels: dict[str, float] = {}
    try:
        with transaction.atomic():
            if own and connection.vendor == "postgresql":
                # A bucket's level is not worth a WAL flush on every request (~5 ms with fdatasync
                # here, against 0.4 ms without): a database crash forgets at most the last takes.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit = off")
            # Rows are locked in key order, so two requests never wait on each other crosswise.
            for bucket in sorted(buckets, key=lambda b: b.key):
                level, ok = _take_row(bucket, now)
                if not ok:
                    levels[bucket.key] = level
                    raise _Refused
                levels[bucket.key] = level + 1  # as it was before: a refusal rolls the takes back
    except _Refused:
        return False, [levels.get(b.key, float(b.burst)) for b in buckets]
    return True, [levels[b.key] - 1 for b in buckets]


def _take_row(bucket: Bucket, now: float) -> tuple[float, bool]:
    table = connection.ops.quote_name(RateBucket._meta.db_table)
    least, greatest = ("LEAST", "GREATEST") if connection.vendor == "postgresql" else ("MIN", "MAX")
    refilled = f"{least}(%s, {table}.tokens + {greatest}(0, %s - {table}.updated) * %s)"
    rate, burst = float(bucket.rate), float(bucket.burst)
    with connection.cursor() as cursor:
        # One statement creates a full bucket or refills the one there and takes a token, locking
        # this bucket's row only; it returns no row when the bucket is empty.
        cursor.execute(
            f"INSERT INTO {table} (key, tokens, updated) VALUES (%s, %s, %s) ON CONFLICT (key) DO UPDATE "
            f"SET tokens = {refilled} - 1, updated = {greatest}({table}.updated, %s) "
            f"WHERE {refilled} >= 1 RETURNING tokens",
            [bucket.key, burst - 1, now, burst, now, rate, now, burst, now, rate],
        )
        row = cursor.fetchone()
        if row is not None:
            return row[0], True
        cursor.execute(f"SELECT tokens, updated FROM {table} WHERE key = %s", [bucket.key])
        tokens, updated = cursor.fetchone()
    return min(burst, tokens + max(0.0, now - updated) * rate), False


def take(buckets: list[Bucket]) -> Decision | None:
    """Take from ``buckets`` in the configured store; ``None`` when the store failed (let it through)."""
    url = redis_url()
    try:
        allowed, levels = take_redis(url, buckets) if url else take_database(buckets)
    except (DatabaseError, *_redis_errors()) as exc:  # the store failed: let requests through, a 500 is worse
        _warn(f"request rate limits are not enforced: the bucket store failed ({type(exc).__name__}: {exc})")
        return None
    return decide(buckets, levels, allowed)


def _warn(message: str) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= WARN_EVERY or _last_warning == 0.0:
        _last_warning = now
        log.warning(message)


# --- which buckets a request takes from ---------------------------------------


def _workspace_slug(view) -> str | None:
    kwargs = getattr(view, "kwargs", None) or {}
    slug = kwargs.get("workspace") or kwargs.get("workspace_slug")
    if slug:
        return getattr(slug, "slug", slug)
    ref = kwargs.get("run_ref")
    if isinstance(ref, str) and ref.count("/") == 2:
        return ref.split("/", 1)[0]
    return None


def buckets_for(request, view) -> list[Bucket]:
    user = request.user
    if not getattr(user, "is_authenticated", False):
        return []
    token = request.auth if hasattr(request.auth, "prefix") else None
    limits = permissions.token_limits(user) if token is not None else None
    binding = limits.workspace_id if limits is not None else None
    workspace_id, slug, effective = quotas.rate_limits(
        workspace_id=binding, slug=None if binding else _workspace_slug(view)
    )
    rate, burst = effective.requests_per_second, effective.burst
    buckets = []
    if rate and burst:
        if token is not None:
            buckets.append(Bucket(f"token:{token.pk}:{token.prefix}", rate, burst, f"API token {token.prefix}"))
        else:
            buckets.append(Bucket(f"user:{user.pk}", rate, burst, f"user {user.get_username()}"))
    ws_rate = effective.workspace_requests_per_second
    if workspace_id is not None and ws_rate:
        # A workspace's burst scales with its rate as a token's does with its own.
        ws_burst = max(1, math.ceil(ws_rate * (burst / rate))) if rate and burst else max(1, math.ceil(ws_rate))
        buckets.append(Bucket(f"workspace:{workspace_id}", ws_rate, ws_burst, f"workspace {slug}"))
    return buckets


class RequestRateThrottle(BaseThrottle):
    """Token buckets per API token (or session user) and per workspace; see the module docstring."""

    def allow_request(self, request, view) -> bool:
        buckets = buckets_for(request, view)
        if not buckets:
            return True
        decision = take(buckets)
        if decision is None:
            return True
        request._request.rate_limit_headers = decision.headers()
        if decision.allowed:
            return True
        bucket = decision.bucket
        metrics.QUOTA_REJECTIONS.labels("requests_per_second").inc()
        raise ApiError(
            429,
            "rate_limited",
            f"{bucket.what} is over its request rate of {bucket.rate:g}/s (bursts of {bucket.burst}); "
            f"retry in {decision.retry_after} s",
            headers=decision.headers(),
            retry_after=decision.retry_after,
            limit=bucket.burst,
            rate=bucket.rate,
        )

    def wait(self):
        return None


class RateLimitHeadersMiddleware:
    """Adds the ``RateLimit-*`` headers the throttle decided to the API response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        headers = getattr(request, "rate_limit_headers", None)
        if headers:
            for name, value in headers.items():
                if name not in response:
                    response[name] = value
        return response

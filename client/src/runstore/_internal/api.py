"""A thin HTTP client for the v1 REST API: MessagePack bodies, typed errors, bounded retries."""

from __future__ import annotations

import os
import random
import time
from typing import Any

import msgpack
import requests

from ..exceptions import ApiError, NetworkError, NotFoundError

MSGPACK = "application/msgpack"
# 507: the server's blob store is full for now; the file stays queued and is sent again later.
RETRY_STATUSES = {408, 429, 500, 502, 503, 504, 507}


QUOTA_EXCEEDED = "quota_exceeded"
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


class RetryableError(Exception):
    """A failure worth retrying: network error, 5xx, 408 or 429 (with its ``Retry-After`` and, for a
    429, the ``RateLimit-*`` headers in ``rate_limit``)."""

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        status: int | None = None,
        rate_limit: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status
        self.rate_limit = rate_limit or {}


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        return default
    return value if value >= 0 else default


def retry_delay(retry_after: float | None, attempt: int) -> float:
    """How long to wait before retrying: the server's ``Retry-After`` (at most
    ``RUNSTORE_MAX_RETRY_AFTER`` seconds, default 60) plus up to 10 % of jitter, so that many
    clients told the same time do not come back together; else the jittered ``backoff``."""
    if retry_after is None:
        return backoff(attempt)
    told = min(retry_after, _env_seconds("RUNSTORE_MAX_RETRY_AFTER", 60.0))
    return told + random.uniform(0, 0.1 * told + 0.05)  # noqa: S311 - jitter, not crypto


def quota_delay(attempt: int) -> float:
    """The slow retry of a request refused by a storage or count quota: ``RUNSTORE_QUOTA_RETRY``
    seconds (30) first, doubling up to ``RUNSTORE_QUOTA_MAX_RETRY`` (300), with 10 % of jitter."""
    first = _env_seconds("RUNSTORE_QUOTA_RETRY", 30.0)
    cap = max(first, _env_seconds("RUNSTORE_QUOTA_MAX_RETRY", 300.0))
    return float(min(cap, first * (2 ** min(attempt, 16))) * random.uniform(0.9, 1.1))  # noqa: S311


def is_quota_error(exc: ApiError) -> bool:
    """A 403 for a storage, count or upload quota: the request becomes possible once the quota is
    raised (or usage falls), unlike a 403 for a missing permission."""
    return exc.status == 403 and exc.code == QUOTA_EXCEEDED


def backoff(attempt: int, base: float = 0.5, cap: float | None = None) -> float:
    """Exponential backoff with full jitter, at most ``RUNSTORE_MAX_BACKOFF`` seconds (default 30)."""
    if cap is None:
        try:
            cap = float(os.environ.get("RUNSTORE_MAX_BACKOFF") or 30.0)
        except ValueError:
            cap = 30.0
    return random.uniform(0, min(cap, base * (2 ** min(attempt, 16))))  # noqa: S311 - jitter, not crypto


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def decode(response: requests.Response) -> Any:
    if not response.content:
        return None
    if response.headers.get("Content-Type", "").startswith(MSGPACK):
        return msgpack.unpackb(response.content, raw=False, strict_map_key=False)
    return response.json()


class Api:
    """One server + token. Not shared between threads: each worker makes its own."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._session: requests.Session | None = None
        self._pid = 0

    @property
    def session(self) -> requests.Session:
        if self._session is None or self._pid != os.getpid():
            session = requests.Session()
            session.headers.update(
                {
                    "Authorization": f"Bearer {self.token}",
                    "Accept": MSGPACK,
                    "User-Agent": "runstore-python/0.1",
                }
            )
            session.trust_env = False
            self._session, self._pid = session, os.getpid()
        return self._session

    def close(self) -> None:
        if self._session is not None and self._pid == os.getpid():
            self._session.close()
        self._session = None

    def send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        raw_msgpack: bytes | None = None,
        files: Any = None,
        data: Any = None,
        stream: bool = False,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """One attempt. Raises RetryableError, ApiError (4xx) or returns the response (2xx/3xx)."""
        url = path if path.startswith("http") else f"{self.url}/api/v1/{path.lstrip('/')}"
        headers = dict(headers or {})
        content: bytes | None = None
        if raw_msgpack is not None:
            content = raw_msgpack
        elif body is not None:
            content = msgpack.packb(body, use_bin_type=True)
        if content is not None:
            headers["Content-Type"] = MSGPACK
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                data=content if content is not None else data,
                files=files,
                headers=headers,
                stream=stream,
                timeout=(min(10.0, timeout or self.timeout), timeout or self.timeout),
            )
        except requests.RequestException as exc:
            raise RetryableError(f"{method} {url}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code in RETRY_STATUSES:
            message = f"{method} {url}: HTTP {response.status_code}"
            response.close()
            rate_limit = {k: response.headers[k] for k in RATE_LIMIT_HEADERS if k in response.headers}
            raise RetryableError(
                message, _retry_after(response.headers.get("Retry-After")), response.status_code, rate_limit
            )
        if response.status_code >= 400:
            raise error_from(response)
        return response

    def call(self, method: str, path: str, *, deadline: float = 30.0, **kwargs: Any) -> Any:
        """Send with retries for up to ``deadline`` seconds; return the decoded body."""
        return decode(self.call_raw(method, path, deadline=deadline, **kwargs))

    def call_raw(self, method: str, path: str, *, deadline: float = 30.0, **kwargs: Any) -> requests.Response:
        end = time.monotonic() + deadline
        attempt = 0
        while True:
            try:
                return self.send(method, path, **kwargs)
            except RetryableError as exc:
                wait = retry_delay(exc.retry_after, attempt)
                if time.monotonic() + wait > end:
                    raise NetworkError(f"{exc} (gave up after {deadline:.0f}s)") from exc
                time.sleep(wait)
                attempt += 1


def error_from(response: requests.Response) -> ApiError:
    status = response.status_code
    payload: Any = None
    try:
        payload = decode(response)
        error = payload.get("error") if isinstance(payload, dict) else None
    except Exception:  # noqa: BLE001 - a non-API error page (proxy, HTML)
        error = None
    if not isinstance(error, dict):
        detail = None
        try:
            detail = payload.get("detail") if isinstance(payload, dict) else None
        except Exception:  # noqa: BLE001
            pass
        error = {"code": "http_error", "message": str(detail or response.text[:200] or response.reason)}
    details = {k: v for k, v in error.items() if k not in ("status", "code", "message")}
    cls = NotFoundError if status == 404 else ApiError
    return cls(status, str(error.get("code", "error")), str(error.get("message", "")), details)

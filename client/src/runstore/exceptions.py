"""Errors the client raises into user code (only for misuse, never for plumbing failures)."""

from __future__ import annotations

from typing import Any


class RunstoreError(Exception):
    """Base class of every error the client raises."""


class ReadOnlyError(RunstoreError):
    """A write on a run or project opened with ``mode="read-only"``."""


class ConfigurationError(RunstoreError, ValueError):
    """A missing or invalid project, token, URL or option."""


class QueryNotSupportedError(RunstoreError, NotImplementedError):
    """The server does not evaluate ``query=`` yet (its query engine is a later feature)."""


class ApiError(RunstoreError):
    """The server answered with an error status: ``status``, ``code``, ``message``, ``details``."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


class NotFoundError(ApiError):
    """404: unknown run, field or project (or one the token may not see)."""


class NetworkError(RunstoreError):
    """The server could not be reached (after the retries)."""

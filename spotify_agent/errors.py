"""Domain errors every app's services raise, one per outcome an adapter renders.

Each carries a stable ``code`` equal to a ``realtime.protocol.ErrorCode``
value (or, for REST-only outcomes, a code in
``spotify_agent.api.exceptions.ERROR_CODES``) and the HTTP status it maps to.
WebSocket handlers answer an ``error`` frame with ``code``, ``message`` and
``details`` as they are (``realtime.calls.call_service``); the REST API's
exception handler renders them in the API error shape with ``http_status``.
Services raise only these, or let programming errors propagate.
"""

from __future__ import annotations

from typing import Any, ClassVar

from realtime.protocol import ErrorCode


class DomainError(Exception):
    """Base of the domain errors."""

    code: ClassVar[str]
    http_status: ClassVar[int]
    default_message: ClassVar[str]

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None):
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)


class NotFound(DomainError):
    """No such object, or one the caller may not learn exists (a private room or
    playlist they are not in, anything of another tenant)."""

    code = ErrorCode.NOT_FOUND
    http_status = 404
    default_message = "Not found."


class Forbidden(DomainError):
    """The caller knows the object but may not do this (not joined, a viewer editing,
    muted, banned, not a moderator)."""

    code = ErrorCode.FORBIDDEN
    http_status = 403
    default_message = "You are not allowed to do this."


class Invalid(DomainError):
    """The input is wrong (empty or too long text, an index out of range...);
    ``details.fields`` names the field."""

    code = ErrorCode.INVALID
    http_status = 400
    default_message = "Invalid input."

    def __init__(self, message: str | None = None, *, field: str | None = None, details: dict[str, Any] | None = None):
        details = dict(details or {})
        if field is not None:
            details.setdefault("fields", {field: [message or self.default_message]})
        super().__init__(message, details=details)


class Conflict(DomainError):
    """The operation conflicts with the current state (already a member, a deleted
    message, a full playlist...)."""

    code = ErrorCode.CONFLICT
    http_status = 409
    default_message = "This conflicts with the current state."


class RateLimited(DomainError):
    """Too often: try again in ``retry_after`` seconds (``details.retry_after``; the
    WebSocket error frame also carries it as ``retry_after``, REST as ``Retry-After``)."""

    code = ErrorCode.RATE_LIMITED
    http_status = 429
    default_message = "Too many requests; slow down."

    def __init__(self, message: str | None = None, *, retry_after: float, details: dict[str, Any] | None = None):
        super().__init__(message, details={**(details or {}), "retry_after": retry_after})
        self.retry_after = retry_after

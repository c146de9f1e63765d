"""Domain errors of chat services, one per outcome an adapter has to render.

Each carries a stable ``code`` equal to a ``realtime.protocol.ErrorCode``
value, so the WebSocket handlers answer ``error`` frames with it as is and the
REST views map it to the API error shape with ``http_status``. Services raise
only these (or let programming errors propagate). The upload errors
(``TooLarge``, ``TypeNotAllowed``, ``TypeMismatch``) are REST-only: uploads
never travel on the socket, so their codes are in the REST API's list
(``spotify_agent.api.exceptions.ERROR_CODES``) and, except ``too_large``, not
in the WebSocket protocol's.
"""

from __future__ import annotations

from typing import Any, ClassVar

from realtime.protocol import ErrorCode


class ChatError(Exception):
    """Base of chat's domain errors."""

    code: ClassVar[ErrorCode]
    http_status: ClassVar[int]
    default_message: ClassVar[str]

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None):
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)


class NotFound(ChatError):
    """No such room or message, or one the caller may not learn exists
    (a private room they are not in, anything of another tenant)."""

    code = ErrorCode.NOT_FOUND
    http_status = 404
    default_message = "Not found."


class Forbidden(ChatError):
    """The caller knows the object but may not do this (not joined, muted, banned, not a moderator)."""

    code = ErrorCode.FORBIDDEN
    http_status = 403
    default_message = "You are not allowed to do this."


class Invalid(ChatError):
    """The input is wrong (empty or too long body, bad seq...); ``details.fields`` names the field."""

    code = ErrorCode.INVALID
    http_status = 400
    default_message = "Invalid input."

    def __init__(self, message: str | None = None, *, field: str | None = None, details: dict[str, Any] | None = None):
        details = dict(details or {})
        if field is not None:
            details.setdefault("fields", {field: [message or self.default_message]})
        super().__init__(message, details=details)


class Conflict(ChatError):
    """The operation conflicts with the current state (already a member, a deleted message...)."""

    code = ErrorCode.CONFLICT
    http_status = 409
    default_message = "This conflicts with the current state."


class Moderated(ChatError):
    """The moderation pipeline rejected the message (flooding, repetition, a blocked
    word); nothing was stored. ``details.reason`` names the rule."""

    code = ErrorCode.MODERATED
    http_status = 422
    default_message = "The message was rejected by moderation."


# --- Uploads (REST only) ----------------------------------------------------------


class TooLarge(ChatError):
    """The upload exceeds ``CHAT_ATTACHMENT_MAX_BYTES``; ``details.max_bytes`` gives it."""

    code = ErrorCode.TOO_LARGE
    http_status = 413
    default_message = "The file is too large."


class TypeNotAllowed(ChatError):
    """The file's content (its first bytes) is not one of the allowed types;
    ``details.allowed`` lists them."""

    code = "type_not_allowed"  # type: ignore[assignment]
    http_status = 415
    default_message = "This type of file is not accepted."


class TypeMismatch(ChatError):
    """The type the client declared disagrees with the file's content
    (``details.declared``, ``details.detected``)."""

    code = "type_mismatch"  # type: ignore[assignment]
    http_status = 415
    default_message = "The file's content does not match its declared type."

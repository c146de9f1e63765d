"""Chat's own domain errors, beside the shared ones of ``spotify_agent.errors``
(``NotFound``, ``Forbidden``, ``Invalid``, ``Conflict``), which chat raises too.

The upload errors (``TooLarge``, ``TypeNotAllowed``, ``TypeMismatch``) are
REST-only: uploads never travel on the socket, so their codes are in the REST
API's list (``spotify_agent.api.exceptions.ERROR_CODES``) and, except
``too_large``, not in the WebSocket protocol's.
"""

from __future__ import annotations

from realtime.protocol import ErrorCode
from spotify_agent.errors import Conflict, DomainError, Forbidden, Invalid, NotFound

__all__ = [
    "Conflict",
    "DomainError",
    "Forbidden",
    "Invalid",
    "Moderated",
    "NotFound",
    "TooLarge",
    "TypeMismatch",
    "TypeNotAllowed",
]


class Moderated(DomainError):
    """The moderation pipeline rejected the message (flooding, repetition, a blocked
    word); nothing was stored. ``details.reason`` names the rule."""

    code = ErrorCode.MODERATED
    http_status = 422
    default_message = "The message was rejected by moderation."


# --- Uploads (REST only) ----------------------------------------------------------


class TooLarge(DomainError):
    """The upload exceeds ``CHAT_ATTACHMENT_MAX_BYTES``; ``details.max_bytes`` gives it."""

    code = ErrorCode.TOO_LARGE
    http_status = 413
    default_message = "The file is too large."


class TypeNotAllowed(DomainError):
    """The file's content (its first bytes) is not one of the allowed types;
    ``details.allowed`` lists them."""

    code = "type_not_allowed"  # type: ignore[assignment]
    http_status = 415
    default_message = "This type of file is not accepted."


class TypeMismatch(DomainError):
    """The type the client declared disagrees with the file's content
    (``details.declared``, ``details.detected``)."""

    code = "type_mismatch"  # type: ignore[assignment]
    http_status = 415
    default_message = "The file's content does not match its declared type."

"""The wire protocol of ``/ws/``: version, envelopes, error codes and close codes.

This module is the single definition of what travels on the socket; the
consumer and every handler build frames through it, and docs/protocol.md
describes exactly what is here. It knows nothing about authentication or
Django: parsing and building JSON text frames only.

Client → server::

    {"type": "chat.send", "id"?: "c-17", "room"?: "…", "content"?: {…}}

Server → client::

    {"type": "…", "id"?: …, "room"?: "…", "seq"?: 42, "content": {…}, "timestamp": "2026-…Z"}

A client frame that carries an ``id`` gets exactly one answer carrying the same
``id``: the type's reply (``ack`` unless the type documents another, as ``ping``
answers ``pong``) or an ``error``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

PROTOCOL_VERSION = 1

# Client ids are correlation tokens, not data: short enough to echo cheaply.
MAX_ID_LENGTH = 64
MAX_TYPE_LENGTH = 64
MAX_ROOM_LENGTH = 128


class ErrorCode(StrEnum):
    """The closed list of ``error.code`` values. Add here (and to docs/protocol.md), never inline."""

    BAD_JSON = "bad_json"  # not a JSON object, or a binary frame
    UNKNOWN_TYPE = "unknown_type"  # no handler is registered for the type
    INVALID = "invalid"  # well-formed JSON, but the envelope or content is wrong
    FORBIDDEN = "forbidden"  # authenticated, but not allowed to do this
    NOT_FOUND = "not_found"  # the room or object does not exist (or is not visible)
    RATE_LIMITED = "rate_limited"  # too many frames of this kind; retry later
    TOO_LARGE = "too_large"  # the frame exceeds WS_MAX_FRAME_BYTES
    CONFLICT = "conflict"  # the operation conflicts with the current state
    RESYNC_REQUIRED = "resync_required"  # the client's copy is too old to merge into; details carry a fresh one
    MODERATED = "moderated"  # the moderation pipeline rejected the content; nothing was stored
    UNAUTHENTICATED = "unauthenticated"  # the credential was refused
    INTERNAL = "internal"  # the server failed; the frame may be retried


class CloseCode(IntEnum):
    """Close codes the server sends. 4xxx mirror the HTTP status they resemble."""

    NORMAL = 1000
    # Missing, invalid, expired, replayed or revoked credential; first-frame
    # auth timeout; access token expired on an open socket; user deactivated.
    UNAUTHENTICATED = 4401
    # The browser's Origin is not in WS_ALLOWED_ORIGINS.
    FORBIDDEN_ORIGIN = 4403
    # No frame from the client for 2 x WS_HEARTBEAT_INTERVAL.
    HEARTBEAT_TIMEOUT = 4408
    # The backlog of frames waiting for this client exceeded WS_MAX_OUTBOUND_BACKLOG
    # (the client stopped reading); reconnect and resume.
    SLOW_CONSUMER = 4413
    # The user already holds MAX_WS_CONNECTIONS_PER_USER open sockets.
    TOO_MANY_CONNECTIONS = 4429
    # WS_RATE_LIMIT_CLOSE_AFTER rate-limited frames in a row: the client ignored retry_after.
    RATE_LIMIT_ABUSE = 4430
    # The server failed; reconnect with backoff. Not RFC 6455's 1011: daphne's
    # WebSocket library (autobahn) lets an application close only with 1000 or
    # 3000-4999, and refuses anything else.
    INTERNAL_ERROR = 4500


class ProtocolError(Exception):
    """Raised by parsing and by handlers; the consumer turns it into an ``error`` frame."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.retry_after = retry_after


def invalid_field(field: str, message: str) -> ProtocolError:
    """An ``invalid`` error naming one field, as every family reports bad content:
    ``details.fields`` maps the field to its messages."""
    return ProtocolError(ErrorCode.INVALID, message, details={"fields": {field: [message]}})


@dataclass(frozen=True)
class ClientMessage:
    """One parsed client frame. ``raw`` keeps the whole object for fields a type defines
    outside the envelope (``auth`` carries ``token``)."""

    type: str
    id: str | int | None = None
    room: str | None = None
    content: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """What a handler returns to answer a frame with something other than a bare ``ack``."""

    type: str = "ack"
    content: dict[str, Any] = field(default_factory=dict)


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def parse_client_frame(text: str) -> ClientMessage:
    """Parse one text frame. Raises ``ProtocolError``; an ``invalid`` error carries the
    frame's id in ``details["id"]`` when the id itself was readable, so it can be answered."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ProtocolError(ErrorCode.BAD_JSON, "The frame is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_JSON, "The frame must be a JSON object.")

    frame_id = data.get("id")
    answerable = {"id": frame_id} if _valid_id(frame_id) else {}
    if frame_id is not None and not answerable:
        raise ProtocolError(ErrorCode.INVALID, f"'id' must be an integer or a string of 1-{MAX_ID_LENGTH} characters.")
    message_type = data.get("type")
    if not isinstance(message_type, str) or not 0 < len(message_type) <= MAX_TYPE_LENGTH:
        raise ProtocolError(ErrorCode.INVALID, "'type' must be a non-empty string.", details=answerable)
    room = data.get("room")
    if room is not None and (not isinstance(room, str) or not 0 < len(room) <= MAX_ROOM_LENGTH):
        raise ProtocolError(ErrorCode.INVALID, "'room' must be a non-empty string.", details=answerable)
    content = data.get("content", {})
    if not isinstance(content, dict):
        raise ProtocolError(ErrorCode.INVALID, "'content' must be a JSON object.", details=answerable)
    return ClientMessage(type=message_type, id=frame_id, room=room, content=content, raw=data)


def timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z`` suffix."""
    moment = (moment or datetime.now(tz=UTC)).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(
    message_type: str,
    content: dict[str, Any] | None = None,
    *,
    id: str | int | None = None,
    room: str | None = None,
    seq: int | None = None,
) -> dict[str, Any]:
    """A server → client frame. Optional fields are omitted, never null."""
    frame: dict[str, Any] = {"type": message_type}
    if id is not None:
        frame["id"] = id
    if room is not None:
        frame["room"] = room
    if seq is not None:
        frame["seq"] = seq
    frame["content"] = content or {}
    frame["timestamp"] = timestamp()
    return frame


def ack(frame_id: str | int, content: dict[str, Any] | None = None) -> dict[str, Any]:
    return envelope("ack", content, id=frame_id)


def error(
    code: ErrorCode,
    message: str,
    *,
    frame_id: str | int | None = None,
    details: dict[str, Any] | None = None,
    retry_after: float | None = None,
) -> dict[str, Any]:
    """An ``error`` frame; ``retry_after`` (seconds) tells when the same frame may succeed."""
    frame = envelope("error", details, id=frame_id)
    frame["code"] = str(code)
    frame["message"] = message
    if retry_after is not None:
        frame["retry_after"] = retry_after
    return frame


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, default=str)

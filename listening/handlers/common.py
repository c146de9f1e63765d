"""What the listening families parse alike."""

from __future__ import annotations

from realtime.protocol import ClientMessage, ErrorCode, ProtocolError, invalid_field


def session_id_of(message: ClientMessage) -> int:
    """The frame's ``content.session``: missing is ``invalid``; anything but a
    positive integer names no session (``not_found``, as an unknown id does)."""
    value = message.content.get("session")
    if value is None:
        raise invalid_field("session", "session is required.")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ProtocolError(ErrorCode.NOT_FOUND, "No such listening session.")
    return value

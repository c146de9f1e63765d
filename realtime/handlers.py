"""The core message family: ``auth`` and ``ping``, and the ``session.revoked`` event.

- ``auth`` {"token": "<access token>"}: the first frame of a browser socket
  that brought no ticket, or, on an open socket, a fresh access token that
  extends the session before the current one expires. Only the same user may
  refresh; any refused token closes the socket with 4401. Answer: ``ack``
  with the new ``expires_at``.
- ``ping``: answered by ``pong`` with the server time. Any frame counts as a
  heartbeat; ``ping`` is the one to send when there is nothing else to say.
- ``time.sync`` {"client_sent": <ms>}: one clock-synchronisation exchange,
  answered by ``time.sync`` with the server's receive and send times
  (``realtime.client.clock`` turns several into an offset).
- ``session.revoked`` (channel-layer event from ``accounts.services.users``):
  closes the socket with 4401.
- ``system.maintenance`` (``realtime.events.SystemMaintenance``, sent to
  ``tenant_group`` or ``everyone_group``, which every socket joins at
  authentication): sent on as a ``system`` frame ``{"kind": "maintenance",
  "message", "starts_at"?, "ends_at"?}``.
"""

from __future__ import annotations

import math
import time
from typing import Any

from channels.db import database_sync_to_async

from accounts.services.tokens import AuthenticationError, access_token_authenticate

from .middleware import METHOD_FIRST_FRAME
from .protocol import ClientMessage, Reply, envelope, invalid_field, timestamp
from .registry import Connection, registry

# Longer than any access token simplejwt issues here; refuses junk before decoding.
_MAX_TOKEN_LENGTH = 4096


@registry.message("auth")
async def handle_core_auth(conn: Connection, message: ClientMessage) -> Reply | None:
    token = message.raw.get("token")
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH:
        await conn.close_unauthenticated("token_missing")
        return None
    try:
        _user, principal = await database_sync_to_async(access_token_authenticate)(raw_token=token)
    except AuthenticationError as exc:
        await conn.close_unauthenticated(exc.code)
        return None
    # Another user's token closes the socket; the ack below is then dropped.
    await conn.authenticate(principal=principal, method=METHOD_FIRST_FRAME)
    return Reply("ack", {"expires_at": timestamp(principal.expires_at) if principal.expires_at else None})


@registry.message("ping")
async def handle_core_ping(conn: Connection, message: ClientMessage) -> Reply:
    return Reply("pong", {"server_time": timestamp()})


@registry.message("time.sync")
async def handle_core_time_sync(conn: Connection, message: ClientMessage) -> Reply:
    """One NTP-style exchange: the client's send time comes back with the server's
    receive and send times (Unix milliseconds, the clock playback times use)."""
    received = time.time() * 1000
    client_sent = message.content.get("client_sent")
    if isinstance(client_sent, bool) or not isinstance(client_sent, int | float) or not math.isfinite(client_sent):
        raise invalid_field("client_sent", "client_sent must be a number (the client's clock, in milliseconds).")
    return Reply(
        "time.sync", {"client_sent": client_sent, "server_received": received, "server_sent": time.time() * 1000}
    )


@registry.event("session.revoked")
async def handle_core_session_revoked(conn: Connection, event: dict[str, Any]) -> None:
    await conn.close_unauthenticated(event.get("content", {}).get("reason") or "session_revoked")


@registry.event("system.maintenance")
async def handle_core_system_maintenance(conn: Connection, event: dict[str, Any]) -> None:
    content = event.get("content", {})
    frame = {"kind": "maintenance", "message": content.get("message", "")}
    # Optional times are omitted rather than sent as null, like envelope fields.
    for field in ("starts_at", "ends_at"):
        if content.get(field):
            frame[field] = content[field]
    await conn.send_frame(envelope("system", frame))

"""The hub's single consumer: transport, parsing and dispatch, nothing else.

It owns the socket's lifecycle: accept-then-close refusals decided by
``realtime.middleware``, the first-frame authentication window, the timers that
end a socket (access-token expiry, missed heartbeats, the periodic auth
re-check), the user's group, and the audit of connect/disconnect. What a frame
*means* is decided by the handler registered for its type
(``realtime.registry``); what a channel-layer event does, likewise. Database
work goes through services and selectors wrapped in ``database_sync_to_async``.
docs/protocol.md is the client-facing description.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from accounts.principals import Principal
from accounts.services.tokens import AuthenticationError
from audit.services import RequestContext

from .groups import user_group
from .middleware import HandshakeAuth
from .protocol import (
    PROTOCOL_VERSION,
    ClientMessage,
    CloseCode,
    ErrorCode,
    ProtocolError,
    Reply,
    encode,
    envelope,
    error,
    parse_client_frame,
    timestamp,
)
from .registry import registry
from .selectors import ws_principal_recheck
from .services import ws_connection_close, ws_connection_open, ws_connection_reject

logger = logging.getLogger(__name__)

# The watchdog never sleeps longer than this, so a changed setting or a clock
# jump is noticed within a second; it costs one wake-up per socket per second.
_MAX_WATCH_SLEEP = 1.0


class HubConsumer(AsyncWebsocketConsumer):
    """``/ws/``: one instance per socket. Implements ``realtime.registry.Connection``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._principal: Principal | None = None
        self._method = ""
        self._authenticated_at: datetime | None = None
        self._context = RequestContext()
        self._groups: set[str] = set()
        self._closing = False
        self._close_code: int | None = None
        self._close_reason = ""
        self._watchdog: asyncio.Task | None = None
        self._opened_at = 0.0
        self._last_frame_at = 0.0
        self._auth_deadline = 0.0
        self._next_recheck = 0.0

    # --- Connection (the surface handlers use) ------------------------------------

    @property
    def principal(self) -> Principal | None:
        return self._principal

    @property
    def authenticated_at(self) -> datetime | None:
        return self._authenticated_at

    async def send_frame(self, frame: dict[str, Any]) -> None:
        if not self._closing:
            await self.send(text_data=encode(frame))

    async def group_join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self._groups.add(group)

    async def group_leave(self, group: str) -> None:
        self._groups.discard(group)
        await self.channel_layer.group_discard(group, self.channel_name)

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self._closing:
            return
        self._closing = True
        # A plain int: autobahn refuses int subclasses such as IntEnum members.
        self._close_code = int(code if code is not None else CloseCode.NORMAL)
        self._close_reason = reason or ""
        await super().close(code=self._close_code)

    async def close_unauthenticated(self, reason: str) -> None:
        """Close with 4401. Before authentication the refusal is audited as such;
        after it, ``reason`` goes into the disconnect record."""
        if self._closing:
            return
        if self._principal is None:
            await database_sync_to_async(ws_connection_reject)(
                reason=reason, method=self._method, context=self._context
            )
        await self.close(CloseCode.UNAUTHENTICATED, reason)

    async def authenticate(self, *, principal: Principal, method: str) -> None:
        """Start the socket's session, or extend it with a fresh credential of the same user."""
        if self._principal is not None:
            if (principal.user_id, principal.tenant_id) != (self._principal.user_id, self._principal.tenant_id):
                await self.close_unauthenticated("user_mismatch")
                return
            self._principal = principal
            self._authenticated_at = timezone.now()
            return

        self._principal = principal
        self._method = method
        self._authenticated_at = timezone.now()
        self._next_recheck = self._now() + settings.WS_AUTH_RECHECK_INTERVAL
        await self.group_join(user_group(tenant_id=principal.tenant_id, user_id=principal.user_id))
        await database_sync_to_async(ws_connection_open)(principal=principal, method=method, context=self._context)
        await self.send_frame(
            envelope(
                "hello",
                {
                    "protocol": PROTOCOL_VERSION,
                    "user": {"id": principal.user_id, "username": principal.username, "role": principal.role},
                    "tenant": principal.tenant_slug,
                    "expires_at": timestamp(principal.expires_at) if principal.expires_at else None,
                    "heartbeat_interval": settings.WS_HEARTBEAT_INTERVAL,
                    "max_frame_bytes": settings.WS_MAX_FRAME_BYTES,
                },
            )
        )

    # --- ASGI lifecycle ----------------------------------------------------------------

    async def connect(self) -> None:
        # Always accept first: a close before accept becomes an HTTP 403 without a close code.
        await self.accept()
        self._context = RequestContext.from_scope(self.scope)
        self._opened_at = self._last_frame_at = self._now()
        handshake: HandshakeAuth = self.scope.get("ws_auth") or HandshakeAuth.refused("header", "token_missing")
        self._method = handshake.method
        if handshake.close_code is not None:
            await database_sync_to_async(ws_connection_reject)(
                reason=handshake.reason, method=handshake.method, context=self._context
            )
            await self.close(handshake.close_code, handshake.reason)
            return
        self._auth_deadline = self._opened_at + settings.WS_AUTH_TIMEOUT
        self._watchdog = asyncio.create_task(self._watch())
        if handshake.principal is not None:
            await self.authenticate(principal=handshake.principal, method=handshake.method)

    async def disconnect(self, code: int) -> None:
        self._closing = True
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        for group in list(self._groups):
            await self.group_leave(group)
        if self._principal is not None:
            await database_sync_to_async(ws_connection_close)(
                principal=self._principal,
                code=self._close_code if self._close_code is not None else code,
                reason=self._close_reason or ("server" if self._close_code is not None else "client"),
                duration_seconds=self._now() - self._opened_at,
                context=self._context,
            )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._closing:
            return
        self._last_frame_at = self._now()
        try:
            message = self._parse(text_data, bytes_data)
        except ProtocolError as exc:
            if self._principal is None:
                await self.close_unauthenticated("auth_expected")
                return
            await self.send_frame(
                error(exc.code, exc.message, frame_id=exc.details.pop("id", None), details=exc.details)
            )
            return
        if self._principal is None and message.type != "auth":
            # Before authentication only the auth frame is processed.
            await self.close_unauthenticated("auth_expected")
            return
        await self._dispatch_message(message)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channel-layer events are routed through the registry, not to methods
        # named after their type, so a family adds events without touching this class.
        if message["type"].startswith("websocket."):
            await super().dispatch(message)
            return
        if self._closing or self._principal is None:
            return
        handler = registry.event_handler(message["type"])
        if handler is None:
            logger.warning("no handler for channel-layer event", extra={"event": message["type"]})
            return
        try:
            await handler(self, message)
        except Exception:
            # One faulty event must not take the socket (and its other groups) down.
            logger.exception("event handler failed", extra={"event": message["type"]})

    # --- Internals ------------------------------------------------------------------------

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    @staticmethod
    def _parse(text_data: str | None, bytes_data: bytes | None) -> ClientMessage:
        if text_data is None:
            raise ProtocolError(ErrorCode.BAD_JSON, "Only JSON text frames are accepted.")
        if len(text_data.encode()) > settings.WS_MAX_FRAME_BYTES:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"Frames are limited to {settings.WS_MAX_FRAME_BYTES} bytes.",
                details={"max_bytes": settings.WS_MAX_FRAME_BYTES},
            )
        return parse_client_frame(text_data)

    async def _dispatch_message(self, message: ClientMessage) -> None:
        handler = registry.message_handler(message.type)
        if handler is None:
            await self.send_frame(
                error(ErrorCode.UNKNOWN_TYPE, f"Unknown message type {message.type!r}.", frame_id=message.id)
            )
            return
        try:
            reply = await handler(self, message)
        except ProtocolError as exc:
            await self.send_frame(error(exc.code, exc.message, frame_id=message.id, details=exc.details))
            return
        except Exception:
            logger.exception("message handler failed", extra={"type": message.type})
            await self.send_frame(
                error(ErrorCode.INTERNAL, "The server failed to process the frame.", frame_id=message.id)
            )
            return
        reply = reply or Reply()
        # A bare ack only answers a frame that asked for one (carried an id).
        if message.id is not None or reply.type != "ack":
            await self.send_frame(envelope(reply.type, reply.content, id=message.id))

    async def _watch(self) -> None:
        """Close the socket when a deadline passes: first-frame auth, token expiry,
        heartbeat; and re-check the principal every WS_AUTH_RECHECK_INTERVAL."""
        try:
            await self._watch_deadlines()
        except asyncio.CancelledError:
            raise
        except Exception:
            # Without its watchdog a socket would outlive its credential: fail closed.
            logger.exception("WebSocket watchdog failed")
            await self.close(CloseCode.INTERNAL_ERROR, "watchdog_failed")

    async def _watch_deadlines(self) -> None:
        heartbeat_limit = 2 * settings.WS_HEARTBEAT_INTERVAL
        while not self._closing:
            now = self._now()
            deadlines = [self._last_frame_at + heartbeat_limit]
            if now >= deadlines[0]:
                await self.close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat_timeout")
                return
            if self._principal is None:
                if now >= self._auth_deadline:
                    await self.close_unauthenticated("auth_timeout")
                    return
                deadlines.append(self._auth_deadline)
            else:
                expires_at = self._principal.expires_at
                if expires_at is not None:
                    remaining = (expires_at - timezone.now()).total_seconds()
                    if remaining <= 0:
                        await self.close_unauthenticated("token_expired")
                        return
                    deadlines.append(now + remaining)
                if now >= self._next_recheck:
                    await self._recheck()
                    if self._closing:
                        return
                deadlines.append(self._next_recheck)
            await asyncio.sleep(min(_MAX_WATCH_SLEEP, max(0.0, min(deadlines) - self._now())))

    async def _recheck(self) -> None:
        principal = self._principal
        try:
            current = await database_sync_to_async(ws_principal_recheck)(principal=principal)
        except AuthenticationError as exc:
            await self.close_unauthenticated(exc.code)
            return
        except Exception:
            # Fail open for one interval on infrastructure errors (database
            # down): the access token's expiry still bounds the session.
            logger.exception("WebSocket auth re-check failed")
        else:
            # A refresh that landed while the check ran carries a newer expiry: keep it.
            if self._principal is principal:
                self._principal = current
        self._next_recheck = self._now() + settings.WS_AUTH_RECHECK_INTERVAL

"""Handshake checks of ``/ws/``: the Origin policy and the credentials that arrive
with the HTTP upgrade (``Authorization: Bearer`` header, ``?ticket=``).

The middleware decides and the consumer acts: the outcome goes into
``scope["ws_auth"]`` (and the principal into ``scope["principal"]``), and the
consumer accepts the socket and closes it with the outcome's code. Closing
before ``websocket.accept`` would make daphne answer HTTP 403, which carries no
close code, so a refusal is always accept-then-close (docs/protocol.md).

Policy:

* an ``Origin`` header (a browser) must be listed in ``WS_ALLOWED_ORIGINS``,
  else 4403;
* ``Authorization: Bearer <access token>`` is accepted with or without Origin;
* a ticket, or an access token in the first frame, is a browser method and
  needs an (allowed) Origin; without one the socket closes 4401. Browsers
  always send Origin, so a client without it is not a browser and can send
  the header instead;
* with none of them, a browser socket waits ``WS_AUTH_TIMEOUT`` seconds for an
  ``auth`` frame (handled by the consumer); any other client gets 4401.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.conf import settings

from accounts.principals import Principal
from accounts.services.tokens import AuthenticationError, access_token_authenticate, ws_ticket_consume

from .protocol import CloseCode

METHOD_HEADER = "header"
METHOD_TICKET = "ticket"
METHOD_FIRST_FRAME = "first_frame"


@dataclass(frozen=True)
class HandshakeAuth:
    """What the handshake established. Exactly one of three states:
    refused (``close_code`` set), authenticated (``principal`` set), or waiting
    for a first-frame ``auth`` (neither)."""

    method: str
    principal: Principal | None = None
    close_code: int | None = None
    reason: str = ""

    @classmethod
    def refused(cls, method: str, reason: str, close_code: int = CloseCode.UNAUTHENTICATED) -> HandshakeAuth:
        return cls(method=method, close_code=close_code, reason=reason)


def _normalise_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def origin_allowed(origin: str) -> bool:
    """Exact match on scheme://host[:port]; ``null`` (sandboxed frames, files) never matches."""
    allowed = {_normalise_origin(item) for item in settings.WS_ALLOWED_ORIGINS}
    return _normalise_origin(origin) in allowed


def _header(scope, name: bytes) -> str | None:
    # Repeated headers: the last one wins, as Django's request.META does.
    value = None
    for key, raw in scope.get("headers") or []:
        if key.lower() == name:
            value = raw.decode("latin-1")
    return value


def _query_ticket(scope) -> str | None:
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
    tickets = query.get("ticket")
    return tickets[-1] if tickets else None


async def _from_header(authorization: str) -> HandshakeAuth:
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return HandshakeAuth.refused(METHOD_HEADER, "token_invalid")
    try:
        _user, principal = await database_sync_to_async(access_token_authenticate)(raw_token=token.strip())
    except AuthenticationError as exc:
        return HandshakeAuth.refused(METHOD_HEADER, exc.code)
    return HandshakeAuth(method=METHOD_HEADER, principal=principal)


async def _from_ticket(ticket: str) -> HandshakeAuth:
    try:
        _user, principal = await database_sync_to_async(ws_ticket_consume)(ticket=ticket)
    except AuthenticationError as exc:
        return HandshakeAuth.refused(METHOD_TICKET, exc.code)
    return HandshakeAuth(method=METHOD_TICKET, principal=principal)


async def handshake_authenticate(scope) -> HandshakeAuth:
    """Apply the policy above to a WebSocket scope. Consumes the ticket if there is one."""
    origin = _header(scope, b"origin")
    if origin is not None and not origin_allowed(origin):
        return HandshakeAuth.refused("origin", "origin_forbidden", CloseCode.FORBIDDEN_ORIGIN)
    authorization = _header(scope, b"authorization")
    if authorization is not None:
        return await _from_header(authorization)
    ticket = _query_ticket(scope)
    if ticket is not None and origin is not None:
        return await _from_ticket(ticket)
    if ticket is not None:
        # Not consumed: a ticket presented outside a browser is refused as is.
        return HandshakeAuth.refused(METHOD_TICKET, "origin_required")
    if origin is None:
        return HandshakeAuth.refused(METHOD_HEADER, "token_missing")
    return HandshakeAuth(method=METHOD_FIRST_FRAME)


class WebSocketAuthMiddleware(BaseMiddleware):
    """Puts ``ws_auth`` (a ``HandshakeAuth``) and ``principal`` into every WebSocket scope."""

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.inner(scope, receive, send)
        scope = dict(scope)
        handshake = await handshake_authenticate(scope)
        scope["ws_auth"] = handshake
        scope["principal"] = handshake.principal
        return await self.inner(scope, receive, send)

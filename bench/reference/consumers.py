"""The textbook Channels chat consumer, kept deliberately plain.

One ``AsyncJsonWebsocketConsumer`` per socket: ``room.join`` adds the socket's
channel to the room's group, ``chat.message`` calls ``group_send`` once and the
channel layer copies the event to every member's channel, where each consumer
JSON-encodes it again for its own socket. This is the pattern the Channels
tutorial teaches, and what the hub's fan-out (``realtime.fanout``) replaces;
the benchmark reports the hub's figures as ratios of this one's.

Authentication is the project's: a ``Bearer`` access token in the handshake,
checked by ``access_token_authenticate``, so both servers accept the same
clients. There is no membership check, no storage and no ack for messages:
the reference does the least work a correct broadcast needs.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.middleware import BaseMiddleware

from accounts.services.tokens import AuthenticationError, access_token_authenticate

# Group names must differ from the hub's (``t<tenant>.room.<id>``) although the
# two servers share one Redis: the channel-layer prefix separates them as well.
GROUP_PREFIX = "bench"


def reference_room_group(*, tenant_id: int, room: str) -> str:
    return f"{GROUP_PREFIX}.t{tenant_id}.room.{room}"


class BearerTokenMiddleware(BaseMiddleware):
    """Puts the principal of the handshake's ``Authorization: Bearer`` token into the scope
    (``None`` when it is missing or refused)."""

    async def __call__(self, scope, receive, send):
        scope = dict(scope, principal=None)
        for key, value in scope.get("headers") or []:
            if key.lower() == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token:
                    try:
                        _user, principal = await database_sync_to_async(access_token_authenticate)(
                            raw_token=token.strip()
                        )
                    except AuthenticationError:
                        principal = None
                    scope["principal"] = principal
        return await self.inner(scope, receive, send)


class ReferenceChatConsumer(AsyncJsonWebsocketConsumer):
    """``/ws/`` of the reference server."""

    async def connect(self) -> None:
        # Accept then close, as the hub does, so a refusal carries a close code.
        await self.accept()
        self.principal = self.scope.get("principal")
        if self.principal is None:
            await self.close(code=4401)
            return
        self.groups_joined: set[str] = set()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs) -> None:
        if not isinstance(content, dict) or not isinstance(content.get("room"), str):
            return
        group = reference_room_group(tenant_id=self.principal.tenant_id, room=content["room"])
        if content.get("type") == "room.join":
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)
            if "id" in content:
                await self.send_json({"type": "ack", "id": content["id"], "content": {"room": content["room"]}})
        elif content.get("type") == "chat.message" and group in self.groups_joined:
            await self.channel_layer.group_send(
                group,
                {
                    "type": "chat.message",
                    "room": content["room"],
                    "sender": self.principal.user_id,
                    "content": content.get("content") or {},
                },
            )

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {"type": "chat.message", "room": event["room"], "sender": event["sender"], "content": event["content"]}
        )

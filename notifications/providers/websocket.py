"""The WebSocket channel: every open socket of the user, through the channel layer.

The provider sends one ``notification`` event to the user's group
(``realtime.groups.user_group``); ``notifications.handlers`` forwards it to
each socket as the ``notification`` frame (docs/protocol.md, "Notifications").

The channel layer is best effort (it drops messages of a socket over capacity),
so a delivery handed to it is ``sent``, never ``delivered``: it becomes
``delivered`` when a client answers ``notification.ack``. A client that missed
the frame reads its inbox (REST or ``notification.unread``) after reconnecting.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from realtime.groups import user_group
from realtime.protocol import timestamp

from .base import Message, Provider, ProviderError, SendResult, Target

EVENT_TYPE = "notification"


def notification_frame_content(message: Message) -> dict[str, Any]:
    """The ``notification`` frame's content for ``message`` (docs/protocol.md)."""
    return {
        "id": message.notification_id,
        "title": message.title,
        "content": message.body,
        "priority": message.priority,
        "category": message.category,
        "data": message.data,
        "created_at": timestamp(message.created_at) if message.created_at else None,
    }


class WebSocketProvider(Provider):
    channel: ClassVar[str] = "websocket"
    # One event loop round for a whole batch of group sends.
    max_batch: ClassVar[int] = 100

    def targets(self, user) -> list[Target]:
        membership = user.tenant_membership
        if membership is None or not user.is_active:
            return []
        return [Target(address=user_group(tenant_id=membership.tenant_id, user_id=user.pk))]

    def send(self, message: Message, targets: list[Target]) -> list[SendResult]:
        result = self.send_batch([(message, targets)])[0]
        if isinstance(result, ProviderError):
            raise result
        return result

    def send_batch(self, batch: list[tuple[Message, list[Target]]]) -> list[list[SendResult] | ProviderError]:
        layer = get_channel_layer()
        if layer is None:
            error = ProviderError("No channel layer is configured.", retryable=False)
            return [error for _ in batch]

        async def send_all() -> list[list[SendResult] | ProviderError]:
            async def one(message: Message, targets: list[Target]) -> list[SendResult] | ProviderError:
                event = {
                    "type": EVENT_TYPE,
                    "content": notification_frame_content(message),
                }
                results: list[SendResult] = []
                try:
                    for target in targets:
                        await layer.group_send(target.address, event)
                        results.append(SendResult(target=target))
                except (TimeoutError, OSError) as exc:
                    return ProviderError(f"The channel layer refused the event: {exc}", retryable=True)
                return results

            return list(await asyncio.gather(*(one(message, targets) for message, targets in batch)))

        return async_to_sync(send_all)()

"""The ``device.*`` WebSocket family: a user's devices and "transfer playback".

- ``device.register`` {device_id, name, kind}: this socket is that device
  (``listening.services.devices.device_register``); answers the device,
  ``active`` saying whether it is the one to play.
- ``device.list`` {}: the user's devices, ``this: true`` on the socket's own.
- ``device.transfer`` {device_id}: make that device the active one; answers
  the transfer's result (the user's session and its playback state).
- ``device.active`` and ``device.forgotten`` events (user group) are forwarded
  to each of the user's sockets with ``this`` telling whether they concern it.

A socket remembers the device it registered in memory, keyed weakly by the
connection object (as ``handlers.quality`` does), so it goes with the socket.
That device's ``last_seen_at`` is refreshed by its ``device.*`` frames, at
most once a minute, and when the socket closes (a close listener): no
database write per frame. docs/protocol.md, "Devices".
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any

from realtime.calls import call_service
from realtime.protocol import ClientMessage, Reply, envelope
from realtime.registry import Connection, registry

from .. import selectors
from ..services import devices

# "Last seen" is shown to people ("2 minutes ago"): a minute is finer than
# anyone reads it, and bounds the writes to one per device and minute.
SEEN_EVERY_SECONDS = 60.0


@dataclass
class _Registered:
    device_id: str
    seen_at: float  # time.monotonic() of the last write of last_seen_at


_registered: weakref.WeakKeyDictionary[Connection, _Registered] = weakref.WeakKeyDictionary()


def _own_device(conn: Connection) -> str | None:
    registered = _registered.get(conn)
    return registered.device_id if registered is not None else None


async def _seen(conn: Connection) -> None:
    """Refresh the socket's device's ``last_seen_at``, at most once a minute."""
    registered = _registered.get(conn)
    if registered is None or time.monotonic() - registered.seen_at < SEEN_EVERY_SECONDS:
        return
    registered.seen_at = time.monotonic()
    await call_service(devices.device_seen, actor=conn.principal, device_id=registered.device_id)


@registry.message("device.register")
async def handle_device_register(conn: Connection, message: ClientMessage) -> Reply:
    content = message.content
    device = await call_service(
        devices.device_register,
        actor=conn.principal,
        device_id=content.get("device_id"),
        name=content.get("name"),
        kind=content.get("kind"),
    )
    _registered[conn] = _Registered(device_id=device.device_id, seen_at=time.monotonic())
    return Reply("ack", {**devices.device_payload(device), "this": True})


def _list(*, actor) -> list[dict[str, Any]]:
    return [devices.device_payload(device) for device in selectors.devices_for_user(actor=actor)]


@registry.message("device.list")
async def handle_device_list(conn: Connection, message: ClientMessage) -> Reply:
    await _seen(conn)
    listed = await call_service(_list, actor=conn.principal)
    own = _own_device(conn)
    return Reply("ack", {"devices": [{**device, "this": device["device_id"] == own} for device in listed]})


@registry.message("device.transfer")
async def handle_device_transfer(conn: Connection, message: ClientMessage) -> Reply:
    await _seen(conn)
    result = await call_service(
        devices.device_transfer, actor=conn.principal, device_id=message.content.get("device_id")
    )
    return Reply("ack", {**result, "this": result["device"]["device_id"] == _own_device(conn)})


@registry.event("device.active")
async def handle_device_active_event(conn: Connection, event: dict[str, Any]) -> None:
    content = event.get("content", {})
    this = content.get("device_id") is not None and content.get("device_id") == _own_device(conn)
    await conn.send_frame(envelope("device.active", {**content, "this": this}))


@registry.event("device.forgotten")
async def handle_device_forgotten_event(conn: Connection, event: dict[str, Any]) -> None:
    content = event.get("content", {})
    this = content.get("device_id") is not None and content.get("device_id") == _own_device(conn)
    if this:
        # The row is gone: this socket is no device until it registers again.
        _registered.pop(conn, None)
    await conn.send_frame(envelope("device.forgotten", {**content, "this": this}))


@registry.close_listener
async def device_socket_closed(conn: Connection) -> None:
    registered = _registered.pop(conn, None)
    if registered is not None:
        await call_service(devices.device_seen, actor=conn.principal, device_id=registered.device_id)

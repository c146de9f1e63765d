"""This client as one of the user's devices: the client side of ``device.*``.

``DevicePlayer`` registers the device (again on every new socket, so a
reconnected device is known and learns whether it is the active one), follows
``device.active`` and ``device.forgotten``, and keeps what the device should
play: ``active`` (play only then), and the ``playback`` state of the user's
session as of the last transfer, from which ``position_now`` places the
player (``realtime.client.playback``). Events may be lost on the way (the
server's channel layer drops messages under load); the answers of
``device.register``, ``device.list`` and ``device.transfer`` are the truth,
which ``refresh`` re-reads. docs/protocol.md, "Devices".

The application reads ``HubClient.events()`` as usual and hands every frame to
``handle`` (one reader per client).
"""

from __future__ import annotations

from typing import Any

from .clock import ClockSync
from .hub import CLIENT_CONNECTED, HubClient
from .playback import position_now


class DevicePlayer:
    def __init__(self, client: HubClient, *, device_id: str, name: str, kind: str) -> None:
        self.client = client
        self.device_id = device_id
        self.name = name
        self.kind = kind
        self.registered = False
        self.active = False
        self.session: int | None = None
        self.playback: dict[str, Any] | None = None

    async def register(self) -> dict[str, Any]:
        """Register (or refresh) this device; returns the ack's content."""
        content = {"device_id": self.device_id, "name": self.name, "kind": self.kind}
        answer = (await self.client.request("device.register", content=content, retry=True))["content"]
        self.registered, self.active = True, bool(answer.get("active"))
        return answer

    async def devices(self) -> list[dict[str, Any]]:
        """The user's devices now (``this`` marks this one); also corrects ``active``."""
        listed = (await self.client.request("device.list", retry=True))["content"]["devices"]
        self.active = any(device["this"] and device["active"] for device in listed)
        return listed

    refresh = devices

    async def transfer(self, device_id: str | None = None) -> dict[str, Any]:
        """Make ``device_id`` (this device by default) the one that plays; returns the ack's content."""
        target = device_id or self.device_id
        answer = (await self.client.request("device.transfer", content={"device_id": target}, retry=True))["content"]
        self._follow(answer, this=answer.get("this", False))
        return answer

    async def handle(self, frame: dict[str, Any]) -> bool:
        """Take one frame from ``events()``; True if it changed whether this device plays, or what."""
        kind = frame.get("type")
        content = frame.get("content") or {}
        if kind == CLIENT_CONNECTED and self.registered and self.client.sessions > 1:
            await self.register()
            return False
        if kind == "device.active":
            self._follow(content, this=bool(content.get("this")))
            return True
        if kind == "device.forgotten" and content.get("this"):
            self.registered = self.active = False
            return True
        return False

    def position_now(self, clock: ClockSync) -> float | None:
        """Where this device's player should be now, or None if it should be silent."""
        if not self.active or self.playback is None:
            return None
        return position_now(self.playback, clock)

    def _follow(self, content: dict[str, Any], *, this: bool) -> None:
        self.active = this
        if this:
            self.session, self.playback = content.get("session"), content.get("playback")

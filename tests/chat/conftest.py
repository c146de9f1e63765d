"""Fixtures of the chat tests: principals of users in two tenants, rooms, and a
listener for broadcasts: on the real fan-out for room traffic and on the real
channel layer for a user's own events (Redis when configured)."""

from __future__ import annotations

import asyncio
import json
import uuid
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from cryptography.fernet import Fernet
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from accounts.constants import Role
from accounts.services.tokens import principal_for_user
from chat.constants import RoomKind
from chat.services.rooms import room_create, room_join
from realtime.fanout import close_fanout, get_fanout
from realtime.groups import room_topic
from tests.factories import UserFactory

requires_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (row locks, full-text search)"
)


# Two encryption keys for the whole run: "k1" older, "k2" newer.
KEY_OLD = f"k1:{Fernet.generate_key().decode()}"
KEY_NEW = f"k2:{Fernet.generate_key().decode()}"

# The smallest PNG a sniffer accepts: its signature and the start of its header.
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(64))


def as_principal(user):
    return principal_for_user(user)


def png_upload(name: str = "photo.png", *, content: bytes = PNG, content_type: str = "image/png"):
    return SimpleUploadedFile(name, content, content_type=content_type)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Uploads of each test go to a directory of its own."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def encryption_keys(settings):
    """One key configured, as after the first deployment with encryption."""
    settings.CHAT_ENCRYPTION_KEYS = [KEY_OLD]
    return settings


@pytest.fixture(autouse=True)
def _moderation_off(settings):
    """These tests send bursts of identical messages, which the shipped moderators
    rightly refuse; the pipeline's own tests (test_moderation*.py) turn it back on."""
    settings.CHAT_MODERATORS = []


@pytest.fixture
def bob(tenant):
    return UserFactory(username="bob", tenant=tenant)


@pytest.fixture
def carol(tenant):
    return UserFactory(username="carol", tenant=tenant)


@pytest.fixture
def tenant_mod(tenant):
    return UserFactory(username="tmod", tenant=tenant, role=Role.MODERATOR)


@pytest.fixture
def alice_p(user):
    return as_principal(user)


@pytest.fixture
def bob_p(bob):
    return as_principal(bob)


@pytest.fixture
def carol_p(carol):
    return as_principal(carol)


@pytest.fixture
def dave_p(other_user):
    return as_principal(other_user)


@pytest.fixture
def people(alice_p, bob_p, carol_p, dave_p):
    """The four principals at once: alice, bob and carol of one tenant, dave of another."""
    return SimpleNamespace(alice=alice_p, bob=bob_p, carol=carol_p, dave=dave_p)


@pytest.fixture
def public_room(alice_p, bob_p):
    """A public room owned by alice, which bob has joined."""
    room = room_create(actor=alice_p, name="general")
    room_join(actor=bob_p, room_id=room.pk)
    return room


@pytest.fixture
def private_room(alice_p):
    return room_create(actor=alice_p, name="secret", kind=RoomKind.PRIVATE)


class Listener:
    """A channel subscribed to groups on the project's channel layer.

    A plain channel name, not a process-local ``new_channel()`` one: each
    ``async_to_sync`` call runs its own event loop, and channels_redis binds a
    process-local channel's receive buffer to the first loop that reads it.
    """

    def __init__(self):
        self.layer = get_channel_layer()
        self.channel = f"chat-test-{uuid.uuid4().hex}"
        self.groups: list[str] = []
        # Room topics are read by a fan-out hub on a private event loop, run
        # only while subscribing and draining (as a server process would run it).
        self.loop: asyncio.AbstractEventLoop | None = None
        self.frames: list[str] = []

    def subscribe(self, group: str) -> None:
        async_to_sync(self.layer.group_add)(group, self.channel)
        self.groups.append(group)

    def close(self) -> None:
        for group in self.groups:
            async_to_sync(self.layer.group_discard)(group, self.channel)
        if self.loop is not None:
            self.loop.run_until_complete(close_fanout())
            self.loop.close()

    def subscribe_room(self, room) -> None:
        topic = room_topic(tenant_id=room.tenant_id, room_id=room.pk)

        async def subscribe():
            hub = get_fanout()
            hub.subscribe(topic, self)
            await hub.wait_subscribed(topic, timeout=3)

        self.loop = self.loop or asyncio.new_event_loop()
        self.loop.run_until_complete(subscribe())

    # realtime.fanout.Subscriber
    def deliver(self, text: str, seq: int | None) -> None:
        self.frames.append(text)

    def resync(self, topic: str) -> None:
        pass

    def drain(self, timeout: float = 0.3) -> list[dict]:
        """What arrived: room frames (without their timestamp) or channel-layer messages."""
        if self.loop is not None:
            self.loop.run_until_complete(asyncio.sleep(timeout))
            frames, self.frames = self.frames, []
            received = [json.loads(text) for text in frames]
            for frame in received:
                del frame["timestamp"]
            return received
        return self._drain_layer(timeout)

    def _drain_layer(self, timeout: float) -> list[dict]:
        async def _drain():
            received = []
            while True:
                try:
                    received.append(await asyncio.wait_for(self.layer.receive(self.channel), timeout))
                except TimeoutError:
                    return received

        return async_to_sync(_drain)()


@pytest.fixture
def listener():
    listeners: list[Listener] = []

    def make() -> Listener:
        listeners.append(Listener())
        return listeners[-1]

    first = make()
    first.another = make
    yield first
    for each in listeners:
        each.close()

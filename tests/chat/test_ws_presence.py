"""Presence and system frames over ``/ws/`` on a real daphne: a user's state
reaches the rooms they are in (online, away, offline after the grace period,
several sockets counting once), and maintenance notices reach the sockets of
the tenant they are addressed to."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings
from django.db import connection

from chat.services.rooms import room_create, room_join
from realtime.events import SystemMaintenance, event_send_on_commit
from realtime.groups import everyone_group, tenant_group
from tests.conftest import daphne_server

from .test_ws_chat import _sockets_settled, joined, ws_client

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

__all__ = ["_sockets_settled"]  # the autouse fixture, shared with test_ws_chat

GRACE_SECONDS = 1


@pytest.fixture(scope="module")
def presence_server_url(django_db_setup, django_db_blocker, tmp_path_factory):
    """A daphne whose offline decision comes one second after the last socket closed."""
    with daphne_server(tmp_path_factory.mktemp("daphne-presence"), PRESENCE_GRACE_SECONDS=str(GRACE_SECONDS)) as url:
        yield url


@pytest.fixture
def room(alice_p, bob_p):
    """alice's room with bob in it; no presence left over for either from an earlier run."""
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        for member in (alice_p, bob_p):
            keys = list(client.scan_iter(match=f"presence:t{member.tenant_id}:u{member.user_id}:*"))
            if keys:
                client.delete(*keys)
        client.close()
    created = room_create(actor=alice_p, name="general")
    room_join(actor=bob_p, room_id=created.pk)
    return created


async def test_a_user_goes_online_once_and_offline_after_the_grace_period(presence_server_url, user, bob, room):
    async with ws_client(presence_server_url, bob) as bobs:
        await joined(bobs, room)
        async with ws_client(presence_server_url, user) as first:
            online = await bobs.expect("presence")
            assert online["room"] == str(room.pk)
            assert online["content"] == {"user": user.pk, "status": "online"}

            async with ws_client(presence_server_url, user):
                # A second device: still one user, already online.
                assert await bobs.frames_of("presence", settle=0.5) == []
            # One of two sockets closed: nothing, now or after the grace period.
            assert await bobs.frames_of("presence", settle=GRACE_SECONDS + 0.7) == []
            assert (await first.request("ping"))["type"] == "pong"
        offline = await bobs.expect("presence", timeout=GRACE_SECONDS + 3)
        assert offline["content"] == {"user": user.pk, "status": "offline"}
        assert await bobs.frames_of("presence", settle=0.3) == []


async def test_a_reconnect_within_the_grace_period_reports_nothing(presence_server_url, user, bob, room):
    async with ws_client(presence_server_url, bob) as bobs:
        await joined(bobs, room)
        async with ws_client(presence_server_url, user):
            await bobs.expect("presence")
        async with ws_client(presence_server_url, user):
            assert await bobs.frames_of("presence", settle=GRACE_SECONDS + 0.7) == []


async def test_away_and_back_are_broadcast_to_the_users_rooms(presence_server_url, user, bob, room):
    async with ws_client(presence_server_url, bob) as bobs:
        await joined(bobs, room)
        async with ws_client(presence_server_url, user) as alice:
            await bobs.expect("presence")
            answer = await alice.request("presence.set", status="away")
            assert answer["content"] == {"status": "away"}
            assert (await bobs.expect("presence"))["content"] == {"user": user.pk, "status": "away"}
            await alice.request("presence.set", status="online")
            assert (await bobs.expect("presence"))["content"] == {"user": user.pk, "status": "online"}

            # The join ack counts away users as present too.
            ack = await joined(alice, room)
            assert ack["content"]["members_online"] == sorted([user.pk, bob.pk])


@pytest.mark.redis
async def test_a_maintenance_notice_reaches_the_tenants_sockets_only(live_server_url, user, other_user, tenant):
    tenant_id = tenant.pk
    async with ws_client(live_server_url, user) as alice, ws_client(live_server_url, other_user) as dave:
        await send_from_a_service(
            group=tenant_group(tenant_id=tenant_id),
            event=SystemMaintenance(message="Upgrade tonight", starts_at="2026-11-23T01:00:00.000Z"),
        )
        notice = await alice.expect("system")
        assert notice["content"] == {
            "kind": "maintenance",
            "message": "Upgrade tonight",
            "starts_at": "2026-11-23T01:00:00.000Z",
        }
        assert await dave.frames_of("system", settle=0.5) == []

        await send_from_a_service(group=everyone_group(), event=SystemMaintenance(message="Everyone"))
        assert (await alice.expect("system"))["content"] == {"kind": "maintenance", "message": "Everyone"}
        assert (await dave.expect("system"))["content"] == {"kind": "maintenance", "message": "Everyone"}


async def send_from_a_service(**kwargs) -> None:
    """``event_send_on_commit`` as a service calls it: synchronous, outside a transaction here."""

    def send() -> None:
        try:
            event_send_on_commit(**kwargs)
        finally:
            # This thread's database connection would outlive the test database.
            connection.close()

    await asyncio.to_thread(send)

"""``HubClient`` in a room across failures, on real daphne processes, PostgreSQL
and Redis: what was sent while a client's server was down reaches it exactly
once and in order after the reconnect; a message whose ack was lost is re-sent
with its client id and stored once; a history the server no longer has is
reported, not papered over.

Two daphne processes share the database and Redis, as two servers behind a
load balancer do: alice's can be stopped while bob keeps talking on the other.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from accounts.services.tokens import principal_for_user
from chat.models import Message
from chat.services.messages import message_send
from chat.services.rooms import room_create, room_join
from realtime.client import CLIENT_CONNECTED, CLIENT_RESUMED, CLIENT_ROOM_LOST, BackoffPolicy, HubClient, HubError
from tests.conftest import ROOT, subprocess_env
from tests.factories import DEFAULT_PASSWORD, UserFactory

from .client_support import Proxy, RecordingTokens, RestartableDaphne

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

FAST_BACKOFF = BackoffPolicy(base=0.1, cap=0.5, stable_after=1.0, throttled_floor=0.0)


@pytest.fixture
def bob(tenant):
    return UserFactory(username="bob", tenant=tenant)


@pytest.fixture
def room(user, bob):
    room = room_create(actor=principal_for_user(user), name="general")
    room_join(actor=principal_for_user(bob), room_id=room.pk)
    return room


def client_for(url: str, user) -> HubClient:
    return HubClient(url, token_provider=RecordingTokens(user), backoff=FAST_BACKOFF, send_timeout=30)


async def messages_seen(client: HubClient, count: int, timeout: float = 15.0) -> list[dict]:
    """The next ``count`` chat.message frames the application receives."""
    seen: list[dict] = []
    async with asyncio.timeout(timeout):
        async for frame in client.events():
            if frame["type"] == "chat.message":
                seen.append(frame)
                if len(seen) == count:
                    return seen
    raise AssertionError(f"events() ended after {len(seen)} messages")


async def next_event(client: HubClient, kind: str, timeout: float = 15.0) -> dict:
    async with asyncio.timeout(timeout):
        async for frame in client.events():
            if frame["type"] == kind:
                return frame
    raise AssertionError(f"events() ended before a {kind!r} frame")


async def no_more_messages(client: HubClient, wait: float = 1.0) -> list[dict]:
    """Whatever chat.message frames arrive within ``wait`` seconds (expected: none)."""
    extra: list[dict] = []
    try:
        async with asyncio.timeout(wait):
            async for frame in client.events():
                if frame["type"] == "chat.message":
                    extra.append(frame)
    except TimeoutError:
        pass
    return extra


def stored(room_id: int) -> list[tuple[int, str, str]]:
    return list(Message.objects.filter(room_id=room_id).order_by("seq").values_list("seq", "body", "client_id"))


async def test_messages_sent_during_an_outage_arrive_once_and_in_order(servers, user, bob, room):
    alice_server, bob_server = servers
    async with client_for(alice_server.url, user) as alice, client_for(bob_server.url, bob) as bob_client:
        await alice.join(room.pk)
        await bob_client.join(room.pk)
        first = await bob_client.send_message(room.pk, "before the outage")
        assert [frame["seq"] for frame in await messages_seen(alice, 1)] == [first["seq"]]

        alice_server.stop()
        # Alice types while her server is down: the send waits for the next socket.
        pending = asyncio.create_task(alice.send_message(room.pk, "typed during the outage"))
        for n in range(5):
            await bob_client.send_message(room.pk, f"missed {n}")

        alice_server.start()
        mine = await pending
        frames = await messages_seen(alice, 6)
        assert await no_more_messages(alice) == []

    seqs = [frame["seq"] for frame in frames]
    assert seqs == list(range(first["seq"] + 1, first["seq"] + 7))
    bodies = [frame["content"]["message"]["body"] for frame in frames]
    assert [body for body in bodies if body.startswith("missed")] == [f"missed {n}" for n in range(5)]
    assert "typed during the outage" in bodies
    assert alice.sessions == 2
    assert alice.last_seq(room.pk) == seqs[-1]
    rows = await database_sync_to_async(stored)(room.pk)
    assert [seq for seq, _body, _cid in rows] == [first["seq"], *seqs]
    assert sum(1 for _seq, body, _cid in rows if body == "typed during the outage") == 1
    assert mine["seq"] in seqs


async def test_a_send_whose_ack_was_lost_is_resent_and_stored_once(servers, user, room):
    server, _other = servers
    proxy = Proxy(server.port)
    await proxy.start()
    try:
        async with client_for(proxy.url, user) as alice:
            await alice.join(room.pk)
            proxy.mute()
            sending = asyncio.create_task(alice.send_message(room.pk, "hello once", client_id="c-lost-ack"))
            # The server stores the message and answers, but nothing reaches the client.
            async with asyncio.timeout(10):
                while not await database_sync_to_async(stored)(room.pk):
                    await asyncio.sleep(0.05)
            assert not sending.done()
            proxy.cut()

            ack = await sending
            frames = await messages_seen(alice, 1)
            assert await no_more_messages(alice) == []
    finally:
        await proxy.close()

    rows = await database_sync_to_async(stored)(room.pk)
    assert rows == [(ack["seq"], "hello once", "c-lost-ack")]
    # The resend was answered with the first ack.
    assert ack["created"] is False
    assert [frame["seq"] for frame in frames] == [ack["seq"]]
    assert alice.sessions == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="deletes rows with PostgreSQL SQL")
async def test_a_history_lost_while_away_is_reported(servers, user, bob, room):
    alice_server, bob_server = servers
    async with client_for(alice_server.url, user) as alice, client_for(bob_server.url, bob) as bob_client:
        await alice.join(room.pk)
        await bob_client.join(room.pk)
        alice_server.stop()
        acks = [await bob_client.send_message(room.pk, f"m{n}") for n in range(4)]
        lost = [acks[1]["seq"], acks[2]["seq"]]

        def erase() -> None:
            # As retention would: the rows are gone, the room's seq counter is not.
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM chat_message WHERE room_id = %s AND seq = ANY(%s)", [room.pk, lost])

        await database_sync_to_async(erase)()
        alice_server.start()
        await next_event(alice, CLIENT_CONNECTED)
        resumed = await next_event(alice, CLIENT_RESUMED)
        frames = await messages_seen(alice, 2)

    assert resumed["room"] == str(room.pk)
    assert resumed["content"]["recovered"] is False
    assert resumed["content"]["missing"] == [lost]
    assert [frame["seq"] for frame in frames] == [acks[0]["seq"], acks[3]["seq"]]


async def test_replayed_messages_already_delivered_are_dropped(servers, user, bob, room):
    server, _other = servers
    async with client_for(server.url, user) as alice, client_for(server.url, bob) as bob_client:
        await alice.join(room.pk)
        await bob_client.join(room.pk)
        acks = [await bob_client.send_message(room.pk, f"m{n}") for n in range(3)]
        assert [frame["seq"] for frame in await messages_seen(alice, 3)] == [ack["seq"] for ack in acks]

        # Ask the server to replay the whole room: every frame is one the application has seen.
        answer = await alice.request("room.join", room=room.pk, content={"last_seq": 0})
        assert answer["content"]["last_seq"] == acks[-1]["seq"]
        assert await no_more_messages(alice) == []

        later = await bob_client.send_message(room.pk, "new")
        assert [frame["seq"] for frame in await messages_seen(alice, 1)] == [later["seq"]]


@pytest.fixture
def throttled_server(transactional_db, tmp_path):
    """A daphne allowing 4 frames at once and 2 per second: a dozen rejoins cannot go through in one burst."""
    server = RestartableDaphne(tmp_path, WS_RATE_LIMIT_BURST="4", WS_RATE_LIMIT_RATE="2")
    server.start()
    yield server
    server.stop()


async def test_rejoining_more_rooms_than_the_frame_rate_allows_keeps_them_all(throttled_server, user):
    alice_p = await database_sync_to_async(principal_for_user)(user)
    rooms = [await database_sync_to_async(room_create)(actor=alice_p, name=f"room-{n}") for n in range(12)]
    async with client_for(throttled_server.url, user) as alice:
        for room in rooms:
            while True:
                try:
                    await alice.join(room.pk)
                    break
                except HubError as exc:
                    assert exc.code == "rate_limited"
                    await asyncio.sleep(exc.retry_after)
        throttled_server.stop()
        throttled_server.start()
        frames = []
        async with asyncio.timeout(30):
            async for frame in alice.events():
                frames.append(frame)
                if frame["type"] == CLIENT_CONNECTED and alice.sessions == 2:
                    break

    assert sorted(alice.rooms) == sorted(str(room.pk) for room in rooms)
    assert [frame for frame in frames if frame["type"] == CLIENT_ROOM_LOST] == []


def test_cli_chat_sends_stdin_lines_prints_the_room_and_keeps_the_last_seq(servers, user, bob, room, tmp_path):
    server, _other = servers
    resume = tmp_path / "alice.seq"
    command = [
        sys.executable,
        "-m",
        "realtime.client",
        "chat",
        "--url",
        server.url,
        "--username",
        "alice",
        "--room",
        str(room.pk),
        "--resume-file",
        str(resume),
    ]
    env = subprocess_env(HUB_PASSWORD=DEFAULT_PASSWORD)
    run = {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "timeout": 60}
    first = subprocess.run(command, check=False, input="hello\nsecond line\n", **run)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["[1] alice: hello", "[2] alice: second line"]
    assert resume.read_text() == "2\n"

    message_send(actor=principal_for_user(bob), room_id=room.pk, client_id="b-1", body="while alice was away")
    # Restarted with the resume file: only what came after seq 2 is printed.
    second = subprocess.run(command, check=False, input="", **run)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == ["[3] bob: while alice was away"]
    assert resume.read_text() == "3\n"

"""The chat family over ``/ws/`` on a real daphne: joining and live delivery through
the fan-out, idempotent sends, gap-free seqs, resume (recovered or not), tenant
isolation, typing, receipts, history, and every error path."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from contextlib import asynccontextmanager

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from chat.constants import RoomKind
from chat.models import Message, RoomMember
from chat.services.messages import message_send
from chat.services.rooms import room_create, room_invite, room_join, room_kick
from tests.conftest import wait_for_sockets_recorded
from tests.factories import UserFactory
from tests.realtime.conftest import access_token, bearer, connected, open_ws, ws_url

from .conftest import as_principal

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

_ids = itertools.count(1)


class Client:
    """One socket: ``request`` sends a frame with an id and returns its answer;
    every other frame is kept, in order, for ``expect`` and ``frames_of``."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.inbox: list[dict] = []

    async def _recv(self, timeout: float) -> dict:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def request(self, type_: str, *, room=None, timeout: float = 5.0, **content) -> dict:
        frame_id = f"r{next(_ids)}"
        frame = {"type": type_, "id": frame_id, "content": content}
        if room is not None:
            frame["room"] = str(room)
        await self.ws.send(json.dumps(frame))
        async with asyncio.timeout(timeout):
            while True:
                received = await self._recv(timeout)
                if received.get("id") == frame_id:
                    return received
                self.inbox.append(received)

    async def expect(self, type_: str, timeout: float = 3.0) -> dict:
        """The next frame of ``type_`` (earlier frames of other types stay kept)."""
        for index, frame in enumerate(self.inbox):
            if frame["type"] == type_:
                return self.inbox.pop(index)
        async with asyncio.timeout(timeout):
            while True:
                received = await self._recv(timeout)
                if received["type"] == type_:
                    return received
                self.inbox.append(received)

    async def settle(self, seconds: float = 0.3) -> list[dict]:
        """Everything that arrives within ``seconds``, added to the inbox; returns the inbox."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    self.inbox.append(await self._recv(seconds))
        except TimeoutError:
            pass
        return self.inbox

    async def frames_of(self, type_: str, settle: float = 0.3) -> list[dict]:
        """Every kept frame of ``type_`` (after waiting ``settle``), removed from the inbox."""
        await self.settle(settle)
        found = [frame for frame in self.inbox if frame["type"] == type_]
        self.inbox = [frame for frame in self.inbox if frame["type"] != type_]
        return found


@asynccontextmanager
async def ws_client(server_url: str, user):
    token = await database_sync_to_async(access_token)(user)
    async with open_ws(ws_url(server_url), additional_headers=bearer(token)) as ws:
        await connected(ws)
        yield Client(ws)


async def joined(client: Client, room, **content) -> dict:
    answer = await client.request("room.join", room=room.pk, **content)
    assert answer["type"] == "ack", answer
    return answer


def message_seqs(frames: list[dict]) -> list[int]:
    return [frame["seq"] for frame in frames]


@pytest.fixture(autouse=True)
def _sockets_settled(transactional_db):
    """So that the test's database flush does not race daphne's last inserts."""
    yield
    wait_for_sockets_recorded()


@pytest.fixture
def senders(user, bob, carol):
    return [user, bob, carol]


@pytest.fixture
def watcher(tenant):
    return UserFactory(username="watcher", tenant=tenant)


@pytest.fixture
def room(alice_p):
    """A public room owned by alice; nobody else has joined yet."""
    return room_create(actor=alice_p, name="general")


# --- Delivery -----------------------------------------------------------------------------


async def test_two_members_get_each_others_messages_once_with_seq(live_server_url, user, bob, room):
    async with ws_client(live_server_url, user) as alice, ws_client(live_server_url, bob) as bobs:
        ack = await joined(alice, room)
        assert ack["content"]["room"] == str(room.pk)
        assert (ack["content"]["last_seq"], ack["content"]["recovered"], ack["content"]["missing"]) == (0, True, [])
        await joined(bobs, room)  # joins the membership too

        sent = await alice.request("chat.message", room=room.pk, client_id="a-1", body="hi bob")
        assert sent["type"] == "ack"
        assert (sent["content"]["seq"], sent["content"]["created"]) == (1, True)
        got = await bobs.expect("chat.message")
        assert (got["room"], got["seq"]) == (str(room.pk), 1)
        assert got["content"]["message"]["body"] == "hi bob"
        assert got["content"]["message"]["id"] == sent["content"]["message_id"]

        await bobs.request("chat.message", room=room.pk, client_id="b-1", body="hi alice")
        # Everyone subscribed gets every message, their own included, once.
        assert message_seqs([await alice.expect("chat.message") for _ in range(2)]) == [1, 2]
        assert (await bobs.expect("chat.message"))["seq"] == 2

        assert await bobs.frames_of("chat.message") == []
        assert await alice.frames_of("chat.message") == []


async def test_resend_with_the_same_client_id_answers_the_same_ack_and_broadcasts_once(
    live_server_url, user, bob, room
):
    async with ws_client(live_server_url, user) as alice, ws_client(live_server_url, bob) as bobs:
        await joined(alice, room)
        await joined(bobs, room)

        first = await alice.request("chat.message", room=room.pk, client_id="same", body="once")
        again = await alice.request("chat.message", room=room.pk, client_id="same", body="once")

        assert (first["content"]["seq"], first["content"]["message_id"]) == (
            again["content"]["seq"],
            again["content"]["message_id"],
        )
        assert (first["content"]["created"], again["content"]["created"]) == (True, False)
        assert message_seqs(await bobs.frames_of("chat.message", settle=0.5)) == [1]
    assert await database_sync_to_async(Message.objects.filter(room=room).count)() == 1


async def test_seqs_reach_a_member_gap_free_and_in_order_while_three_clients_send_at_once(
    live_server_url, senders, room, watcher
):
    per_sender = 10
    async with contextlib.AsyncExitStack() as stack:
        observer = await stack.enter_async_context(ws_client(live_server_url, watcher))
        await joined(observer, room)
        clients = [await stack.enter_async_context(ws_client(live_server_url, sender)) for sender in senders]
        for client in clients:
            await joined(client, room)

        async def send_all(index: int, client: Client) -> None:
            for number in range(per_sender):
                answer = await client.request(
                    "chat.message", room=room.pk, client_id=f"{index}-{number}", body=f"message {number}"
                )
                assert answer["type"] == "ack", answer

        await asyncio.gather(*(send_all(index, client) for index, client in enumerate(clients)))
        total = len(clients) * per_sender
        frames = [await observer.expect("chat.message") for _ in range(total)]
        assert message_seqs(frames) == list(range(1, total + 1))
        assert await observer.frames_of("chat.message") == []


# --- Resume -------------------------------------------------------------------------------


async def test_a_reconnecting_member_gets_exactly_what_it_missed_then_live_messages(live_server_url, user, bob, room):
    async with ws_client(live_server_url, bob) as bobs:
        await joined(bobs, room)
        async with ws_client(live_server_url, user) as alice:
            await joined(alice, room)
            await bobs.request("chat.message", room=room.pk, client_id="before", body="seen")
            seen = await alice.expect("chat.message")
        # alice is gone; bob keeps talking.
        for number in range(5):
            await bobs.request("chat.message", room=room.pk, client_id=f"missed-{number}", body=f"m{number}")

        async with ws_client(live_server_url, user) as alice:
            ack = await joined(alice, room, last_seq=seen["seq"])
            assert (ack["content"]["last_seq"], ack["content"]["recovered"], ack["content"]["missing"]) == (6, True, [])
            replayed = [await alice.expect("chat.message") for _ in range(5)]
            assert message_seqs(replayed) == [2, 3, 4, 5, 6]
            assert [frame["content"]["message"]["body"] for frame in replayed] == [f"m{n}" for n in range(5)]
            # The replay came after the ack, and live frames follow it.
            assert alice.inbox == [] or all(frame["type"] != "chat.message" for frame in alice.inbox)

            await bobs.request("chat.message", room=room.pk, client_id="after", body="live")
            assert (await alice.expect("chat.message"))["seq"] == 7
            assert await alice.frames_of("chat.message") == []


async def test_the_ack_of_a_resume_precedes_the_replay(live_server_url, user, bob, room):
    async with ws_client(live_server_url, bob) as bobs:
        await joined(bobs, room)
        for number in range(3):
            await bobs.request("chat.message", room=room.pk, client_id=f"c{number}", body=f"m{number}")
    async with ws_client(live_server_url, user) as alice:
        await alice.ws.send(
            json.dumps({"type": "room.join", "id": "j", "room": str(room.pk), "content": {"last_seq": 0}})
        )
        frames = [json.loads(await asyncio.wait_for(alice.ws.recv(), 3)) for _ in range(4)]
    assert [frame["type"] for frame in frames] == ["ack", "chat.message", "chat.message", "chat.message"]
    assert message_seqs(frames[1:]) == [1, 2, 3]


async def test_a_resume_over_deleted_rows_reports_the_missing_ranges(live_server_url, user, alice_p, room):
    def post_and_erase() -> None:
        for number in range(6):
            message_send(actor=alice_p, room_id=room.pk, client_id=f"c{number}", body=f"m{number}")
        with connection.cursor() as cursor:
            # As retention or an erasure would: rows gone, seqs not reused.
            cursor.execute("DELETE FROM chat_message WHERE room_id = %s AND seq IN (2, 3, 5)", [room.pk])

    await database_sync_to_async(post_and_erase)()
    async with ws_client(live_server_url, user) as alice:
        ack = await joined(alice, room, last_seq=0)
        assert ack["content"]["recovered"] is False
        assert ack["content"]["missing"] == [[2, 3], [5, 5]]
        assert ack["content"]["last_seq"] == 6
        replayed = [await alice.expect("chat.message") for _ in range(3)]
        assert message_seqs(replayed) == [1, 4, 6]
        assert await alice.frames_of("chat.message") == []


async def test_a_resume_includes_tombstones(live_server_url, user, bob, room):
    async with ws_client(live_server_url, user) as alice:
        await joined(alice, room)
        await alice.request("chat.message", room=room.pk, client_id="c1", body="oops")
        answer = await alice.request("chat.delete", room=room.pk, seq=1)
        assert answer["type"] == "ack"
    async with ws_client(live_server_url, user) as alice:
        await joined(alice, room, last_seq=0)
        tombstone = await alice.expect("chat.message")
    assert tombstone["seq"] == 1
    assert (tombstone["content"]["message"]["deleted"], tombstone["content"]["message"]["body"]) == (True, "")


# --- Authorization -----------------------------------------------------------------------


async def test_tenants_are_isolated(live_server_url, user, other_user, dave_p, room):
    theirs = await database_sync_to_async(room_create)(actor=dave_p, name="general")
    async with ws_client(live_server_url, user) as alice, ws_client(live_server_url, other_user) as dave:
        await joined(alice, room)
        await joined(dave, theirs)
        for type_, content in [
            ("room.join", {}),
            ("chat.message", {"client_id": "x", "body": "hi"}),
            ("chat.history", {}),
            ("chat.typing", {"typing": True}),
            ("chat.read", {"seq": 0}),
        ]:
            answer = await dave.request(type_, room=room.pk, **content)
            assert (answer["type"], answer["code"]) == ("error", "not_found"), (type_, answer)

        await alice.request("chat.message", room=room.pk, client_id="a", body="acme only")
        await alice.request("chat.typing", room=room.pk, typing=True)
        assert (await alice.expect("chat.message"))["seq"] == 1
        assert await dave.settle(0.5) == []


async def test_a_private_room_is_not_found_for_a_non_member_and_open_to_the_invited(
    live_server_url, bob, carol, alice_p, bob_p
):
    private = await database_sync_to_async(room_create)(actor=alice_p, name="secret", kind=RoomKind.PRIVATE)
    await database_sync_to_async(room_invite)(actor=alice_p, room_id=private.pk, user_id=bob_p.user_id)
    async with ws_client(live_server_url, carol) as carols, ws_client(live_server_url, bob) as bobs:
        answer = await carols.request("room.join", room=private.pk)
        assert (answer["type"], answer["code"]) == ("error", "not_found")
        answer = await carols.request("chat.history", room=private.pk)
        assert (answer["type"], answer["code"]) == ("error", "not_found")

        ack = await joined(bobs, private)
        assert ack["content"]["room"] == str(private.pk)
    assert await database_sync_to_async(RoomMember.objects.filter(room=private, user=bob).exists)()


async def test_every_chat_error_code_path(live_server_url, user, bob, alice_p, room):
    await database_sync_to_async(message_send)(actor=alice_p, room_id=room.pk, client_id="c1", body="alice's")
    async with ws_client(live_server_url, bob) as bobs:
        cases = [
            # (type, room, content, code)
            ("chat.message", None, {"client_id": "x", "body": "hi"}, "invalid"),
            ("chat.message", "not-a-room", {"client_id": "x", "body": "hi"}, "not_found"),
            ("chat.message", "999999999", {"client_id": "x", "body": "hi"}, "not_found"),
            ("chat.message", room.pk, {"client_id": "x", "body": "not joined"}, "forbidden"),
            ("chat.history", room.pk, {}, "forbidden"),
            ("room.leave", room.pk, {}, "forbidden"),
        ]
        for type_, room_id, content, code in cases:
            answer = await bobs.request(type_, room=room_id, **content)
            assert (answer["type"], answer.get("code")) == ("error", code), (type_, content, answer)

        await joined(bobs, room)
        member_cases = [
            ("chat.message", {"client_id": "x", "body": "   "}, "invalid"),
            ("chat.message", {"client_id": "x"}, "invalid"),
            ("chat.message", {"client_id": "x", "body": "hi", "reply_to_seq": 99}, "invalid"),
            ("chat.edit", {"seq": 1, "body": "mine now"}, "forbidden"),
            ("chat.edit", {"seq": 42, "body": "no such"}, "not_found"),
            ("chat.edit", {"seq": "1", "body": "x"}, "invalid"),
            ("chat.delete", {"seq": 1}, "forbidden"),
            ("chat.react", {"seq": 1, "emoji": "🔥", "action": "explode"}, "invalid"),
            ("chat.react", {"seq": 1, "emoji": "  ", "action": "add"}, "invalid"),
            ("chat.read", {"seq": -1}, "invalid"),
            ("chat.history", {"before_seq": 2, "after_seq": 1}, "invalid"),
            ("chat.history", {"limit": 0}, "invalid"),
            ("chat.typing", {"typing": "yes"}, "invalid"),
            ("room.join", {"last_seq": 5}, "invalid"),
            ("presence.set", {"status": "invisible"}, "invalid"),
        ]
        for type_, content, code in member_cases:
            answer = await bobs.request(type_, room=room.pk, **content)
            assert (answer["type"], answer.get("code")) == ("error", code), (type_, content, answer)
            if code == "invalid" and type_ != "presence.set":
                assert answer["content"].get("fields"), answer

        sent = await bobs.request("chat.message", room=room.pk, client_id="b1", body="to delete")
        seq = sent["content"]["seq"]
        await bobs.request("chat.delete", room=room.pk, seq=seq)
        answer = await bobs.request("chat.edit", room=room.pk, seq=seq, body="too late")
        assert (answer["type"], answer["code"]) == ("error", "conflict")
        answer = await bobs.request("chat.react", room=room.pk, seq=seq, emoji="🔥", action="add")
        assert (answer["type"], answer["code"]) == ("error", "conflict")


async def test_a_member_who_left_stops_receiving_and_is_refused(live_server_url, user, bob, room):
    async with ws_client(live_server_url, user) as alice, ws_client(live_server_url, bob) as bobs:
        await joined(alice, room)
        await joined(bobs, room)
        left = await bobs.request("room.leave", room=room.pk)
        assert left["type"] == "ack"
        await alice.request("chat.message", room=room.pk, client_id="after-leave", body="gone?")
        assert await bobs.frames_of("chat.message", settle=0.5) == []
        answer = await bobs.request("chat.read", room=room.pk, seq=1)
        assert (answer["type"], answer["code"]) == ("error", "forbidden")


@pytest.mark.redis
async def test_a_kicked_member_stops_receiving_on_every_socket(live_server_url, user, bob, alice_p, room):
    async with (
        ws_client(live_server_url, user) as alice,
        ws_client(live_server_url, bob) as phone,
        ws_client(live_server_url, bob) as laptop,
    ):
        await joined(alice, room)
        await joined(phone, room)
        await joined(laptop, room)

        await database_sync_to_async(room_kick)(actor=alice_p, room_id=room.pk, user_id=bob.pk)
        for socket in (phone, laptop):
            left = await socket.expect("room.member_left")
            assert left["content"]["reason"] == "kicked"
        await alice.request("chat.message", room=room.pk, client_id="after-kick", body="private now")
        assert (await alice.expect("chat.message"))["seq"] == 1
        assert await phone.frames_of("chat.message", settle=0.5) == []
        assert await laptop.frames_of("chat.message", settle=0.1) == []


async def test_unsubscribe_stops_the_stream_but_keeps_the_membership(live_server_url, user, bob, room):
    async with ws_client(live_server_url, user) as alice, ws_client(live_server_url, bob) as bobs:
        await joined(alice, room)
        await joined(bobs, room)
        assert (await bobs.request("room.unsubscribe", room=room.pk))["type"] == "ack"
        await alice.request("chat.message", room=room.pk, client_id="m", body="quiet")
        assert await bobs.frames_of("chat.message", settle=0.5) == []
        answer = await bobs.request("chat.history", room=room.pk)
        assert [m["body"] for m in answer["content"]["messages"]] == ["quiet"]


# --- Edits, reactions, receipts, typing, history --------------------------------------------


async def test_edits_reactions_and_deletes_are_broadcast_outside_the_message_sequence(live_server_url, user, bob, room):
    async with ws_client(live_server_url, user) as alice, ws_client(live_server_url, bob) as bobs:
        await joined(alice, room)
        await joined(bobs, room)
        await alice.request("chat.message", room=room.pk, client_id="m", body="first")
        assert (await alice.request("chat.edit", room=room.pk, seq=1, body="first!"))["type"] == "ack"
        react = await bobs.request("chat.react", room=room.pk, seq=1, emoji="🔥", action="add")
        assert react["content"] == {"seq": 1, "changed": True}
        assert (await alice.request("chat.delete", room=room.pk, seq=1))["type"] == "ack"
        await alice.request("chat.message", room=room.pk, client_id="m2", body="second")

        assert (await bobs.expect("chat.message"))["seq"] == 1
        edited = await bobs.expect("chat.edited")
        assert "seq" not in edited and edited["content"]["seq"] == 1
        assert edited["content"]["message"]["body"] == "first!"
        reaction = await bobs.expect("chat.reaction")
        assert (reaction["content"]["emoji"], reaction["content"]["count"]) == ("🔥", 1)
        deleted = await bobs.expect("chat.deleted")
        assert deleted["content"] == {"room": room.pk, "seq": 1, "by_moderator": False}
        # The next message still follows in the message sequence.
        assert (await bobs.expect("chat.message"))["seq"] == 2


async def test_read_receipts_are_broadcast_unless_the_reader_keeps_them_private(live_server_url, user, bob, room):
    async with ws_client(live_server_url, user) as alice, ws_client(live_server_url, bob) as bobs:
        await joined(alice, room)
        await joined(bobs, room)
        await alice.request("chat.message", room=room.pk, client_id="1", body="one")
        await alice.request("chat.message", room=room.pk, client_id="2", body="two")

        answer = await bobs.request("chat.read", room=room.pk, seq=1)
        assert answer["content"] == {"last_read_seq": 1}
        receipt = await alice.expect("chat.read")
        assert receipt["content"]["user"] == {"id": bob.pk, "username": "bob"}
        assert receipt["content"]["seq"] == 1

        await database_sync_to_async(RoomMember.objects.filter(room=room, user=bob).update)(receipts_private=True)
        answer = await bobs.request("chat.read", room=room.pk, seq=2)
        assert answer["content"] == {"last_read_seq": 2}
        assert await alice.frames_of("chat.read", settle=0.5) == []


async def test_typing_is_throttled_broadcast_and_never_stored(live_server_url, user, bob, room):
    async with ws_client(live_server_url, user) as alice, ws_client(live_server_url, bob) as bobs:
        await joined(alice, room)
        await joined(bobs, room)
        answers = [await alice.request("chat.typing", room=room.pk, typing=True) for _ in range(3)]
        assert [answer["content"]["broadcast"] for answer in answers] == [True, False, False]
        typing = await bobs.frames_of("chat.typing", settle=0.5)
        assert len(typing) == 1
        assert typing[0]["room"] == str(room.pk) and "seq" not in typing[0]
        assert typing[0]["content"]["user"] == {"id": user.pk, "username": "alice"}
        assert typing[0]["content"]["typing"] is True
        assert typing[0]["content"]["expires_in"] > 0

        stop = await alice.request("chat.typing", room=room.pk, typing=False)
        assert stop["content"]["broadcast"] is True
        assert (await bobs.expect("chat.typing"))["content"]["typing"] is False
        # A stop without a broadcast start before it is not sent.
        assert (await alice.request("chat.typing", room=room.pk, typing=False))["content"]["broadcast"] is False
    assert await database_sync_to_async(Message.objects.filter(room=room).count)() == 0


async def test_history_pages_backwards_and_forwards(live_server_url, user, alice_p, room):
    def post() -> None:
        for number in range(1, 6):
            message_send(actor=alice_p, room_id=room.pk, client_id=f"c{number}", body=f"m{number}")

    await database_sync_to_async(post)()
    async with ws_client(live_server_url, user) as alice:

        async def page(**content) -> tuple[list[int], bool]:
            answer = await alice.request("chat.history", room=room.pk, **content)
            assert answer["type"] == "chat.history", answer
            return [m["seq"] for m in answer["content"]["messages"]], answer["content"]["has_more"]

        assert await page(limit=2) == ([4, 5], True)
        assert await page(before_seq=4, limit=2) == ([2, 3], True)
        assert await page(before_seq=2, limit=2) == ([1], False)
        assert await page(after_seq=3, limit=5) == ([4, 5], False)
        assert await page(after_seq=0, limit=2) == ([1, 2], True)
        assert await page(after_seq=5) == ([], False)


# --- The fan-out -------------------------------------------------------------------------------


@pytest.mark.redis
async def test_closing_every_socket_leaves_no_subscription_behind(live_server_url, user, bob, room, settings):
    import redis

    channel = f"{settings.FANOUT_CHANNEL_PREFIX}.t{room.tenant_id}.room.{room.pk}"
    admin = redis.Redis.from_url(settings.REDIS_URL)

    def numsub() -> int:
        return dict(admin.pubsub_numsub(channel))[channel.encode()]

    try:
        async with ws_client(live_server_url, user) as alice, ws_client(live_server_url, bob) as bobs:
            await joined(alice, room)
            await joined(bobs, room)
            # Two sockets of one process: one Redis subscription.
            assert numsub() == 1
        async with asyncio.timeout(5):
            while numsub() != 0:
                await asyncio.sleep(0.05)
    finally:
        admin.close()


async def test_a_second_join_replaces_the_subscription_without_duplicates(live_server_url, user, bob, room):
    async with ws_client(live_server_url, user) as alice, ws_client(live_server_url, bob) as bobs:
        await joined(alice, room)
        await joined(bobs, room)
        await joined(bobs, room)
        await alice.request("chat.message", room=room.pk, client_id="m", body="once")
        assert message_seqs(await bobs.frames_of("chat.message", settle=0.5)) == [1]


async def test_the_join_ack_lists_the_members_online(live_server_url, user, bob, tenant, room):
    third = await database_sync_to_async(UserFactory)(username="third", tenant=tenant)
    await database_sync_to_async(room_join)(actor=await database_sync_to_async(as_principal)(bob), room_id=room.pk)
    async with ws_client(live_server_url, user):
        async with ws_client(live_server_url, third) as client:
            ack = await joined(client, room)
    # alice (the owner) and the joiner are connected; bob, a member, is not.
    assert ack["content"]["members_online"] == sorted([user.pk, third.pk])

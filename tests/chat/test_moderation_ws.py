"""Moderation over ``/ws/`` on a real daphne (with the shipped pipeline): a rejected
message answers an ``error`` frame with code ``moderated`` and stores nothing; a
flagged one is acked and delivered like any other."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chat.constants import BlockedWordAction, ModerationStatus
from chat.models import BlockedWord, Message
from chat.services.rooms import room_create
from tests.chat.test_ws_chat import _sockets_settled, joined, ws_client  # noqa: F401 (autouse fixture)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def room(tenant, alice_p):
    BlockedWord.objects.create(tenant=tenant, phrase="buy followers", action=BlockedWordAction.REJECT)
    BlockedWord.objects.create(tenant=tenant, phrase="spam", action=BlockedWordAction.FLAG)
    return room_create(actor=alice_p, name="general")


async def test_rejected_and_flagged_messages_over_the_socket(live_server_url, user, bob, room):
    async with ws_client(live_server_url, user) as alice, ws_client(live_server_url, bob) as bobs:
        await joined(alice, room)
        await joined(bobs, room)

        refused = await alice.request("chat.message", room=room.pk, client_id="r", body="Buy  FOLLOWERS here")
        assert (refused["type"], refused["code"], refused["content"]) == (
            "error",
            "moderated",
            {"reason": "blocked_word"},
        )

        flagged = await alice.request("chat.message", room=room.pk, client_id="f", body="spam, sorry")
        assert flagged["type"] == "ack", flagged
        assert flagged["content"]["seq"] == 1
        delivered = await bobs.expect("chat.message")
        assert delivered["content"]["message"]["body"] == "spam, sorry"
        assert await bobs.frames_of("chat.message") == []

    stored = await database_sync_to_async(lambda: list(Message.objects.values_list("seq", "moderation_status")))()
    assert stored == [(1, ModerationStatus.FLAGGED)]


async def test_edits_are_moderated_over_the_socket(live_server_url, user, bob, room):
    async with ws_client(live_server_url, user) as alice, ws_client(live_server_url, bob) as bobs:
        await joined(alice, room)
        await joined(bobs, room)
        assert (await alice.request("chat.message", room=room.pk, client_id="m", body="hello"))["type"] == "ack"
        await bobs.expect("chat.message")

        refused = await alice.request("chat.edit", room=room.pk, seq=1, body="buy followers now")
        assert (refused["type"], refused["code"], refused["content"]) == (
            "error",
            "moderated",
            {"reason": "blocked_word"},
        )
        flagged = await alice.request("chat.edit", room=room.pk, seq=1, body="hello spam")
        assert flagged["type"] == "ack", flagged
        edited = await bobs.expect("chat.edited")
        assert edited["content"]["message"]["body"] == "hello spam"
        assert await bobs.frames_of("chat.edited") == []

    stored = await database_sync_to_async(
        lambda: list(Message.objects.values_list("body", "moderation_status", "moderation_reason"))
    )()
    assert stored == [("hello spam", ModerationStatus.FLAGGED, "Blocked words: spam")]

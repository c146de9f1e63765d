"""Over ``/ws/`` on a real daphne: unread counts (``chat.unread`` and the
``room.join`` ack), messages carrying attachments, and an encrypted room, which
clients cannot tell from a plain one."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from chat.models import Message
from chat.services.attachments import attachment_upload
from chat.services.messages import message_send
from chat.services.rooms import room_create, room_join
from tests.conftest import daphne_server

from .conftest import KEY_OLD, as_principal, png_upload
from .test_ws_chat import _sockets_settled, joined, ws_client  # noqa: F401 (autouse fixture)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def rooms(user, bob):
    """Two rooms alice owns and bob is in; bob has read nothing."""
    alice_p, bob_p = as_principal(user), as_principal(bob)
    first, second = room_create(actor=alice_p, name="first"), room_create(actor=alice_p, name="second")
    for room in (first, second):
        room_join(actor=bob_p, room_id=room.pk)
    for index in range(3):
        message_send(actor=alice_p, room_id=first.pk, client_id=f"a{index}", body=f"news {index}")
    message_send(actor=alice_p, room_id=second.pk, client_id="b", body="more news")
    return first, second


async def test_unread_counts_over_the_socket(live_server_url, user, bob, rooms, tenant):
    first, second = rooms
    async with ws_client(live_server_url, bob) as bobs:
        answer = await bobs.request("chat.unread")
        assert answer["type"] == "chat.unread", answer
        assert answer["content"]["rooms"] == [
            {"room": str(first.pk), "unread": 3, "last_read_seq": 0},
            {"room": str(second.pk), "unread": 1, "last_read_seq": 0},
        ]

        assert (await bobs.request("chat.read", room=first.pk, seq=2))["content"] == {"last_read_seq": 2}
        one = await bobs.request("chat.unread", room=first.pk)
        assert one["content"]["rooms"] == [{"room": str(first.pk), "unread": 1, "last_read_seq": 2}]

        ack = await joined(bobs, first)
        assert (ack["content"]["last_seq"], ack["content"]["last_read_seq"], ack["content"]["unread"]) == (3, 2, 1)

        # A room the caller is not in answers as any room they cannot see.
        private = await database_sync_to_async(room_create)(actor=as_principal(user), name="p", kind="private")
        refused = await bobs.request("chat.unread", room=private.pk)
        assert (refused["type"], refused["code"]) == ("error", "not_found")
        garbage = await bobs.request("chat.unread", room="not-a-room")
        assert (garbage["type"], garbage["code"]) == ("error", "not_found")


async def test_a_message_with_attachments_over_the_socket(live_server_url, user, bob, rooms):
    first, _ = rooms
    upload = await database_sync_to_async(attachment_upload)(
        actor=as_principal(user), room_id=first.pk, upload=png_upload("cover.png"), declared_content_type="image/png"
    )
    async with ws_client(live_server_url, user) as alice, ws_client(live_server_url, bob) as bobs:
        await joined(alice, first)
        await joined(bobs, first)

        sent = await alice.request("chat.message", room=first.pk, client_id="pic", body="", attachments=[upload.pk])
        assert sent["type"] == "ack", sent
        delivered = await bobs.expect("chat.message")
        assert delivered["content"]["message"]["attachments"] == [
            {"id": upload.pk, "name": "cover.png", "content_type": "image/png", "size": upload.size}
        ]

        again = await alice.request("chat.message", room=first.pk, client_id="re", body="x", attachments=[upload.pk])
        assert (again["type"], again["code"]) == ("error", "conflict")
        bobs_own = await bobs.request("chat.message", room=first.pk, client_id="b", body="x", attachments=[upload.pk])
        assert (bobs_own["type"], bobs_own["code"]) == ("error", "invalid")
        assert "attachments" in bobs_own["content"]["fields"]
        malformed = await alice.request("chat.message", room=first.pk, client_id="m", body="x", attachments="1")
        assert (malformed["type"], malformed["code"]) == ("error", "invalid")


# --- An encrypted room ------------------------------------------------------------------


@pytest.fixture(scope="module")
def encrypted_server_url(django_db_setup, django_db_blocker, tmp_path_factory):
    """A daphne that holds the encryption key (the session's server has none)."""
    with daphne_server(tmp_path_factory.mktemp("daphne-encrypted"), CHAT_ENCRYPTION_KEYS=KEY_OLD) as url:
        yield url


async def test_an_encrypted_room_reads_like_any_other(encrypted_server_url, encryption_keys, user, bob):
    vault = await database_sync_to_async(room_create)(actor=as_principal(user), name="vault", encrypted=True)
    await database_sync_to_async(room_join)(actor=as_principal(bob), room_id=vault.pk)
    async with ws_client(encrypted_server_url, user) as alice, ws_client(encrypted_server_url, bob) as bobs:
        await joined(alice, vault)
        await joined(bobs, vault)

        assert (await alice.request("chat.message", room=vault.pk, client_id="s", body="the code is 0451"))[
            "type"
        ] == "ack"
        assert (await bobs.expect("chat.message"))["content"]["message"]["body"] == "the code is 0451"
        assert (await alice.request("chat.edit", room=vault.pk, seq=1, body="the code is 1234"))["type"] == "ack"
        assert (await bobs.expect("chat.edited"))["content"]["message"]["body"] == "the code is 1234"
        history = await bobs.request("chat.history", room=vault.pk)
        assert [m["body"] for m in history["content"]["messages"]] == ["the code is 1234"]

    def stored() -> list[tuple[str, str]]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT body, body_key_id FROM chat_message")
            return cursor.fetchall()

    [(body, key_id)] = await database_sync_to_async(stored)()
    assert key_id == "k1" and "1234" not in body and "code" not in body
    assert (await database_sync_to_async(Message.objects.get)()).text == "the code is 1234"

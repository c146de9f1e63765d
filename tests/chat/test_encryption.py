"""Encryption at rest of encrypted rooms: nothing readable in the database, no
difference for clients, whole-word search through the keyed-hash index, and key
rotation with ``manage.py rotate_message_keys``."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from chat.constants import SEARCH_HIGHLIGHT_START as START
from chat.constants import SEARCH_HIGHLIGHT_STOP as STOP
from chat.crypto import search_words
from chat.errors import Invalid
from chat.models import Attachment, Message, MessageEdit, MessageSearchToken, Room
from chat.selectors import message_search, messages_page
from chat.services import encryption as encryption_services
from chat.services.attachments import attachment_open, attachment_upload
from chat.services.messages import message_delete, message_edit, message_send
from chat.services.rooms import room_create, room_join
from tests.accounts.conftest import error_of
from tests.chat.conftest import KEY_NEW, KEY_OLD, PNG, png_upload
from tests.chat.test_api import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def vault(encryption_keys, alice_p, bob_p):
    """An encrypted public room of alice's, which bob has joined."""
    room = room_create(actor=alice_p, name="vault", encrypted=True)
    room_join(actor=bob_p, room_id=room.pk)
    return room


def send(actor, room, body: str, client_id: str, **kwargs) -> Message:
    return message_send(actor=actor, room_id=room.pk, client_id=client_id, body=body, **kwargs)[0]


def raw(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- At rest -------------------------------------------------------------------------------


def test_bodies_and_history_are_never_in_clear_in_the_database(vault, alice_p):
    message = send(alice_p, vault, "meet at the <b>old mill</b> at midnight", "c1")
    message_edit(actor=alice_p, room_id=vault.pk, seq=1, body="meet at the bridge instead")

    [(body, key_id)] = raw("SELECT body, body_key_id FROM chat_message WHERE id = %s", [message.pk])
    [(previous, edit_key)] = raw(
        "SELECT previous_body, key_id FROM chat_messageedit WHERE message_id = %s", [message.pk]
    )
    tokens = [
        token for (token,) in raw("SELECT token FROM chat_messagesearchtoken WHERE message_id = %s", [message.pk])
    ]

    assert (key_id, edit_key) == ("k1", "k1")
    for stored in (body, previous, *tokens):
        for word in ("mill", "midnight", "bridge", "instead", "meet"):
            assert word not in stored
    assert len(tokens) == len(search_words("meet at the bridge instead"))
    # What the services give back is the clear text.
    assert Message.objects.get(pk=message.pk).text == "meet at the bridge instead"
    assert MessageEdit.objects.get(message=message).previous_text == "meet at the <b>old mill</b> at midnight"


def test_clients_see_no_difference_over_rest(vault, user, bob):
    alice = client_for(user)
    sent = alice.post(f"/api/v1/rooms/{vault.pk}/messages/", {"client_id": "c", "body": "hello vault"}, format="json")
    assert sent.status_code == 201 and sent.json()["body"] == "hello vault"

    listed = client_for(bob).get(f"/api/v1/rooms/{vault.pk}/messages/").json()["results"]
    assert [message["body"] for message in listed] == ["hello vault"]
    edited = alice.patch(f"/api/v1/rooms/{vault.pk}/messages/1/", {"body": "hello again"}, format="json")
    assert edited.json()["body"] == "hello again"
    assert client_for(bob).get(f"/api/v1/rooms/{vault.pk}/").json()["room"]["encrypted"] is True


def test_attachment_files_of_an_encrypted_room_are_stored_encrypted(vault, alice_p, bob_p):
    attachment = attachment_upload(actor=alice_p, room_id=vault.pk, upload=png_upload(), declared_content_type=None)

    with default_storage.open(attachment.storage_name, "rb") as handle:
        stored = handle.read()
    assert attachment.key_id == "k1" and PNG not in stored and b"PNG" not in stored
    with attachment_open(attachment=attachment) as handle:
        assert handle.read() == PNG
    assert attachment.size == len(PNG)


def test_an_encrypted_room_needs_keys(settings, alice_p, user):
    settings.CHAT_ENCRYPTION_KEYS = []

    with pytest.raises(Invalid) as caught:
        room_create(actor=alice_p, name="vault", encrypted=True)
    assert "encrypted" in caught.value.details["fields"]

    response = client_for(user).post("/api/v1/rooms/", {"name": "vault", "encrypted": True}, format="json")
    assert (response.status_code, error_of(response)["code"]) == (400, "invalid")
    assert not Room.objects.exists()
    settings.CHAT_ENCRYPTION_KEYS = [KEY_OLD]
    created = client_for(user).post("/api/v1/rooms/", {"name": "vault", "encrypted": True}, format="json")
    assert created.status_code == 201 and created.json()["encrypted"] is True


def test_a_plain_room_stays_plain(encryption_keys, public_room, alice_p):
    message = send(alice_p, public_room, "in clear", "c")

    assert raw("SELECT body, body_key_id FROM chat_message WHERE id = %s", [message.pk]) == [("in clear", "")]
    assert not MessageSearchToken.objects.exists()


# --- Search -------------------------------------------------------------------------------


@pytest.fixture
def corpus(vault, public_room, people):
    alice_p, bob_p, carol_p, dave_p = people.alice, people.bob, people.carol, people.dave
    send(alice_p, vault, "The quick brown fox", "1")
    send(bob_p, vault, "Fox & hounds, tonight!", "2")
    send(alice_p, vault, "foxes are not a fox", "3")
    send(alice_p, vault, "a deleted fox", "4")
    message_delete(actor=alice_p, room_id=vault.pk, seq=4)
    send(alice_p, public_room, "a plain fox", "p")
    carols = room_create(actor=carol_p, name="carol's vault", encrypted=True)
    send(carol_p, carols, "fox in carol's vault", "c")
    theirs = room_create(actor=dave_p, name="vault", encrypted=True)
    send(dave_p, theirs, "fox of another tenant", "d")


def test_encrypted_rooms_are_searched_by_whole_words(corpus, vault, bob_p):
    hits = message_search(actor=bob_p, q="FOX", room_id=vault.pk)

    assert [hit.message.seq for hit in hits] == [3, 2, 1]  # newest first; "foxes" alone is not "fox"
    assert all(hit.rank is None for hit in hits)
    assert hits[-1].headline == f"The quick brown {START}fox{STOP}"
    assert hits[1].headline == f"{START}Fox{STOP} & hounds, tonight!"
    assert hits[0].message.text == "foxes are not a fox"
    # Every word must match; punctuation does not matter.
    assert [hit.message.seq for hit in message_search(actor=bob_p, q="quick, fox!", room_id=vault.pk)] == [1]
    assert message_search(actor=bob_p, q="fox quick hounds", room_id=vault.pk) == []
    assert message_search(actor=bob_p, q="qui", room_id=vault.pk) == []


def test_search_spans_plain_and_encrypted_rooms_the_caller_is_in(corpus, bob_p, carol_p, dave_p):
    hits = message_search(actor=bob_p, q="fox")

    assert [hit.message.text for hit in hits] == [
        "a plain fox",
        "foxes are not a fox",
        "Fox & hounds, tonight!",
        "The quick brown fox",
    ]
    assert [hit.message.text for hit in message_search(actor=carol_p, q="fox")] == ["fox in carol's vault"]
    assert [hit.message.text for hit in message_search(actor=dave_p, q="fox")] == ["fox of another tenant"]


def test_an_edit_reindexes_and_a_delete_unindexes(vault, alice_p, bob_p):
    send(alice_p, vault, "see you at the lake", "c")
    message_edit(actor=alice_p, room_id=vault.pk, seq=1, body="see you at the river")

    assert message_search(actor=bob_p, q="lake") == []
    assert [hit.message.seq for hit in message_search(actor=bob_p, q="river")] == [1]
    message_delete(actor=alice_p, room_id=vault.pk, seq=1)
    assert message_search(actor=bob_p, q="river") == []
    assert not MessageSearchToken.objects.exists()


def test_search_over_rest_finds_encrypted_messages(corpus, bob, vault):
    response = client_for(bob).get("/api/v1/messages/search/", {"q": "hounds", "room_id": vault.pk})

    assert response.status_code == 200
    [hit] = response.json()
    assert (hit["room_id"], hit["message"]["body"], hit["rank"]) == (vault.pk, "Fox & hounds, tonight!", None)
    assert hit["headline"] == f"Fox & {START}hounds{STOP}, tonight!"


def test_a_query_of_too_many_words_is_refused(vault, bob_p):
    with pytest.raises(Invalid, match="at most"):
        message_search(actor=bob_p, q=" ".join(f"w{index}" for index in range(11)))


# --- Rotation -------------------------------------------------------------------------------


def rotate(**options) -> str:
    out = io.StringIO()
    call_command("rotate_message_keys", stdout=out, **options)
    return out.getvalue()


def key_ids() -> dict[str, list[str]]:
    return {
        "messages": sorted(Message.objects.exclude(body="").values_list("body_key_id", flat=True)),
        "edits": sorted(MessageEdit.objects.values_list("key_id", flat=True)),
        "attachments": sorted(Attachment.objects.values_list("key_id", flat=True)),
    }


def test_rotation_moves_everything_to_the_newest_key_and_the_old_one_can_go(
    settings, vault, alice_p, bob_p, django_capture_on_commit_callbacks
):
    for index in range(3):
        send(alice_p, vault, f"secret number {index}", f"c{index}")
    message_edit(actor=alice_p, room_id=vault.pk, seq=1, body="secret number one")
    attachment = attachment_upload(actor=alice_p, room_id=vault.pk, upload=png_upload(), declared_content_type=None)
    send(alice_p, vault, "", "pic", attachments=[attachment.pk])
    old_file = attachment.storage_name

    settings.CHAT_ENCRYPTION_KEYS = [KEY_NEW, KEY_OLD]
    send(bob_p, vault, "written after the new key", "new")
    assert key_ids() == {"messages": ["k1", "k1", "k1", "k2"], "edits": ["k1"], "attachments": ["k1"]}
    assert "k1: 5" in rotate(check=True)

    with django_capture_on_commit_callbacks(execute=True):
        output = rotate(batch_size=2)

    assert "3 messages, 1 edit-history entries, 1 attachments" in output
    assert "keys other than 'k2' can be dropped" in output
    assert key_ids() == {"messages": ["k2"] * 4, "edits": ["k2"], "attachments": ["k2"]}
    assert not default_storage.exists(old_file)
    assert "0 messages, 0 edit-history entries, 0 attachments" in rotate()  # idempotent

    settings.CHAT_ENCRYPTION_KEYS = [KEY_NEW]
    page = messages_page(room=vault)
    assert [m.text for m in page] == [
        "secret number one",
        "secret number 1",
        "secret number 2",
        "",
        "written after the new key",
    ]
    assert MessageEdit.objects.get().previous_text == "secret number 0"
    with attachment_open(attachment=Attachment.objects.get()) as handle:
        assert handle.read() == PNG
    assert [hit.message.seq for hit in message_search(actor=bob_p, q="secret one")] == [1]


def test_an_interrupted_rotation_keeps_its_finished_batches_and_resumes(settings, vault, alice_p, monkeypatch):
    for index in range(4):
        send(alice_p, vault, f"message {index}", f"c{index}")
    settings.CHAT_ENCRYPTION_KEYS = [KEY_NEW, KEY_OLD]
    real_seal, calls = encryption_services.text_seal, []

    def failing_seal(text):
        calls.append(text)
        if len(calls) == 3:
            raise RuntimeError("worker killed")
        return real_seal(text)

    monkeypatch.setattr(encryption_services, "text_seal", failing_seal)
    with pytest.raises(RuntimeError):
        rotate(batch_size=2)
    assert key_ids()["messages"] == ["k1", "k1", "k2", "k2"]

    monkeypatch.setattr(encryption_services, "text_seal", real_seal)
    assert "2 messages" in rotate(batch_size=2)
    assert key_ids()["messages"] == ["k2"] * 4


def test_rotation_encrypts_a_room_that_became_encrypted(settings, encryption_keys, public_room, alice_p, bob_p):
    send(alice_p, public_room, "written in the clear", "c")
    Room.objects.filter(pk=public_room.pk).update(encrypted=True)  # as the admin's checkbox does

    output = rotate()

    assert "1 messages" in output
    [(body, key_id)] = raw("SELECT body, body_key_id FROM chat_message WHERE room_id = %s", [public_room.pk])
    assert key_id == "k1" and "clear" not in body
    assert [hit.message.text for hit in message_search(actor=bob_p, q="clear")] == ["written in the clear"]


def test_rotation_without_keys_is_refused(settings):
    settings.CHAT_ENCRYPTION_KEYS = []

    with pytest.raises(CommandError, match="empty"):
        rotate()

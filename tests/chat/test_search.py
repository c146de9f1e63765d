"""Message search: only rooms the caller is in; ranked and highlighted on PostgreSQL."""

from __future__ import annotations

import pytest

from chat.constants import SEARCH_HIGHLIGHT_START, SEARCH_HIGHLIGHT_STOP
from chat.errors import Forbidden, Invalid
from chat.selectors import message_search
from chat.services.messages import message_delete, message_send
from chat.services.rooms import room_create
from tests.chat.conftest import requires_postgres

pytestmark = pytest.mark.django_db


@pytest.fixture
def corpus(public_room, alice_p, bob_p, carol_p, dave_p):
    """Messages in alice's and bob's room, in carol's own room and in another tenant."""
    for client_id, body in [
        ("1", "the quick brown fox"),
        ("2", "fox fox fox: a fox concert tonight"),
        ("3", "cats only"),
        ("4", "a fox that was deleted"),
    ]:
        message_send(actor=alice_p, room_id=public_room.pk, client_id=client_id, body=body)
    message_delete(actor=alice_p, room_id=public_room.pk, seq=4)
    carols = room_create(actor=carol_p, name="carol's")
    message_send(actor=carol_p, room_id=carols.pk, client_id="c", body="fox in carol's room")
    elsewhere = room_create(actor=dave_p, name="general")
    message_send(actor=dave_p, room_id=elsewhere.pk, client_id="d", body="fox in another tenant")
    return carols


def test_search_covers_only_the_callers_rooms_and_skips_tombstones(corpus, public_room, bob_p, carol_p):
    hits = message_search(actor=bob_p, q="fox")

    assert {hit.message.room_id for hit in hits} == {public_room.pk}
    assert sorted(hit.message.seq for hit in hits) == [1, 2]
    assert [hit.message.body for hit in message_search(actor=carol_p, q="fox")] == ["fox in carol's room"]


def test_search_in_one_room_checks_access(corpus, public_room, carol_p):
    with pytest.raises(Forbidden):
        message_search(actor=carol_p, q="fox", room_id=public_room.pk)
    with pytest.raises(Invalid):
        message_search(actor=carol_p, q="  ")


@requires_postgres
def test_search_ranks_and_highlights_on_postgresql(corpus, bob_p):
    best, second = message_search(actor=bob_p, q="fox")

    assert best.message.seq == 2 and best.rank > second.rank
    assert f"{SEARCH_HIGHLIGHT_START}fox{SEARCH_HIGHLIGHT_STOP}" in best.headline
    assert second.headline == f"the quick brown {SEARCH_HIGHLIGHT_START}fox{SEARCH_HIGHLIGHT_STOP}"


@requires_postgres
def test_search_index_exists_on_postgresql(db):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'chat_message_body_fts'")
        [(definition,)] = cursor.fetchall()
    assert "gin" in definition and "to_tsvector('simple'::regconfig, body)" in definition

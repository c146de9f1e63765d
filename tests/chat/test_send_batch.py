"""message_send_many: a batch of sends is the same use case as one send, for a
fixed number of queries (the hub's group commit, realtime.batching)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.constants import RoomKind
from chat.errors import Forbidden, Invalid, Moderated, NotFound
from chat.models import Message, Room, RoomBan, RoomMember
from chat.moderation import moderation_screen_many
from chat.services.messages import SendRequest, message_send, message_send_many
from chat.services.rooms import room_create, room_join
from realtime.batching import Batcher

from .conftest import requires_postgres

pytestmark = pytest.mark.django_db


@pytest.fixture
def rooms(alice_p, bob_p, carol_p):
    """Three public rooms, alice, bob and carol in each."""
    made = []
    for name in ("one", "two", "three"):
        room = room_create(actor=alice_p, name=name)
        room_join(actor=bob_p, room_id=room.pk)
        room_join(actor=carol_p, room_id=room.pk)
        made.append(room)
    return made


def test_a_batch_across_rooms_numbers_each_room_in_request_order(rooms, alice_p, bob_p, carol_p):
    one, two, _three = rooms
    requests = [
        SendRequest(alice_p, one.pk, "a1", "first in one"),
        SendRequest(bob_p, two.pk, "b1", "first in two"),
        SendRequest(carol_p, one.pk, "c1", "second in one"),
        SendRequest(alice_p, two.pk, "a2", "second in two", reply_to_seq=None),
        SendRequest(bob_p, one.pk, "b2", "third in one"),
    ]
    outcomes = message_send_many(requests)

    assert [(m.room_id, m.seq, created) for m, created in outcomes] == [
        (one.pk, 1, True),
        (two.pk, 1, True),
        (one.pk, 2, True),
        (two.pk, 2, True),
        (one.pk, 3, True),
    ]
    assert [m.text for m, _ in outcomes] == [r.body for r in requests]
    assert {r.pk: r.last_seq for r in Room.objects.filter(pk__in=[one.pk, two.pk])} == {one.pk: 3, two.pk: 2}
    marker = RoomMember.objects.get(room=one, user_id=bob_p.user_id)
    assert marker.last_read_seq == 3


def test_each_request_gets_its_own_error_and_the_others_go_on(rooms, alice_p, bob_p, dave_p, tenant):
    one, two, three = rooms
    private = room_create(actor=alice_p, name="hidden", kind=RoomKind.PRIVATE)
    RoomBan.objects.create(tenant=tenant, room=three, user_id=bob_p.user_id)
    outcomes = message_send_many(
        [
            SendRequest(bob_p, one.pk, "ok-1", "fine"),
            SendRequest(bob_p, private.pk, "x", "not a member of a private room"),
            SendRequest(bob_p, three.pk, "x", "banned here"),
            SendRequest(bob_p, two.pk, "", "bad client id"),
            SendRequest(bob_p, two.pk, "y", "   "),
            SendRequest(dave_p, one.pk, "z", "another tenant's room"),
            SendRequest(bob_p, two.pk, "ok-2", "fine too"),
        ]
    )
    kinds = [type(o).__name__ if not isinstance(o, tuple) else "ok" for o in outcomes]
    assert kinds == ["ok", "NotFound", "Forbidden", "Invalid", "Invalid", "NotFound", "ok"]
    assert isinstance(outcomes[1], NotFound) and isinstance(outcomes[2], Forbidden)
    assert isinstance(outcomes[3], Invalid) and outcomes[3].details["fields"].keys() == {"client_id"}
    assert (outcomes[0][0].seq, outcomes[6][0].seq) == (1, 1)
    assert Message.objects.count() == 2


def test_the_single_send_raises_what_the_batch_returns(rooms, dave_p):
    with pytest.raises(NotFound):
        message_send(actor=dave_p, room_id=rooms[0].pk, client_id="x", body="hi")


def test_a_resend_in_the_same_batch_or_later_is_stored_once(rooms, alice_p):
    one = rooms[0]
    first, again = message_send_many(
        [SendRequest(alice_p, one.pk, "same", "hello"), SendRequest(alice_p, one.pk, "same", "hello")]
    )
    assert first[1] is True and again == (first[0], False)
    [later] = message_send_many([SendRequest(alice_p, one.pk, "same", "hello")])
    assert later[0].pk == first[0].pk and later[1] is False
    assert Room.objects.get(pk=one.pk).last_seq == 1


def test_a_batch_costs_the_same_queries_as_one_send(rooms, alice_p, bob_p, carol_p):
    people = [alice_p, bob_p, carol_p]
    message_send_many([SendRequest(alice_p, rooms[0].pk, "warm", "warm up")])

    with CaptureQueriesContext(connection) as one:
        message_send_many([SendRequest(bob_p, rooms[1].pk, "single", "one message")])
    batch = [SendRequest(people[i % 3], rooms[i % 3].pk, f"m{i}", f"message number {i}") for i in range(30)]
    with CaptureQueriesContext(connection) as thirty:
        outcomes = message_send_many(batch)

    assert all(created for _message, created in outcomes)
    assert len(thirty) == len(one)


def test_moderation_judges_a_batch_together(settings, rooms, alice_p, bob_p):
    settings.CHAT_MODERATORS = ["chat.moderation.FloodModerator", "chat.moderation.RepeatModerator"]
    settings.CHAT_FLOOD_MAX_MESSAGES = 3
    room = rooms[0]
    items = [(room, alice_p.user_id, f"different {i}") for i in range(5)] + [(room, bob_p.user_id, "hello")]
    verdicts = moderation_screen_many(items)
    assert [isinstance(v, Moderated) for v in verdicts] == [False, False, False, True, True, False]
    assert verdicts[3].details == {"reason": "flood"}

    settings.CHAT_FLOOD_MAX_MESSAGES = 100
    settings.CHAT_REPEAT_MAX_MESSAGES = 2
    outcomes = message_send_many([SendRequest(bob_p, room.pk, f"r{i}", "same words") for i in range(4)])
    assert [isinstance(o, Moderated) for o in outcomes] == [False, False, True, True]
    assert outcomes[2].details == {"reason": "repeat"}
    assert Message.objects.filter(room=room).count() == 2


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_on_shared_rooms_keep_every_room_gap_free(alice_p, bob_p, carol_p):
    rooms = []
    for name in ("p", "q", "r", "s"):
        room = room_create(actor=alice_p, name=name)
        room_join(actor=bob_p, room_id=room.pk)
        room_join(actor=carol_p, room_id=room.pk)
        rooms.append(room)
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def sender(worker: int, principal) -> None:
        try:
            start.wait(timeout=10)
            for round_ in range(6):
                # Rooms in a different order per worker: the lock order must not depend on it.
                order = rooms[worker:] + rooms[:worker]
                message_send_many(
                    [SendRequest(principal, room.pk, f"w{worker}-{round_}-{room.pk}", "hi") for room in order]
                )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sender, args=(i, p)) for i, p in enumerate([alice_p, bob_p, carol_p])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    for room in rooms:
        seqs = list(Message.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, 19))


@pytest.mark.django_db(transaction=True)
async def test_the_batcher_groups_what_arrives_while_a_batch_is_written():
    calls: list[list[int]] = []
    release = threading.Event()

    def slow_double(items):
        calls.append(list(items))
        if len(calls) == 1:
            release.wait(timeout=5)
        return [item * 2 if item >= 0 else ValueError(item) for item in items]

    batcher = Batcher(slow_double, max_batch=3)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.05)
    rest = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3, -4, 5)]
    await asyncio.sleep(0.05)
    release.set()
    results = await asyncio.gather(first, *rest)

    assert calls == [[1], [2, 3, -4], [5]]
    assert results[:3] == [2, 4, 6] and isinstance(results[3], ValueError) and results[4] == 10


async def test_a_failing_batch_fails_each_of_its_requests():
    def broken(items):
        raise RuntimeError("database down")

    batcher = Batcher(broken)
    results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert [str(r) for r in results] == ["database down", "database down"]

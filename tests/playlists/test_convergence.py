"""The convergence property through the real service and database.

Several simulated clients each keep a local copy of one playlist. At every
step one client either receives some of the server's broadcasts (in order,
after a random delay: it may lag many revisions behind) or edits its copy and
sends the edit with the revision it has seen. At the end every client catches
up: every copy equals the server's list, which equals the op log replayed
from the empty playlist. (tests/playlists/test_ot.py runs the same property on
the engine alone, with many more examples.)
"""

from __future__ import annotations

import itertools
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playlists.models import PlaylistItem, PlaylistOp
from playlists.ot import PlaylistState, apply_all
from playlists.services.editing import playlist_apply_op
from playlists.services.playlists import playlist_create

pytestmark = pytest.mark.django_db

CLIENTS = 3
_ids = itertools.count()


@st.composite
def schedules(draw):
    steps = []
    for _ in range(draw(st.integers(min_value=2, max_value=14))):
        client = draw(st.integers(0, CLIENTS - 1))
        if draw(st.integers(0, 2)) == 0:
            steps.append(("receive", client, draw(st.integers(1, 4))))
        else:
            ops = draw(st.lists(st.tuples(st.sampled_from("IIRMU"), st.integers(0, 10_000)), min_size=1, max_size=3))
            steps.append(("edit", client, ops))
    return steps


def client_ops(copy: PlaylistState, choices, track_ids) -> dict:
    """A valid edit against the client's own copy, as a batch. New items get ids the
    client chooses, so later ops of the same batch can move or remove them."""
    view = copy.item_ids()
    ops = []
    for kind, number in choices:
        if kind == "I" or not view:
            index, item_id = number % (len(view) + 1), str(uuid.uuid4())
            ops.append(
                {"op": "insert", "index": index, "track": track_ids[number % len(track_ids)], "item_id": item_id}
            )
            view.insert(index, item_id)
        elif kind == "R":
            ops.append({"op": "remove", "item_id": view.pop(number % len(view))})
        elif kind == "M":
            item_id = view.pop(number % len(view))
            index = (number // 7) % (len(view) + 1)
            ops.append({"op": "move", "item_id": item_id, "index": index})
            view.insert(index, item_id)
        else:
            ops.append({"op": "update", "title": f"title {number}"})
    return {"op": "batch", "ops": ops}


def log_since(playlist, revision: int, count: int) -> list[PlaylistOp]:
    return list(
        PlaylistOp.objects.filter(playlist=playlist, revision__gt=revision, revision__lte=revision + count).order_by(
            "revision"
        )
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(schedule=schedules())
def test_clients_editing_stale_copies_converge_through_the_service(people, tracks, schedule):
    actors = [people.alice, people.bob, people.carol]
    playlist = playlist_create(actor=people.alice, title="Start", visibility="collaborative")
    track_ids = [track.pk for track in tracks]
    copies = [PlaylistState(title="Start", description="", items=[], revision=0) for _ in range(CLIENTS)]

    def receive(client: int, count: int) -> None:
        for entry in log_since(playlist, copies[client].revision, count):
            apply_all(copies[client], entry.ops)
            copies[client].revision = entry.revision

    for action, client, payload in schedule:
        if action == "receive":
            receive(client, payload)
            continue
        copy = copies[client]
        playlist_apply_op(
            actor=actors[client],
            playlist_id=playlist.pk,
            base_revision=copy.revision,
            op=client_ops(copy, payload, track_ids),
            client_op_id=f"c{next(_ids)}",
        )

    playlist.refresh_from_db()
    server = [
        str(i)
        for i in PlaylistItem.objects.filter(playlist=playlist).order_by("position").values_list("item_id", flat=True)
    ]
    for client in range(CLIENTS):
        receive(client, playlist.revision)
        assert copies[client].revision == playlist.revision
        assert copies[client].item_ids() == server
        assert copies[client].title == playlist.title
    replayed = apply_all(
        PlaylistState(title="Start", description="", items=[]),
        [op for entry in log_since(playlist, 0, playlist.revision) for op in entry.ops],
    )
    assert replayed.item_ids() == server and replayed.title == playlist.title

"""A session's queue converges like any playlist, with the server's own edits in
the mix: the playlists' convergence property (tests/playlists/test_convergence.py,
whose harness this reuses) on the queue of a group session, where the three
members edit stale copies while the session skips through it, each skip taking
the head off the queue as a revision of the same log."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from listening.constants import SessionMode
from listening.services.sessions import session_create, session_join
from playlists.models import PlaylistItem
from playlists.ot import PlaylistState, apply_all
from playlists.services.editing import playlist_apply_op
from tests.listening.support import command
from tests.playlists.test_convergence import CLIENTS, client_ops, log_since, schedules

pytestmark = pytest.mark.django_db

_ids = itertools.count()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(schedule=schedules(), skips=st.sets(st.integers(0, 14), max_size=4))
def test_members_and_the_session_editing_the_queue_converge(people, tracks, schedule, skips):
    actors = [people.alice, people.bob, people.carol]
    session = session_create(actor=people.alice, title="Start", mode=SessionMode.GROUP)
    for actor in actors[1:]:
        session_join(actor=actor, session_id=session.pk)
    queue = session.queue
    queue.refresh_from_db()
    start = PlaylistState(title=queue.title, description="", items=[], revision=queue.revision)
    copies = [PlaylistState(title=queue.title, description="", items=[], revision=queue.revision) for _ in actors]
    track_ids = [track.pk for track in tracks]
    popped = 0

    def receive(client: int, count: int) -> None:
        for entry in log_since(queue, copies[client].revision, count):
            apply_all(copies[client], entry.ops)
            copies[client].revision = entry.revision

    for step, (action, client, payload) in enumerate(schedule):
        if step in skips and PlaylistItem.objects.filter(playlist=queue).exists():
            # The server's edit: the head comes off as the next track starts.
            command(people.alice, session, "skip")
            popped += 1
        if action == "receive":
            receive(client, payload)
            continue
        copy = copies[client]
        playlist_apply_op(
            actor=actors[client],
            playlist_id=queue.pk,
            base_revision=copy.revision,
            op=client_ops(copy, payload, track_ids),
            client_op_id=f"q{next(_ids)}",
        )

    queue.refresh_from_db()
    server = [
        str(i)
        for i in PlaylistItem.objects.filter(playlist=queue).order_by("position").values_list("item_id", flat=True)
    ]
    for client in range(CLIENTS):
        receive(client, queue.revision)
        assert copies[client].revision == queue.revision
        assert copies[client].item_ids() == server
        assert copies[client].title == queue.title
    replayed = apply_all(start, [op for entry in log_since(queue, start.revision, queue.revision) for op in entry.ops])
    assert replayed.item_ids() == server
    session.refresh_from_db()
    assert session.track_serial >= popped

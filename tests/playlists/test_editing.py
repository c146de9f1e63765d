"""playlist_apply_op and playlist_revert against the real database: the rules,
idempotency, limits, roles, tenants, history, snapshots and retention."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from playlists.constants import CollaboratorRole, OpKind, Visibility
from playlists.models import Playlist, PlaylistItem, PlaylistOp, PlaylistSnapshot
from playlists.ot import PlaylistState, apply_all
from playlists.selectors import playlist_state, playlist_state_at
from playlists.services.editing import (
    ResyncRequired,
    playlist_apply_op,
    playlist_history_prune,
    playlist_revert,
    playlist_snapshot_take,
)
from playlists.services.sharing import collaborator_set
from spotify_agent.errors import Conflict, Forbidden, Invalid, NotFound

pytestmark = pytest.mark.django_db


def insert(index, track, **extra):
    return {"op": "insert", "index": index, "track": track.pk, **extra}


def item_ids(playlist) -> list[str]:
    return [
        str(i)
        for i in PlaylistItem.objects.filter(playlist=playlist).order_by("position").values_list("item_id", flat=True)
    ]


def track_ids(playlist) -> list[int]:
    return list(PlaylistItem.objects.filter(playlist=playlist).order_by("position").values_list("track_id", flat=True))


def edit(actor, playlist, op, *, base=None, client_op_id=None):
    playlist.refresh_from_db()
    edit.counter += 1
    return playlist_apply_op(
        actor=actor,
        playlist_id=playlist.pk,
        base_revision=playlist.revision if base is None else base,
        op=op,
        client_op_id=client_op_id or f"op-{edit.counter}",
    )


edit.counter = 0


def replay_log(playlist) -> PlaylistState:
    state = PlaylistState(title="Road trip", description="", items=[])
    for entry in PlaylistOp.objects.filter(playlist=playlist, revision__isnull=False).order_by("revision"):
        apply_all(state, entry.ops)
    return state


def test_insert_remove_move_update_write_items_and_revisions(people, playlist, tracks):
    first = edit(people.alice, playlist, insert(0, tracks[0]))
    assert first.committed and first.revision == 1
    edit(people.bob, playlist, {"op": "batch", "ops": [insert(1, tracks[1]), insert(2, tracks[2])]})
    assert track_ids(playlist) == [tracks[0].pk, tracks[1].pk, tracks[2].pk]
    moved = edit(people.alice, playlist, {"op": "move", "item_id": item_ids(playlist)[2], "index": 0})
    assert moved.ops[0]["from"] == 2 and moved.ops[0]["to"] == 0
    edit(people.bob, playlist, {"op": "remove", "item_id": item_ids(playlist)[1]})
    edit(people.alice, playlist, {"op": "update", "title": "  Trip  ", "description": "summer"})
    playlist.refresh_from_db()
    assert (playlist.title, playlist.description, playlist.revision) == ("Trip", "summer", 5)
    assert track_ids(playlist) == [tracks[2].pk, tracks[1].pk]
    positions = list(
        PlaylistItem.objects.filter(playlist=playlist).order_by("position").values_list("position", flat=True)
    )
    assert positions == [0, 1]
    replayed = replay_log(playlist)
    assert replayed.item_ids() == item_ids(playlist) and replayed.title == "Trip"


def test_stale_edits_are_transformed_by_the_rules(people, playlist, tracks):
    edit(people.alice, playlist, {"op": "batch", "ops": [insert(i, tracks[i]) for i in range(3)]})
    _, b, _ = item_ids(playlist)
    # bob, still at revision 1, while alice commits twice.
    edit(people.alice, playlist, insert(1, tracks[5]))
    edit(people.alice, playlist, {"op": "remove", "item_id": b})
    same_index = edit(people.bob, playlist, insert(1, tracks[6]), base=1)
    assert same_index.committed
    dropped = edit(people.bob, playlist, {"op": "move", "item_id": b, "index": 0}, base=1)
    assert not dropped.committed and dropped.dropped == [{"index": 0, "item_id": b, "reason": "item_removed"}]
    noop = edit(people.bob, playlist, {"op": "remove", "item_id": b}, base=1)
    assert not noop.committed and noop.noops[0]["reason"] == "already_removed"
    assert track_ids(playlist) == [tracks[0].pk, tracks[5].pk, tracks[6].pk, tracks[2].pk]
    playlist.refresh_from_db()
    assert playlist.revision == 4
    assert replay_log(playlist).item_ids() == item_ids(playlist)


def test_a_retry_gets_the_first_answer_and_applies_nothing_twice(people, playlist, tracks):
    first = edit(people.alice, playlist, insert(0, tracks[0]), client_op_id="same")
    again = edit(people.alice, playlist, insert(0, tracks[0]), base=0, client_op_id="same")
    assert again.duplicate and again.revision == first.revision and again.ops == first.ops
    assert len(item_ids(playlist)) == 1
    # Another user may use the same id: ids are per author.
    assert not edit(people.bob, playlist, insert(0, tracks[1]), client_op_id="same").duplicate


def test_viewers_and_outsiders_cannot_edit(people, playlist, tracks, carol, other_user):
    with pytest.raises(NotFound):
        edit(people.carol, playlist, insert(0, tracks[0]))
    collaborator_set(actor=people.alice, playlist_id=playlist.pk, user_id=carol.pk, role=CollaboratorRole.VIEWER)
    with pytest.raises(Forbidden):
        edit(people.carol, playlist, insert(0, tracks[0]))
    with pytest.raises(NotFound):
        edit(people.dave, playlist, insert(0, tracks[0]))
    assert PlaylistOp.objects.count() == 0


def test_collaborative_playlists_are_editable_by_the_tenant_and_public_ones_readable(people, playlist, tracks):
    Playlist.objects.filter(pk=playlist.pk).update(visibility=Visibility.PUBLIC)
    with pytest.raises(Forbidden):
        edit(people.carol, playlist, insert(0, tracks[0]))
    Playlist.objects.filter(pk=playlist.pk).update(visibility=Visibility.COLLABORATIVE)
    assert edit(people.carol, playlist, insert(0, tracks[0])).committed
    with pytest.raises(NotFound):
        edit(people.dave, playlist, insert(0, tracks[0]))


@pytest.mark.parametrize(
    ("op", "field"),
    [
        ({"op": "insert", "index": 5, "track": None}, "op.track"),
        ({"op": "jump"}, "op.op"),
        ({"op": "move", "item_id": "not-a-uuid", "index": 0}, "op.item_id"),
        ({"op": "update"}, "op"),
        ({"op": "update", "title": ""}, "op.title"),
        ({"op": "update", "title": "x" * 201}, "op.title"),
        ({"op": "batch", "ops": []}, "op.ops"),
        ("insert", "op"),
    ],
)
def test_malformed_ops_are_invalid_and_name_the_field(people, playlist, op, field):
    with pytest.raises(Invalid) as caught:
        edit(people.alice, playlist, op)
    assert field in caught.value.details["fields"]


def test_out_of_range_unknown_and_foreign_tracks_are_invalid(people, playlist, tracks, foreign_tracks):
    for op, field in [
        (insert(1, tracks[0]), "op.index"),
        (insert(-1, tracks[0]), "op.index"),
        (insert(0, foreign_tracks[0]), "op.track"),
        ({"op": "insert", "index": 0, "track": 999_999}, "op.track"),
        ({"op": "batch", "ops": [insert(0, tracks[0]), insert(5, tracks[1])]}, "op.ops[1].index"),
    ]:
        with pytest.raises(Invalid) as caught:
            edit(people.alice, playlist, op)
        assert field in caught.value.details["fields"]
    with pytest.raises(Invalid):
        edit(people.alice, playlist, insert(0, tracks[0]), base=7)
    assert item_ids(playlist) == []


def test_a_batch_is_atomic_and_bounded(people, playlist, tracks, settings):
    with pytest.raises(Invalid):
        edit(people.alice, playlist, {"op": "batch", "ops": [insert(0, tracks[0]), insert(9, tracks[1])]})
    assert item_ids(playlist) == [] and PlaylistOp.objects.count() == 0
    settings.PLAYLIST_MAX_BATCH_OPS = 2
    with pytest.raises(Invalid):
        edit(people.alice, playlist, {"op": "batch", "ops": [insert(0, tracks[0])] * 3})


def test_a_full_playlist_refuses_inserts(people, playlist, tracks, settings):
    settings.PLAYLIST_MAX_ITEMS = 2
    edit(people.alice, playlist, {"op": "batch", "ops": [insert(0, tracks[0]), insert(1, tracks[1])]})
    with pytest.raises(Conflict) as caught:
        edit(people.alice, playlist, insert(0, tracks[2]))
    assert caught.value.details == {"max_items": 2}


def test_a_client_too_far_behind_gets_resync_required_with_a_snapshot(people, playlist, tracks, settings):
    settings.PLAYLIST_TRANSFORM_WINDOW = 2
    for index in range(3):
        edit(people.alice, playlist, insert(index, tracks[index]))
    with pytest.raises(ResyncRequired) as caught:
        edit(people.bob, playlist, insert(0, tracks[4]), base=0)
    snapshot = caught.value.details["snapshot"]
    assert snapshot["revision"] == 3
    assert [item["track"]["id"] for item in snapshot["items"]] == [t.pk for t in tracks[:3]]
    assert caught.value.code == "resync_required"


def test_the_same_track_may_be_added_twice(people, playlist, tracks):
    edit(people.alice, playlist, {"op": "batch", "ops": [insert(0, tracks[0]), insert(1, tracks[0])]})
    assert track_ids(playlist) == [tracks[0].pk, tracks[0].pk]
    assert len(set(item_ids(playlist))) == 2


def test_client_chosen_item_ids_name_new_items_and_cannot_be_reused(people, playlist, tracks):
    mine = "6f1c1c3e-3a51-4b7b-9c42-7d0a0c8d1e01"
    edit(
        people.alice,
        playlist,
        {"op": "batch", "ops": [insert(0, tracks[0], item_id=mine), {"op": "move", "item_id": mine, "index": 0}]},
    )
    assert item_ids(playlist) == [mine]
    with pytest.raises(Invalid):
        edit(people.bob, playlist, insert(0, tracks[1], item_id=mine))


def test_revert_restores_items_order_and_title_as_a_new_revision(people, playlist, tracks):
    edit(people.alice, playlist, {"op": "batch", "ops": [insert(i, tracks[i]) for i in range(4)]})
    before = item_ids(playlist)
    edit(people.bob, playlist, {"op": "remove", "item_id": before[1]})
    edit(people.bob, playlist, {"op": "move", "item_id": before[3], "index": 0})
    edit(people.bob, playlist, insert(0, tracks[8]))
    edit(people.bob, playlist, {"op": "update", "title": "Bob's now"})
    result = playlist_revert(actor=people.alice, playlist_id=playlist.pk, revision=1, client_op_id="revert-1")
    playlist.refresh_from_db()
    assert result.committed and playlist.revision == 6 and playlist.title == "Road trip"
    assert item_ids(playlist) == before
    restored = PlaylistItem.objects.get(item_id=before[1])
    assert restored.added_by_id == people.alice.user_id
    assert PlaylistOp.objects.get(revision=6).kind == OpKind.REVERT
    # The revert is itself revertible.
    playlist_revert(actor=people.alice, playlist_id=playlist.pk, revision=5, client_op_id="revert-2")
    playlist.refresh_from_db()
    assert playlist.title == "Bob's now" and track_ids(playlist)[0] == tracks[8].pk
    assert replay_log(playlist).item_ids() == item_ids(playlist)
    with pytest.raises(NotFound):
        playlist_revert(actor=people.alice, playlist_id=playlist.pk, revision=99, client_op_id="revert-3")


def test_state_as_of_any_revision_uses_snapshots(people, playlist, tracks, settings):
    settings.PLAYLIST_SNAPSHOT_EVERY = 3
    states = []
    for index in range(7):
        edit(people.alice, playlist, insert(index, tracks[index]))
        states.append(item_ids(playlist))
    # What the task does after revisions 3 and 6 (the worker's test is below).
    playlist_snapshot_take(playlist_id=playlist.pk, revision=3)
    playlist_snapshot_take(playlist_id=playlist.pk, revision=6)
    playlist_snapshot_take(playlist_id=playlist.pk, revision=6)
    assert sorted(PlaylistSnapshot.objects.filter(playlist=playlist).values_list("revision", flat=True)) == [0, 3, 6]
    playlist.refresh_from_db()
    for revision, expected in enumerate(states, start=1):
        assert playlist_state_at(playlist=playlist, revision=revision).item_ids() == expected
    assert playlist_state_at(playlist=playlist, revision=0).item_ids() == []


def test_history_prune_moves_the_floor_to_an_old_snapshot(people, playlist, tracks, settings):
    settings.PLAYLIST_HISTORY_RETENTION_DAYS = 30
    for index in range(4):
        edit(people.alice, playlist, insert(index, tracks[index]))
    playlist_snapshot_take(playlist_id=playlist.pk, revision=2)
    old = timezone.now() - timedelta(days=40)
    PlaylistOp.objects.filter(playlist=playlist, revision__lte=3).update(created_at=old)
    deleted = playlist_history_prune(playlist_id=playlist.pk)
    playlist.refresh_from_db()
    assert deleted == 2 and playlist.history_floor == 2
    assert playlist_state_at(playlist=playlist, revision=3).item_ids() == item_ids(playlist)[:3]
    with pytest.raises(ResyncRequired):
        edit(people.bob, playlist, insert(0, tracks[5]), base=1)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_concurrent_editors_are_serialised_by_the_row_lock(people, playlist, tracks):
    """Eight threads, each its own database connection, edit at once from revision 0."""
    errors = []
    barrier = threading.Barrier(8)

    def work(number):
        try:
            barrier.wait()
            actor = people.alice if number % 2 else people.bob
            playlist_apply_op(
                actor=actor,
                playlist_id=playlist.pk,
                base_revision=0,
                op=insert(0, tracks[number]),
                client_op_id=f"c{number}",
            )
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    playlist.refresh_from_db()
    assert playlist.revision == 8
    assert sorted(PlaylistOp.objects.filter(playlist=playlist).values_list("revision", flat=True)) == list(range(1, 9))
    assert sorted(track_ids(playlist)) == sorted(t.pk for t in tracks[:8])
    assert replay_log(playlist).item_ids() == item_ids(playlist)
    assert playlist_state(playlist=playlist).item_ids() == item_ids(playlist)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_every_nth_revision_is_snapshotted_by_the_worker(people, playlist, tracks, settings, celery_worker):
    settings.PLAYLIST_SNAPSHOT_EVERY = 2
    for index in range(4):
        edit(people.alice, playlist, insert(index, tracks[index]))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        revisions = set(PlaylistSnapshot.objects.filter(playlist=playlist).values_list("revision", flat=True))
        if revisions == {0, 2, 4}:
            break
        time.sleep(0.1)
    assert revisions == {0, 2, 4}
    snapshot = PlaylistSnapshot.objects.get(playlist=playlist, revision=4)
    assert [item["item_id"] for item in snapshot.items] == item_ids(playlist)

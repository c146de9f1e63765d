"""The transformation engine (playlists.ot) on its own: each rule, then the
convergence property over random concurrent edits from stale clients."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playlists.ot import (
    Committed,
    Insert,
    Move,
    OpError,
    PlaylistState,
    Remove,
    Update,
    apply_all,
    invert,
    transform,
    unapply_all,
)


def item(item_id: str, track_id: int = 1) -> dict:
    return {"item_id": item_id, "track_id": track_id, "added_by": None, "added_at": "2026-01-01T00:00:00Z"}


def state(*ids: str, title: str = "T") -> PlaylistState:
    return PlaylistState(title, "", [item(i) for i in ids], 0)


class Server:
    """The service's algorithm without the database: an op log and a list."""

    def __init__(self, initial: PlaylistState) -> None:
        self.state = initial.copy()
        self.log: list[Committed] = []

    def submit(self, *, base_revision: int, ops, actor_id: int):
        committed = self.log[base_revision:]
        base = unapply_all(self.state.copy(), [op for revision in committed for op in revision.ops])
        base.revision = base_revision
        outcome = transform(base=base, committed=committed, ops=ops, actor_id=actor_id, added_at="now")
        if outcome.applied:
            apply_all(self.state, outcome.applied)
            self.state.revision += 1
            self.log.append(Committed(self.state.revision, actor_id, outcome.applied))
        return outcome


def ids(playlist: PlaylistState) -> list[str]:
    return playlist.item_ids()


# --- Rules --------------------------------------------------------------------------------


def test_two_inserts_at_the_same_index_keep_commit_order():
    server = Server(state("a", "b"))
    server.submit(base_revision=0, ops=[Insert(1, 1, "first")], actor_id=1)
    server.submit(base_revision=0, ops=[Insert(1, 1, "second")], actor_id=2)
    assert ids(server.state) == ["a", "first", "second", "b"]


def test_insert_follows_its_neighbours_through_earlier_inserts_and_removes():
    server = Server(state("a", "b", "c"))
    server.submit(base_revision=0, ops=[Remove("a")], actor_id=1)
    server.submit(base_revision=1, ops=[Insert(0, 1, "x")], actor_id=1)
    # Written against [a, b, c]: between b and c.
    server.submit(base_revision=0, ops=[Insert(2, 1, "mine")], actor_id=2)
    assert ids(server.state) == ["x", "b", "mine", "c"]


def test_move_of_an_item_someone_removed_is_dropped_and_reported():
    server = Server(state("a", "b", "c"))
    server.submit(base_revision=0, ops=[Remove("b")], actor_id=1)
    outcome = server.submit(base_revision=0, ops=[Move("b", 0)], actor_id=2)
    assert outcome.applied == []
    assert outcome.dropped == [{"index": 0, "item_id": "b", "reason": "item_removed"}]
    assert ids(server.state) == ["a", "c"]


def test_concurrent_moves_of_one_item_last_committed_wins_and_reports_the_loser():
    server = Server(state("a", "b", "c"))
    server.submit(base_revision=0, ops=[Move("a", 2)], actor_id=1)
    outcome = server.submit(base_revision=0, ops=[Move("a", 1)], actor_id=2)
    assert ids(server.state) == ["b", "a", "c"]
    assert outcome.overridden == [{"index": 0, "item_id": "a", "revision": 1, "actor_id": 1}]


def test_remove_of_a_removed_item_is_a_noop():
    server = Server(state("a", "b"))
    server.submit(base_revision=0, ops=[Remove("a")], actor_id=1)
    outcome = server.submit(base_revision=0, ops=[Remove("a")], actor_id=2)
    assert outcome.applied == [] and outcome.noops[0]["reason"] == "already_removed"
    assert server.state.revision == 1


def test_title_edits_last_committed_wins_and_the_loser_is_named():
    server = Server(state("a"))
    server.submit(base_revision=0, ops=[Update(title="Alice's")], actor_id=1)
    outcome = server.submit(base_revision=0, ops=[Update(title="Bob's")], actor_id=2)
    assert server.state.title == "Bob's"
    assert outcome.overridden == [{"index": 0, "field": "title", "revision": 1, "actor_id": 1}]


def test_batch_ops_see_each_other_in_order():
    server = Server(state("a", "b"))
    server.submit(base_revision=0, ops=[Insert(0, 1, "x")], actor_id=1)
    outcome = server.submit(
        base_revision=0, ops=[Insert(2, 1, "new"), Move("new", 0), Remove("a"), Update(description="d")], actor_id=2
    )
    # "x" was committed first into the gap the move names, so it stays first.
    assert ids(server.state) == ["x", "new", "b"]
    assert server.state.description == "d"
    assert len(outcome.applied) == 4


@pytest.mark.parametrize(
    ("op", "field"),
    [
        (Insert(3, 1), "ops[0].index"),
        (Insert(-1, 1), "ops[0].index"),
        (Move("a", 2), "ops[0].index"),
        (Insert(0, 1, "b"), "ops[0].item_id"),
    ],
)
def test_out_of_range_or_taken_ids_are_refused(op, field):
    with pytest.raises(OpError) as caught:
        transform(base=state("a", "b"), committed=[], ops=[op], actor_id=1, added_at="now")
    assert caught.value.field == field


def test_every_applied_op_inverts():
    start = state("a", "b", "c")
    ops = [
        {"op": "insert", "index": 1, "item": item("x")},
        {"op": "move", "item_id": "a", "from": 0, "to": 3},
        {"op": "remove", "index": 1, "item": item("b")},
        {"op": "update", "set": {"title": "U"}, "previous": {"title": "T"}},
    ]
    end = apply_all(start.copy(), ops)
    assert ids(end) == ["x", "c", "a"] and end.title == "U"
    back = unapply_all(end, ops)
    assert ids(back) == ["a", "b", "c"] and back.title == "T"
    assert invert(invert(ops[1])) == ops[1]


# --- Convergence ------------------------------------------------------------------------

CLIENTS = 3


@st.composite
def sessions(draw):
    """A schedule of steps: a client receives some broadcasts, or edits its (stale) copy."""
    steps = []
    for _ in range(draw(st.integers(min_value=1, max_value=25))):
        client = draw(st.integers(min_value=0, max_value=CLIENTS - 1))
        if draw(st.booleans()):
            steps.append(("receive", client, draw(st.integers(min_value=1, max_value=3))))
        else:
            ops = draw(st.lists(st.tuples(st.sampled_from("IRMU"), st.integers(0, 1000)), min_size=1, max_size=3))
            steps.append(("edit", client, ops))
    return steps


def _client_ops(local: PlaylistState, choices, counter) -> list:
    """Valid ops against the client's own copy, written as a client would."""
    view = ids(local)
    ops = []
    for kind, number in choices:
        if kind == "I" or not view:
            new_id = f"n{next(counter)}"
            ops.append(Insert(number % (len(view) + 1), number, new_id))
            view.insert(ops[-1].index, new_id)
        elif kind == "R":
            ops.append(Remove(view.pop(number % len(view))))
        elif kind == "M":
            moving = view.pop(number % len(view))
            ops.append(Move(moving, (number // 7) % (len(view) + 1)))
            view.insert(ops[-1].index, moving)
        else:
            ops.append(Update(title=f"title {number}"))
    return ops


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=sessions())
def test_stale_concurrent_clients_converge_on_the_server_and_the_log(schedule):
    import itertools

    counter = itertools.count()
    initial = state("a", "b", "c", "d")
    server = Server(initial)
    copies = [initial.copy() for _ in range(CLIENTS)]

    def receive(client: int, count: int) -> None:
        copy = copies[client]
        for revision in server.log[copy.revision : copy.revision + count]:
            apply_all(copy, revision.ops)
            copy.revision = revision.revision

    for action, client, payload in schedule:
        if action == "receive":
            receive(client, payload)
            continue
        local = copies[client]
        ops = _client_ops(local, payload, counter)
        before = set(ids(server.state))
        outcome = server.submit(base_revision=local.revision, ops=ops, actor_id=client)
        after = ids(server.state)
        assert len(after) == len(set(after)), "an item appears twice"
        for op in ops:
            if isinstance(op, Insert):
                assert op.item_id in after or any(isinstance(o, Remove) and o.item_id == op.item_id for o in ops)
            if isinstance(op, Remove):
                assert op.item_id not in after
        if not outcome.applied:
            assert set(after) == before

    for client in range(CLIENTS):
        receive(client, len(server.log))
        assert ids(copies[client]) == ids(server.state)
        assert copies[client].title == server.state.title
    replayed = apply_all(initial.copy(), [op for revision in server.log for op in revision.ops])
    assert ids(replayed) == ids(server.state) and replayed.title == server.state.title


@st.composite
def edits(draw):
    """Ops against ["a".."e"], some of them out of range or naming unknown items."""
    ops = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from("IRMU"))
        item = draw(st.sampled_from(["a", "b", "c", "d", "e", "zz", "n0", "n1"]))
        index = draw(st.integers(-1, 8))
        if kind == "I":
            ops.append(Insert(index, 1, draw(st.sampled_from([None, "n0", "n1", "a"]))))
        elif kind == "R":
            ops.append(Remove(item))
        elif kind == "M":
            ops.append(Move(item, index))
        else:
            ops.append(Update(title=draw(st.sampled_from(["T", "U"]))))
    return ops


@settings(max_examples=500, deadline=None)
@given(ops=edits())
def test_the_direct_path_answers_exactly_as_the_merged_one(ops):
    """With nothing committed since the base, transform() skips the merged sequence;
    both paths must give the same ops, drops, no-ops and errors."""
    from playlists.ot import _transform_direct, _transform_merged

    answers = []
    for path in (_transform_direct, _transform_merged):
        counter = iter(range(100))
        arguments = {"base": state("a", "b", "c", "d", "e"), "ops": ops, "actor_id": 1, "added_at": "now"}
        if path is _transform_merged:
            arguments["committed"] = []
        try:
            answers.append(path(**arguments, new_item_id=lambda counter=counter: f"g{next(counter)}"))
        except OpError as exc:
            answers.append(("error", exc.field))
    assert answers[0] == answers[1]

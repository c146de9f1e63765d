"""Operational transformation of playlist edits: pure Python, no Django, no I/O.

An edit arrives as a list of *client ops* (``Insert``, ``Remove``, ``Move``,
``Update``; one op, or a batch of them) written against the playlist as the
client saw it at its *base revision*. Other editors may have committed ops
since. ``transform`` rewrites the edit so that, applied after those ops, it
does what its author meant, and returns it as *applied ops*: the JSON objects
stored in the op log, broadcast to subscribers and replayed by clients
(``apply``)::

    {"op": "insert", "index": 3, "item": {"item_id", "track_id", "added_by", "added_at"}}
    {"op": "remove", "index": 5, "item": {...the removed item...}}
    {"op": "move", "item_id": "…", "from": 7, "to": 2}
    {"op": "update", "set": {"title": "…"}, "previous": {"title": "…"}}

Indexes of applied ops are positions in the list just before that op, so a
client that applies each revision's ops in order holds exactly the server's
list. Every applied op carries what undoing it needs (``invert``).

How the transformation works: the base list is rebuilt (by undoing the ops
committed since), then those ops are replayed over it in a *merged sequence*
whose entries remember whether the author sees them (the base as the client
had it, plus the client's own earlier ops of the batch) and whether the server
has them now. An index of the client names a gap between entries the client
sees; the entry lands in that gap and its server index is counted among the
entries the server has. Items are named by id, so a remove or a move finds its
item wherever it went. The rules (docs/protocol.md, "Playlists"):

* Two inserts at the same index: the one committed first comes first. More
  generally, an insert goes after every item that others added or moved into
  the same gap since its base revision.
* A move of an item someone else removed is dropped and reported.
* Concurrent moves of one item: the last committed wins (the earlier ones are
  reported as overridden).
* A remove of an item no longer there is a no-op.
* Concurrent edits of the title or description: the last committed wins; the
  overridden edits are reported with their revision and author.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# --- State ---------------------------------------------------------------------------------

Item = dict[str, Any]  # {"item_id": str, "track_id": int, "added_by": int | None, "added_at": str}

TEXT_FIELDS = ("title", "description")


@dataclass
class PlaylistState:
    """A playlist's content at one revision."""

    title: str
    description: str
    items: list[Item] = field(default_factory=list)
    revision: int = 0

    def copy(self) -> PlaylistState:
        return PlaylistState(self.title, self.description, [dict(item) for item in self.items], self.revision)

    def item_ids(self) -> list[str]:
        return [item["item_id"] for item in self.items]


class OpError(ValueError):
    """An op that cannot be applied as written; ``field`` names the part at fault."""

    def __init__(self, message: str, *, field: str = "op"):
        super().__init__(message)
        self.message = message
        self.field = field


class StateMismatch(RuntimeError):
    """An applied op does not fit the state it is applied to: the log and the list
    disagree. Never caused by a client; the service refuses to write."""


# --- Applied ops: replay and undo ----------------------------------------------------------


def apply(state: PlaylistState, op: dict[str, Any]) -> None:
    """Apply one applied op to ``state`` in place (replay, snapshots, clients)."""
    kind = op["op"]
    items = state.items
    if kind == "insert":
        index = op["index"]
        if not 0 <= index <= len(items):
            raise StateMismatch(f"insert at {index} into {len(items)} items")
        items.insert(index, dict(op["item"]))
    elif kind == "remove":
        index = op["index"]
        if not 0 <= index < len(items) or items[index]["item_id"] != op["item"]["item_id"]:
            raise StateMismatch(f"remove of {op['item']['item_id']} at {index}")
        del items[index]
    elif kind == "move":
        source, target = op["from"], op["to"]
        if not 0 <= source < len(items) or items[source]["item_id"] != op["item_id"] or not 0 <= target < len(items):
            raise StateMismatch(f"move of {op['item_id']} from {source} to {target}")
        items.insert(target, items.pop(source))
    elif kind == "update":
        for name, value in op["set"].items():
            setattr(state, name, value)
    else:
        raise StateMismatch(f"unknown applied op {kind!r}")


def apply_all(state: PlaylistState, ops: Iterable[dict[str, Any]]) -> PlaylistState:
    for op in ops:
        apply(state, op)
    return state


def invert(op: dict[str, Any]) -> dict[str, Any]:
    """The applied op that undoes ``op`` (applied right after it)."""
    kind = op["op"]
    if kind == "insert":
        return {"op": "remove", "index": op["index"], "item": op["item"]}
    if kind == "remove":
        return {"op": "insert", "index": op["index"], "item": op["item"]}
    if kind == "move":
        return {"op": "move", "item_id": op["item_id"], "from": op["to"], "to": op["from"]}
    return {"op": "update", "set": op["previous"], "previous": op["set"]}


def unapply_all(state: PlaylistState, ops: Sequence[dict[str, Any]]) -> PlaylistState:
    """Undo ``ops`` (which were applied in order) from ``state``, in place."""
    for op in reversed(ops):
        apply(state, invert(op))
    return state


# --- Client ops --------------------------------------------------------------------------


@dataclass(frozen=True)
class Insert:
    index: int
    track_id: int
    item_id: str | None = None  # chosen by the client to name its new item at once; else the server's
    restore: Item | None = None  # a revert's item, put back with its original author and time


@dataclass(frozen=True)
class Remove:
    item_id: str


@dataclass(frozen=True)
class Move:
    item_id: str
    index: int  # the item's index once moved


@dataclass(frozen=True)
class Update:
    title: str | None = None
    description: str | None = None


ClientOp = Insert | Remove | Move | Update


@dataclass(frozen=True)
class Committed:
    """The ops of one revision committed after the client's base."""

    revision: int
    actor_id: int | None
    ops: Sequence[dict[str, Any]]


@dataclass
class Outcome:
    """What became of a client edit: ``applied`` ops (empty: nothing changed), and
    per client op what was ``dropped``, a no-op, or ``overridden`` by it."""

    applied: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    noops: list[dict[str, Any]] = field(default_factory=list)
    overridden: list[dict[str, Any]] = field(default_factory=list)


class _Entry:
    __slots__ = ("client", "item", "server")

    def __init__(self, item: Item, *, client: bool, server: bool) -> None:
        self.item = item
        self.client = client
        self.server = server


class _Merged:
    """The base list with the committed ops replayed over it, keeping what each side sees."""

    def __init__(self, base: Sequence[Item]) -> None:
        self.entries = [_Entry(item, client=True, server=True) for item in base]

    # Positions in the merged list of gaps named in one side's coordinates.

    def _server_gap(self, index: int) -> int:
        """Right after the server's ``index - 1``-th entry (before any entry it no longer has)."""
        if index == 0:
            return 0
        seen = 0
        for position, entry in enumerate(self.entries):
            if entry.server:
                seen += 1
                if seen == index:
                    return position + 1
        raise StateMismatch(f"server gap {index} beyond {seen} items")

    def _client_gap(self, index: int) -> int:
        """Right before the client's ``index``-th entry: after whatever others put in that gap."""
        seen = 0
        for position, entry in enumerate(self.entries):
            if entry.client:
                if seen == index:
                    return position
                seen += 1
        return len(self.entries)

    def _server_nth(self, index: int) -> _Entry:
        seen = 0
        for entry in self.entries:
            if entry.server:
                if seen == index:
                    return entry
                seen += 1
        raise StateMismatch(f"no server item at {index}")

    def server_index(self, target: _Entry) -> int:
        count = 0
        for entry in self.entries:
            if entry is target:
                return count
            count += entry.server
        raise StateMismatch("entry not in the sequence")

    def find(self, item_id: str, *, side: str) -> _Entry | None:
        for entry in self.entries:
            if getattr(entry, side) and entry.item["item_id"] == item_id:
                return entry
        return None

    def client_length(self) -> int:
        return sum(entry.client for entry in self.entries)

    def server_items(self) -> list[Item]:
        return [entry.item for entry in self.entries if entry.server]

    # Replaying what others committed.

    def replay(self, op: dict[str, Any]) -> None:
        kind = op["op"]
        if kind == "insert":
            self.entries.insert(self._server_gap(op["index"]), _Entry(op["item"], client=False, server=True))
        elif kind == "remove":
            entry = self._server_nth(op["index"])
            if entry.item["item_id"] != op["item"]["item_id"]:
                raise StateMismatch("remove names another item")
            entry.server = False
        elif kind == "move":
            entry = self._server_nth(op["from"])
            entry.server = False
            self.entries.insert(self._server_gap(op["to"]), _Entry(entry.item, client=False, server=True))

    # Placing the client's ops.

    def place(self, client_index: int, item: Item, *, server: bool) -> _Entry:
        entry = _Entry(item, client=True, server=server)
        self.entries.insert(self._client_gap(client_index), entry)
        return entry


def transform(
    *,
    base: PlaylistState,
    committed: Sequence[Committed],
    ops: Sequence[ClientOp],
    actor_id: int | None,
    added_at: str,
    new_item_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> Outcome:
    """Rewrite ``ops`` (written against ``base``) to follow ``committed`` (the ops of
    every revision after ``base.revision``, in order). Raises ``OpError`` for an op
    that was wrong even against its base (an index out of range, an item id taken);
    then nothing is applied. ``added_at`` stamps inserted items."""
    if not committed:
        return _transform_direct(base=base, ops=ops, actor_id=actor_id, added_at=added_at, new_item_id=new_item_id)
    return _transform_merged(
        base=base, committed=committed, ops=ops, actor_id=actor_id, added_at=added_at, new_item_id=new_item_id
    )


def _transform_merged(*, base, committed, ops, actor_id, added_at, new_item_id) -> Outcome:
    """Ops committed since the base: place the client's ops in the merged sequence."""
    merged = _Merged(base.items)
    edited: dict[str, list[Committed]] = {name: [] for name in TEXT_FIELDS}
    moved: dict[str, list[Committed]] = {}
    current = {"title": base.title, "description": base.description}
    for revision in committed:
        for op in revision.ops:
            merged.replay(op)
            if op["op"] == "update":
                for name, value in op["set"].items():
                    edited[name].append(revision)
                    current[name] = value
            elif op["op"] == "move":
                moved.setdefault(op["item_id"], []).append(revision)

    outcome = Outcome()
    taken = {entry.item["item_id"] for entry in merged.entries}
    for number, op in enumerate(ops):
        if isinstance(op, Insert):
            _insert(merged, outcome, number, op, taken=taken, actor_id=actor_id, added_at=added_at, new_id=new_item_id)
        elif isinstance(op, Remove):
            _remove(merged, outcome, number, op)
        elif isinstance(op, Move):
            _move(merged, outcome, number, op, moved=moved.get(op.item_id, ()))
        else:
            _update(outcome, number, op, current=current, edited=edited)
    return outcome


def _check_index(index: int, upper: int, field_name: str) -> None:
    if not 0 <= index <= upper:
        raise OpError(f"index {index} is out of range 0..{upper}.", field=field_name)


def _transform_direct(*, base, ops, actor_id, added_at, new_item_id) -> Outcome:
    """Nothing committed since the base: the author's list is the server's, so the
    ops apply as written, with the list operations of C (a revert of thousands of
    items takes milliseconds here, seconds through the merged sequence). Same
    rules and answers as the merged path, which a test checks."""
    ids = base.item_ids()
    items = {item["item_id"]: item for item in base.items}
    taken = set(items)
    present = set(ids)
    current = {"title": base.title, "description": base.description}
    edited: dict[str, list[Committed]] = {name: [] for name in TEXT_FIELDS}
    outcome = Outcome()
    for number, op in enumerate(ops):
        if isinstance(op, Insert):
            _check_index(op.index, len(ids), f"ops[{number}].index")
            item = _new_item(op, number, taken=taken, actor_id=actor_id, added_at=added_at, new_id=new_item_id)
            ids.insert(op.index, item["item_id"])
            present.add(item["item_id"])
            items[item["item_id"]] = item
            outcome.applied.append({"op": "insert", "index": op.index, "item": item})
        elif isinstance(op, Remove):
            if op.item_id not in present:
                outcome.noops.append({"index": number, "item_id": op.item_id, "reason": "already_removed"})
                continue
            index = ids.index(op.item_id)
            del ids[index]
            present.discard(op.item_id)
            outcome.applied.append({"op": "remove", "index": index, "item": items[op.item_id]})
        elif isinstance(op, Move):
            _direct_move(ids, present, outcome, number, op)
        else:
            _update(outcome, number, op, current=current, edited=edited)
    return outcome


def _direct_move(ids: list[str], present: set[str], outcome: Outcome, number: int, op: Move) -> None:
    if op.item_id not in present:
        _check_index(op.index, len(ids), f"ops[{number}].index")
        outcome.dropped.append({"index": number, "item_id": op.item_id, "reason": "item_removed"})
        return
    source = ids.index(op.item_id)
    _check_index(op.index, len(ids) - 1, f"ops[{number}].index")
    del ids[source]
    ids.insert(op.index, op.item_id)
    if source != op.index:
        outcome.applied.append({"op": "move", "item_id": op.item_id, "from": source, "to": op.index})
    else:
        outcome.noops.append({"index": number, "item_id": op.item_id, "reason": "unchanged"})


def _new_item(op: Insert, number: int, *, taken: set[str], actor_id, added_at: str, new_id) -> Item:
    item_id = op.item_id or new_id()
    if item_id in taken:
        raise OpError(f"item_id {item_id} is already in use.", field=f"ops[{number}].item_id")
    taken.add(item_id)
    if op.restore is not None:
        return {**op.restore, "item_id": item_id}
    return {"item_id": item_id, "track_id": op.track_id, "added_by": actor_id, "added_at": added_at}


def _insert(merged, outcome, number, op: Insert, *, taken, actor_id, added_at, new_id) -> None:
    _check_index(op.index, merged.client_length(), f"ops[{number}].index")
    item = _new_item(op, number, taken=taken, actor_id=actor_id, added_at=added_at, new_id=new_id)
    entry = merged.place(op.index, item, server=True)
    outcome.applied.append({"op": "insert", "index": merged.server_index(entry), "item": item})


def _remove(merged, outcome, number, op: Remove) -> None:
    seen = merged.find(op.item_id, side="client")
    if seen is not None:
        seen.client = False
    held = merged.find(op.item_id, side="server")
    if held is None:
        outcome.noops.append({"index": number, "item_id": op.item_id, "reason": "already_removed"})
        return
    index = merged.server_index(held)
    held.server = False
    outcome.applied.append({"op": "remove", "index": index, "item": held.item})


def _move(merged, outcome, number, op: Move, *, moved) -> None:
    seen = merged.find(op.item_id, side="client")
    if seen is not None:
        seen.client = False
    # The index the item will have: 0..(the client's list without the item).
    _check_index(op.index, merged.client_length(), f"ops[{number}].index")
    held = merged.find(op.item_id, side="server")
    if held is None:
        if seen is not None:
            merged.place(op.index, seen.item, server=False)
        outcome.dropped.append({"index": number, "item_id": op.item_id, "reason": "item_removed"})
        return
    source = merged.server_index(held)
    held.server = False
    entry = merged.place(op.index, held.item, server=True)
    target = merged.server_index(entry)
    outcome.overridden.extend(
        {"index": number, "item_id": op.item_id, "revision": other.revision, "actor_id": other.actor_id}
        for other in moved
    )
    if source != target:
        outcome.applied.append({"op": "move", "item_id": op.item_id, "from": source, "to": target})
    elif not moved:
        outcome.noops.append({"index": number, "item_id": op.item_id, "reason": "unchanged"})


def _update(outcome, number, op: Update, *, current, edited) -> None:
    changes: dict[str, str] = {}
    previous: dict[str, str] = {}
    for name in TEXT_FIELDS:
        value = getattr(op, name)
        if value is None:
            continue
        outcome.overridden.extend(
            {"index": number, "field": name, "revision": other.revision, "actor_id": other.actor_id}
            for other in edited[name]
        )
        if value != current[name]:
            previous[name] = current[name]
            changes[name] = current[name] = value
    if changes:
        outcome.applied.append({"op": "update", "set": changes, "previous": previous})
    else:
        outcome.noops.append({"index": number, "reason": "unchanged"})

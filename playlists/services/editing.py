"""Editing a playlist: applying ops, reverting, snapshots and history retention.

``playlist_apply_op`` is the one write path of a playlist's content: the
WebSocket ``playlist.op`` handler, the REST ops endpoint, revert (REST,
WebSocket and the admin action) and the demo seed all go through it. Under a
row lock on the playlist (``SELECT … FOR UPDATE``: ops of one playlist are
applied one at a time whatever the number of server processes), the edit is
transformed against every op committed after its base revision
(``playlists.ot``), its items are written, the op log gets the next revision,
and ``playlist.changed`` is broadcast after commit. docs/protocol.md,
"Playlists", gives the rules and the wire format.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from prometheus_client import Counter, Histogram

from accounts.principals import Principal
from realtime.protocol import ErrorCode, timestamp
from spotify_agent.errors import Conflict, DomainError, Invalid, NotFound

from ..constants import (
    CLIENT_OP_ID_MAX_LENGTH,
    PLAYLIST_DESCRIPTION_MAX_LENGTH,
    PLAYLIST_TITLE_MAX_LENGTH,
    CollaboratorRole,
    OpKind,
)
from ..events import ActorRef, PlaylistOverriddenEvent, playlist_changed_event, playlist_event_send
from ..models import Playlist, PlaylistItem, PlaylistOp, PlaylistSnapshot, Track
from ..ot import (
    ClientOp,
    Insert,
    Move,
    OpError,
    Outcome,
    PlaylistState,
    Remove,
    Update,
    apply_all,
    transform,
    unapply_all,
)
from ..selectors import (
    RevisionGone,
    committed_since,
    playlist_access,
    playlist_ops_between,
    playlist_snapshot,
    playlist_state,
    playlist_state_at,
)

# No label carries a playlist or tenant: the series count stays fixed.
OPS = Counter(
    "playlists_ops_total",
    "Playlist edits answered, by outcome: committed, unchanged (nothing to apply), duplicate (a retry), resync.",
    ["outcome"],
)
TRANSFORM_DEPTH = Histogram(
    "playlists_op_transform_depth",
    "Revisions an edit was transformed across (0: written against the current revision).",
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500),
)
DROPPED = Counter("playlists_ops_dropped_total", "Ops dropped by the merge rules (a move of a removed item).")

# Positions are rewritten in two steps so the unique (playlist, position)
# constraint, checked row by row, never sees two items on one position: moved
# rows first go above every real position, then to their final place.
_POSITION_OFFSET = 1_000_000_000


class ResyncRequired(DomainError):
    """The op's base revision is older than what can be transformed (pruned history,
    or more than ``PLAYLIST_TRANSFORM_WINDOW`` revisions behind): nothing was
    applied; ``details.snapshot`` is the playlist now. Reload and redo the edit."""

    code = ErrorCode.RESYNC_REQUIRED
    http_status = 409
    default_message = "Your copy of the playlist is too old to merge this edit; reload it and try again."


@dataclass(frozen=True)
class OpResult:
    """What became of an edit, as its author's ack reports it."""

    playlist_id: int
    revision: int  # the new revision, or the current one if nothing changed
    committed: bool  # a new revision was written
    ops: list[dict[str, Any]] = field(default_factory=list)  # the ops as applied (transformed)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    noops: list[dict[str, Any]] = field(default_factory=list)
    overridden: list[dict[str, Any]] = field(default_factory=list)
    duplicate: bool = False  # a retry of an op already answered: this is the first answer

    def as_dict(self) -> dict[str, Any]:
        return {
            "playlist": self.playlist_id,
            "revision": self.revision,
            "committed": self.committed,
            "ops": self.ops,
            "dropped": self.dropped,
            "noops": self.noops,
            "overridden": self.overridden,
            "duplicate": self.duplicate,
        }


# --- Parsing client ops ----------------------------------------------------------------


def _integer(raw: dict, name: str, path: str) -> int:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{name} must be an integer.", field=f"{path}.{name}")
    return value


def _item_id(raw: dict, path: str, *, required: bool = True) -> str | None:
    value = raw.get("item_id")
    if value is None and not required:
        return None
    try:
        return str(uuid.UUID(value))
    except (TypeError, ValueError, AttributeError):
        raise Invalid("item_id must be a UUID.", field=f"{path}.item_id") from None


def _text(raw: dict, name: str, path: str, *, max_length: int, allow_empty: bool) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string.", field=f"{path}.{name}")
    value = value.strip()
    if not value and not allow_empty:
        raise Invalid(f"{name} must not be empty.", field=f"{path}.{name}")
    if len(value) > max_length:
        raise Invalid(f"{name} is longer than {max_length} characters.", field=f"{path}.{name}")
    return value


def _parse_one(raw: Any, path: str) -> ClientOp:
    if not isinstance(raw, dict):
        raise Invalid("An op must be an object.", field=path)
    kind = raw.get("op")
    if kind == "insert":
        return Insert(
            index=_integer(raw, "index", path),
            track_id=_integer(raw, "track", path),
            item_id=_item_id(raw, path, required=False),
        )
    if kind == "remove":
        return Remove(item_id=_item_id(raw, path))
    if kind == "move":
        return Move(item_id=_item_id(raw, path), index=_integer(raw, "index", path))
    if kind == "update":
        update = Update(
            title=_text(raw, "title", path, max_length=PLAYLIST_TITLE_MAX_LENGTH, allow_empty=False),
            description=_text(raw, "description", path, max_length=PLAYLIST_DESCRIPTION_MAX_LENGTH, allow_empty=True),
        )
        if update.title is None and update.description is None:
            raise Invalid("An update sets title, description or both.", field=path)
        return update
    raise Invalid("op must be one of insert, remove, move, update, batch.", field=f"{path}.op")


def ops_parse(raw: Any) -> list[ClientOp]:
    """The client ops of one edit: a single op, or ``{"op": "batch", "ops": [...]}``
    (at most ``PLAYLIST_MAX_BATCH_OPS``). Raises ``Invalid`` naming the field."""
    if isinstance(raw, dict) and raw.get("op") == "batch":
        ops = raw.get("ops")
        if not isinstance(ops, list) or not ops:
            raise Invalid("A batch carries a non-empty list of ops.", field="op.ops")
        if len(ops) > settings.PLAYLIST_MAX_BATCH_OPS:
            raise Invalid(f"A batch holds at most {settings.PLAYLIST_MAX_BATCH_OPS} ops.", field="op.ops")
        return [_parse_one(op, f"op.ops[{number}]") for number, op in enumerate(ops)]
    return [_parse_one(raw, "op")]


def _clean_client_op_id(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= CLIENT_OP_ID_MAX_LENGTH:
        raise Invalid(f"client_op_id must be a string of 1-{CLIENT_OP_ID_MAX_LENGTH} characters.", field="client_op_id")
    return value


# --- Applying -----------------------------------------------------------------------------


def _locked(*, actor: Principal, playlist_id: int) -> Playlist:
    """The playlist, row-locked until the transaction ends, if the caller may edit it."""
    return playlist_access(actor=actor, playlist_id=playlist_id, minimum=CollaboratorRole.EDITOR, lock=True).playlist


def _stored_answer(entry: PlaylistOp) -> OpResult:
    OPS.labels("duplicate").inc()
    return OpResult(**{**entry.outcome, "duplicate": True})


_OP_FIELD = re.compile(r"^ops\[(\d+)\]\.(\w+)$")


def _field_as_sent(field: str, *, batch: bool) -> str:
    """Name a field of the edit's k-th op as the client wrote it, as the parser does:
    ``op.index`` for a single op, ``op.ops[k].index`` in a batch."""
    match = _OP_FIELD.match(field)
    if match is None:
        return field
    number, name = match.groups()
    return f"op.ops[{number}].{name}" if batch else f"op.{name}"


def _check_tracks(*, tenant_id: int, ops: list[ClientOp]) -> None:
    wanted = {op.track_id for op in ops if isinstance(op, Insert) and op.restore is None}
    found = set(Track.objects.filter(tenant_id=tenant_id, pk__in=wanted).values_list("pk", flat=True))
    for number, op in enumerate(ops):
        if isinstance(op, Insert) and op.restore is None and op.track_id not in found:
            raise Invalid("No such track in this tenant's catalog.", field=f"ops[{number}].track")


def _write_items(*, playlist: Playlist, before: PlaylistState, after: PlaylistState) -> None:
    """Make the item rows match ``after``, touching only rows that changed."""
    old = {item["item_id"]: index for index, item in enumerate(before.items)}
    new = {item["item_id"]: index for index, item in enumerate(after.items)}
    removed = [item_id for item_id in old if item_id not in new]
    moved = {item_id: index for item_id, index in new.items() if item_id in old and old[item_id] != index}
    rows = PlaylistItem.objects.filter(playlist=playlist)
    if removed:
        rows.filter(item_id__in=removed).delete()
    if moved:
        rows.filter(item_id__in=moved).update(position=F("position") + _POSITION_OFFSET)
        pks = dict(rows.filter(item_id__in=moved).values_list("item_id", "pk"))
        PlaylistItem.objects.bulk_update(
            [PlaylistItem(pk=pks[uuid.UUID(item_id)], position=index) for item_id, index in moved.items()],
            ["position"],
            batch_size=500,
        )
    added = [(index, item) for index, item in enumerate(after.items) if item["item_id"] not in old]
    PlaylistItem.objects.bulk_create(
        [
            PlaylistItem(
                tenant_id=playlist.tenant_id,
                playlist=playlist,
                item_id=item["item_id"],
                track_id=item["track_id"],
                position=index,
                added_by_id=item["added_by"],
                added_at=item["added_at"],
            )
            for index, item in added
        ],
        batch_size=500,
    )


def _apply(
    *,
    actor_user_id: int | None,
    playlist: Playlist,
    base_revision: int,
    ops: list[ClientOp],
    client_op_id: str,
    kind: str,
) -> OpResult:
    """The write of an edit on a locked playlist (authorization already done);
    ``actor_user_id`` is the op's author."""
    if base_revision > playlist.revision:
        raise Invalid("base_revision is ahead of the playlist.", field="base_revision")
    if base_revision < playlist.history_floor or playlist.revision - base_revision > settings.PLAYLIST_TRANSFORM_WINDOW:
        OPS.labels("resync").inc()
        raise ResyncRequired(details={"snapshot": playlist_snapshot(playlist=playlist)})
    _check_tracks(tenant_id=playlist.tenant_id, ops=ops)
    current = playlist_state(playlist=playlist)
    entries = playlist_ops_between(playlist=playlist, after=base_revision)
    committed = committed_since(entries)
    base = unapply_all(current.copy(), [op for revision in committed for op in revision.ops])
    now = timezone.now()
    try:
        outcome = transform(base=base, committed=committed, ops=ops, actor_id=actor_user_id, added_at=timestamp(now))
    except OpError as exc:
        raise Invalid(exc.message, field=exc.field) from None
    after = apply_all(current.copy(), outcome.applied)
    if len(after.items) > settings.PLAYLIST_MAX_ITEMS:
        raise Conflict(
            f"A playlist holds at most {settings.PLAYLIST_MAX_ITEMS} items.",
            details={"max_items": settings.PLAYLIST_MAX_ITEMS},
        )
    _check_new_item_ids(outcome)
    revision = playlist.revision + 1 if outcome.applied else playlist.revision
    result = OpResult(
        playlist_id=playlist.pk,
        revision=revision,
        committed=bool(outcome.applied),
        ops=outcome.applied,
        dropped=outcome.dropped,
        noops=outcome.noops,
        overridden=outcome.overridden,
    )
    entry = PlaylistOp.objects.create(
        tenant_id=playlist.tenant_id,
        playlist=playlist,
        revision=revision if outcome.applied else None,
        base_revision=base_revision,
        actor_id=actor_user_id,
        client_op_id=client_op_id,
        kind=kind,
        ops=outcome.applied,
        outcome={key: value for key, value in result.as_dict().items() if key not in {"duplicate", "playlist"}}
        | {"playlist_id": playlist.pk},
    )
    if outcome.applied:
        _commit_revision(playlist=playlist, after=after, current=current, entry=entry, outcome=outcome)
    # Counted once the transaction commits: a rolled-back edit answered nothing.
    transaction.on_commit(lambda: _count(outcome, depth=len(committed)))
    return result


def _count(outcome: Outcome, *, depth: int) -> None:
    OPS.labels("committed" if outcome.applied else "unchanged").inc()
    TRANSFORM_DEPTH.observe(depth)
    if outcome.dropped:
        DROPPED.inc(len(outcome.dropped))


def _check_new_item_ids(outcome: Outcome) -> None:
    new_ids = [op["item"]["item_id"] for op in outcome.applied if op["op"] == "insert"]
    if new_ids and PlaylistItem.objects.filter(item_id__in=new_ids).exists():
        raise Invalid("An item_id given for a new item is already in use.", field="item_id")


def _commit_revision(
    *, playlist: Playlist, after: PlaylistState, current: PlaylistState, entry: PlaylistOp, outcome: Outcome
) -> None:
    _write_items(playlist=playlist, before=current, after=after)
    playlist.title, playlist.description = after.title, after.description
    playlist.revision = entry.revision
    playlist.save(update_fields=["title", "description", "revision", "updated_at"])
    playlist_event_send(tenant_id=playlist.tenant_id, playlist_id=playlist.pk, event=playlist_changed_event(entry))
    _tell_overridden(playlist=playlist, entry=entry, overridden=outcome.overridden)
    if entry.revision % settings.PLAYLIST_SNAPSHOT_EVERY == 0:
        from ..tasks import playlist_snapshot_take as playlist_snapshot_take_task

        playlist_snapshot_take_task.delay_on_commit(playlist.pk, entry.revision)


def _tell_overridden(*, playlist: Playlist, entry: PlaylistOp, overridden: list[dict[str, Any]]) -> None:
    """Each author whose edit this revision overrode hears it on their own sockets."""
    losers: dict[int, list[dict[str, Any]]] = {}
    for loss in overridden:
        if loss["actor_id"] is not None and loss["actor_id"] != entry.actor_id:
            losers.setdefault(loss["actor_id"], []).append(
                {key: value for key, value in loss.items() if key not in {"actor_id", "index"}}
            )
    by = ActorRef(id=entry.actor_id, username=entry.actor.get_username()) if entry.actor_id else None
    for user_id, losses in losers.items():
        playlist_event_send(
            tenant_id=playlist.tenant_id,
            playlist_id=playlist.pk,
            to_user_id=user_id,
            event=PlaylistOverriddenEvent(playlist=playlist.pk, revision=entry.revision, by=by, overridden=losses),
        )


@transaction.atomic
def playlist_apply_op(
    *, actor: Principal, playlist_id: int, base_revision: Any, op: Any, client_op_id: Any
) -> OpResult:
    """Apply one edit (a single op or a batch) written against ``base_revision``.

    Preconditions: the caller is an owner or editor of a playlist of their tenant
    (a viewer gets ``Forbidden``). Idempotent on ``client_op_id`` per user: a
    retry gets the first answer, with ``duplicate`` set. Locks the playlist row.
    Emits ``playlist.changed`` (to subscribers) and ``playlist.overridden`` (to
    each author whose edit this one overrode) after commit. Raises ``Invalid``
    (malformed op, index out of range, unknown track), ``Conflict`` (playlist
    full) or ``ResyncRequired`` (base too old); nothing is written then.
    """
    client_op_id = _clean_client_op_id(client_op_id)
    if isinstance(base_revision, bool) or not isinstance(base_revision, int) or base_revision < 0:
        raise Invalid("base_revision must be a non-negative integer.", field="base_revision")
    ops = ops_parse(op)
    playlist = _locked(actor=actor, playlist_id=playlist_id)
    stored = PlaylistOp.objects.filter(playlist=playlist, actor_id=actor.user_id, client_op_id=client_op_id).first()
    if stored is not None:
        return _stored_answer(stored)
    try:
        return _apply(
            actor_user_id=actor.user_id,
            playlist=playlist,
            base_revision=base_revision,
            ops=ops,
            client_op_id=client_op_id,
            kind=OpKind.EDIT,
        )
    except Invalid as exc:
        batch = isinstance(op, dict) and op.get("op") == "batch"
        fields = exc.details.get("fields", {})
        exc.details["fields"] = {_field_as_sent(name, batch=batch): errors for name, errors in fields.items()}
        raise


def revert_ops(*, current: PlaylistState, target: PlaylistState) -> list[ClientOp]:
    """Client ops that turn ``current`` into ``target`` (items keep their ids; a
    restored item comes back with its original author and time)."""
    wanted = {item["item_id"] for item in target.items}
    ops: list[ClientOp] = [Remove(item["item_id"]) for item in current.items if item["item_id"] not in wanted]
    working = [item["item_id"] for item in current.items if item["item_id"] in wanted]
    kept = set(working)
    for index, item in enumerate(target.items):
        item_id = item["item_id"]
        if index < len(working) and working[index] == item_id:
            continue
        if item_id in kept:
            working.remove(item_id)
            ops.append(Move(item_id, index))
        else:
            ops.append(Insert(index, item["track_id"], item_id, restore=item))
        working.insert(index, item_id)
    if (current.title, current.description) != (target.title, target.description):
        ops.append(Update(title=target.title, description=target.description))
    return ops


def _clean_revision(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid("revision must be a non-negative integer.", field="revision")
    return value


@transaction.atomic
def playlist_revert_do(*, playlist_id: int, revision: Any, actor_user_id: int | None, client_op_id: Any) -> OpResult:
    """Trusted path of ``playlist_revert`` (also the admin's, whose staff have no
    tenant): no role check; ``actor_user_id`` is recorded as the op's author.
    Otherwise as ``playlist_revert``: locks the playlist, writes a ``revert``
    revision, emits ``playlist.changed`` (and ``playlist.overridden``) after
    commit, idempotent on ``client_op_id`` per author. A missing playlist or a
    revision outside the retained history is ``NotFound``."""
    client_op_id = _clean_client_op_id(client_op_id)
    revision = _clean_revision(revision)
    playlist = Playlist.objects.select_for_update().filter(pk=playlist_id).first()
    if playlist is None:
        raise NotFound("No such playlist.")
    stored = PlaylistOp.objects.filter(playlist=playlist, actor_id=actor_user_id, client_op_id=client_op_id).first()
    if stored is not None:
        return _stored_answer(stored)
    try:
        target = playlist_state_at(playlist=playlist, revision=revision)
    except RevisionGone:
        raise NotFound("That revision is not in the playlist's history.") from None
    ops = revert_ops(current=playlist_state(playlist=playlist), target=target)
    return _apply(
        actor_user_id=actor_user_id,
        playlist=playlist,
        base_revision=playlist.revision,
        ops=ops,
        client_op_id=client_op_id,
        kind=OpKind.REVERT,
    )


@transaction.atomic
def playlist_revert(*, actor: Principal, playlist_id: int, revision: Any, client_op_id: Any) -> OpResult:
    """Make the playlist what it was at ``revision``, as a new revision (kind
    ``revert``), so a revert can itself be reverted. Same preconditions, events
    and idempotency as ``playlist_apply_op``; a revision older than the retained
    history is ``NotFound``."""
    client_op_id = _clean_client_op_id(client_op_id)
    revision = _clean_revision(revision)
    playlist = _locked(actor=actor, playlist_id=playlist_id)
    return playlist_revert_do(
        playlist_id=playlist.pk, revision=revision, actor_user_id=actor.user_id, client_op_id=client_op_id
    )


def queue_pop_do(*, playlist_id: int, client_op_id: str) -> dict[str, Any] | None:
    """Trusted path for a listening session's queue: take its first item off, as
    an edit by nobody (the server), and return it (None when the queue is empty).
    Locks the playlist; idempotent on ``client_op_id`` (a retried advance pops
    once: the retry gets the item its first attempt took). Emits ``playlist.changed``."""
    with transaction.atomic():
        playlist = Playlist.objects.select_for_update().get(pk=playlist_id)
        stored = PlaylistOp.objects.filter(playlist=playlist, actor_id=None, client_op_id=client_op_id).first()
        if stored is not None:
            applied = stored.outcome.get("ops") or []
            return applied[0]["item"] if applied else None
        current = playlist_state(playlist=playlist)
        if not current.items:
            return None
        first = current.items[0]
        _apply(
            actor_user_id=None,
            playlist=playlist,
            base_revision=playlist.revision,
            ops=[Remove(first["item_id"])],
            client_op_id=client_op_id,
            kind=OpKind.EDIT,
        )
        return first


def queue_append_do(*, playlist_id: int, track_ids: list[int], client_op_id: str) -> OpResult | None:
    """Trusted path for a listening session's radio mode: append tracks to its
    queue as the server. Idempotent on ``client_op_id``; None when there is
    nothing to add. Emits ``playlist.changed``."""
    if not track_ids:
        return None
    with transaction.atomic():
        playlist = Playlist.objects.select_for_update().get(pk=playlist_id)
        stored = PlaylistOp.objects.filter(playlist=playlist, actor_id=None, client_op_id=client_op_id).first()
        if stored is not None:
            return _stored_answer(stored)
        length = PlaylistItem.objects.filter(playlist=playlist).count()
        ops = [Insert(length + offset, track_id) for offset, track_id in enumerate(track_ids)]
        return _apply(
            actor_user_id=None,
            playlist=playlist,
            base_revision=playlist.revision,
            ops=ops,
            client_op_id=client_op_id,
            kind=OpKind.EDIT,
        )


# --- Snapshots and retention -------------------------------------------------------------


def playlist_snapshot_take(*, playlist_id: int, revision: int) -> PlaylistSnapshot | None:
    """Store the playlist as of ``revision`` (idempotent; None if the playlist or the
    revision is gone). Called by a Celery task every ``PLAYLIST_SNAPSHOT_EVERY`` revisions."""
    playlist = Playlist.objects.filter(pk=playlist_id).first()
    if playlist is None:
        return None
    try:
        state = playlist_state_at(playlist=playlist, revision=revision)
    except RevisionGone:
        return None
    snapshot, _ = PlaylistSnapshot.objects.get_or_create(
        playlist=playlist,
        revision=revision,
        defaults={
            "tenant_id": playlist.tenant_id,
            "title": state.title,
            "description": state.description,
            "items": state.items,
        },
    )
    return snapshot


@transaction.atomic
def playlist_history_prune(*, playlist_id: int, now=None) -> int:
    """Drop the op log older than ``PLAYLIST_HISTORY_RETENTION_DAYS``, down to the
    newest snapshot whose revision was committed before the cutoff, and move
    ``history_floor`` there. Returns the entries deleted. Locks the playlist."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.PLAYLIST_HISTORY_RETENTION_DAYS)
    playlist = Playlist.objects.select_for_update().filter(pk=playlist_id).first()
    if playlist is None:
        return 0
    old_revisions = PlaylistOp.objects.filter(
        playlist=playlist, revision__isnull=False, created_at__lt=cutoff
    ).values_list("revision", flat=True)
    floor = (
        PlaylistSnapshot.objects.filter(playlist=playlist, revision__gt=playlist.history_floor)
        .filter(revision__in=old_revisions)
        .order_by("-revision")
        .values_list("revision", flat=True)
        .first()
    )
    deleted = PlaylistOp.objects.filter(playlist=playlist, revision__isnull=True, created_at__lt=cutoff).delete()[0]
    if floor is None:
        return deleted
    deleted += PlaylistOp.objects.filter(playlist=playlist, revision__lte=floor).delete()[0]
    PlaylistSnapshot.objects.filter(playlist=playlist, revision__lt=floor).delete()
    Playlist.objects.filter(pk=playlist.pk).update(history_floor=floor)
    return deleted

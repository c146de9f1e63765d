"""Events playlists broadcast, their payloads, and the one helper that sends them.

A playlist's subscribers get its traffic through the fan-out
(``realtime.fanout``) on the playlist's topic (``realtime.groups.playlist_topic``):
``playlist.changed`` carries one committed revision, with the revision as the
envelope's ``seq``, so the hub's sequenced delivery gives every subscriber each
revision once, in order, and reads gaps back from the op log;
``playlist.presence`` (who views or edits, and what each editor has selected)
is outside the sequence. Events for one user (your edit was overridden, you
lost access) go to the user's channel-layer group. Frames carry the playlist's
id in ``content.playlist``; docs/protocol.md, "Playlists", is the reference.
Only ``playlists.services`` send these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from realtime.events import Event, event_send_on_commit
from realtime.fanout import get_fanout, publish_on_commit
from realtime.groups import playlist_topic, tenant_group, user_group
from realtime.protocol import encode, envelope, timestamp

from .models import PlaylistOp
from .selectors import tracks_by_id


@dataclass(frozen=True)
class ActorRef:
    id: int | None
    username: str


@dataclass(frozen=True)
class PlaylistChangedEvent(Event):
    """One committed revision: replay ``ops`` (applied ops, docs/protocol.md) in order
    on the list at ``revision - 1``. ``kind`` is ``edit`` or ``revert``."""

    type: ClassVar[str] = "playlist.changed"
    playlist: int
    revision: int
    kind: str
    actor: ActorRef | None
    ops: list[dict[str, Any]]
    client_op_id: str
    committed_at: str
    tracks: dict[str, dict[str, Any]]  # the tracks of inserted items, by id


@dataclass(frozen=True)
class PlaylistPresenceEvent(Event):
    """Who is on the playlist now: each viewer or editor once per socket, with the
    item an editor has selected. Sent whole on every change (lists are small)."""

    type: ClassVar[str] = "playlist.presence"
    playlist: int
    present: list[dict[str, Any]]


@dataclass(frozen=True)
class PlaylistOverriddenEvent(Event):
    """Sent to the author of an edit a later commit overrode (a title, a description,
    an item's place): ``by`` made revision ``revision``; ``overridden`` lists what."""

    type: ClassVar[str] = "playlist.overridden"
    playlist: int
    revision: int
    by: ActorRef | None
    overridden: list[dict[str, Any]]


@dataclass(frozen=True)
class PlaylistAccessChangedEvent(Event):
    """Who may see the playlist changed (a collaborator removed, the playlist made
    private or deleted). Sent over the channel layer to the user concerned, or to
    the whole tenant; each socket streaming the playlist checks its access again
    and, if it is gone, stops and gets ``playlist.access_revoked``."""

    type: ClassVar[str] = "playlist.access_changed"
    playlist: int
    reason: str


# --- Builders ---------------------------------------------------------------------


def actor_ref(user) -> ActorRef | None:
    return ActorRef(id=user.pk, username=user.get_username()) if user is not None else None


def playlist_changed_event(entry: PlaylistOp) -> PlaylistChangedEvent:
    """The event of one op-log entry (live and replayed alike); load ``actor`` with it."""
    inserted = [op["item"]["track_id"] for op in entry.ops if op["op"] == "insert"]
    tracks = tracks_by_id(tenant_id=entry.tenant_id, track_ids=inserted) if inserted else {}
    return PlaylistChangedEvent(
        playlist=entry.playlist_id,
        revision=entry.revision,
        kind=entry.kind,
        actor=actor_ref(entry.actor),
        ops=entry.ops,
        client_op_id=entry.client_op_id,
        committed_at=timestamp(entry.created_at),
        tracks={str(track_id): track for track_id, track in tracks.items()},
    )


def playlist_changed_frame(entry: PlaylistOp) -> dict[str, Any]:
    event = playlist_changed_event(entry)
    return envelope(event.type, asdict(event), seq=entry.revision)


# --- The one sender ---------------------------------------------------------------


def playlist_event_send(
    *, tenant_id: int, playlist_id: int, event: Event, to_user_id: int | None = None, to_tenant: bool = False
) -> None:
    """Broadcast ``event`` once the current transaction commits: to the playlist's
    subscribers through the fan-out (``playlist.changed`` with its revision as
    seq), or over the channel layer to one user's sockets (``to_user_id``) or to
    every socket of the tenant (``to_tenant``)."""
    if to_user_id is not None:
        event_send_on_commit(group=user_group(tenant_id=tenant_id, user_id=to_user_id), event=event)
        return
    if to_tenant:
        event_send_on_commit(group=tenant_group(tenant_id=tenant_id), event=event)
        return
    seq = event.revision if isinstance(event, PlaylistChangedEvent) else None
    publish_on_commit(
        topic=playlist_topic(tenant_id=tenant_id, playlist_id=playlist_id),
        frame=envelope(event.type, asdict(event), seq=seq),
    )


async def playlist_presence_publish(*, tenant_id: int, playlist_id: int, present: list[dict[str, Any]]) -> None:
    """Broadcast who is on the playlist now (ephemeral, nothing stored: published at once)."""
    event = PlaylistPresenceEvent(playlist=playlist_id, present=present)
    await get_fanout().publish(
        playlist_topic(tenant_id=tenant_id, playlist_id=playlist_id), encode(envelope(event.type, asdict(event)))
    )

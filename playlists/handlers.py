"""The ``playlist.*`` WebSocket family.

Adapters only: each handler parses the frame, calls one playlists service or
selector (``realtime.calls.call_service``, which checks the caller's role on
every call) and renders the result.

Live delivery is the fan-out's, as for chat rooms: ``playlist.subscribe``
subscribes the socket to the playlist's topic first, waits until Redis
confirms it, then reads the playlist, and starts the stream only once the
``ack`` (with the snapshot) is queued. ``playlist.changed`` frames carry the
revision as ``seq``, so the stream delivers each revision once and in order
and reads gaps back from the op log (``_stored_frames``), re-checking access.
docs/protocol.md, "Playlists", is the client-facing description.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.principals import Principal
from realtime.calls import call_service
from realtime.groups import playlist_topic, playlist_topic_id
from realtime.presence import topic_presence_list, topic_presence_remove, topic_presence_set
from realtime.protocol import ClientMessage, ErrorCode, ProtocolError, Reply, encode, envelope, invalid_field
from realtime.registry import Connection, registry
from realtime.subscriptions import StoredFrame
from spotify_agent.errors import DomainError

from .events import playlist_changed_frame, playlist_presence_publish
from .selectors import playlist_access, playlist_ops_between, playlist_snapshot, playlist_suggestions
from .services.editing import playlist_apply_op, playlist_revert

PRESENCE_STATES = ("viewing", "editing")

# --- Parsing ----------------------------------------------------------------------


def _playlist_id(message: ClientMessage) -> int:
    value = message.content.get("playlist")
    if value is None:
        raise invalid_field("playlist", "playlist is required.")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ProtocolError(ErrorCode.NOT_FOUND, "No such playlist.")
    return value


def _optional_revision(content: dict[str, Any], field: str) -> int | None:
    value = content.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_field(field, f"{field} must be a non-negative integer.")
    return value


def _topic(conn: Connection, playlist_id: int) -> str:
    return playlist_topic(tenant_id=conn.principal.tenant_id, playlist_id=playlist_id)


# --- Reads used by the handlers ---------------------------------------------------------


def _subscribe_state(*, actor: Principal, playlist_id: int, revision: int | None) -> dict[str, Any]:
    """The ack of ``playlist.subscribe``: a snapshot, or, when ``revision`` is still in
    the op log, only the current revision (the stream replays what follows it)."""
    access = playlist_access(actor=actor, playlist_id=playlist_id)
    playlist = access.playlist
    if revision is not None and playlist.history_floor <= revision <= playlist.revision:
        return {"playlist": playlist.pk, "revision": playlist.revision, "role": access.role, "resumed": True}
    return {**playlist_snapshot(playlist=playlist), "role": access.role, "resumed": False}


def _stored_frames(*, actor: Principal, playlist_id: int, after: int, upto: int | None) -> list[StoredFrame]:
    """Stored ``playlist.changed`` frames with ``after < revision <= upto`` (one page),
    access checked again: a catch-up never reads a playlist the caller lost."""
    playlist = playlist_access(actor=actor, playlist_id=playlist_id).playlist
    entries = playlist_ops_between(playlist=playlist, after=after, upto=upto, limit=settings.MESSAGE_BATCH_SIZE)
    return [StoredFrame(seq=entry.revision, text=encode(playlist_changed_frame(entry))) for entry in entries]


def _still_visible(*, actor: Principal, playlist_id: int) -> bool:
    try:
        playlist_access(actor=actor, playlist_id=playlist_id)
    except DomainError:
        return False
    return True


# --- Presence ------------------------------------------------------------------------------


async def _presence_show(conn: Connection, playlist_id: int, *, state: str, selected: str | None) -> list:
    principal = conn.principal
    topic = _topic(conn, playlist_id)
    await topic_presence_set(
        topic=topic,
        tenant_id=principal.tenant_id,
        user_id=principal.user_id,
        connection_id=conn.connection_id,
        data={"user": principal.user_id, "username": principal.username or "", "state": state, "selected": selected},
    )
    return await _presence_publish(conn, playlist_id)


async def _presence_publish(conn: Connection, playlist_id: int) -> list:
    present = await topic_presence_list(topic=_topic(conn, playlist_id))
    await playlist_presence_publish(tenant_id=conn.principal.tenant_id, playlist_id=playlist_id, present=present)
    return present


async def _leave(conn: Connection, playlist_id: int) -> bool:
    """Stop streaming the playlist and take the socket off its presence."""
    topic = _topic(conn, playlist_id)
    subscribed = conn.room_unsubscribe(topic)
    if await topic_presence_remove(topic=topic, connection_id=conn.connection_id):
        await _presence_publish(conn, playlist_id)
    return subscribed


# --- playlist.* ------------------------------------------------------------------------------


@registry.message("playlist.subscribe")
async def handle_playlist_subscribe(conn: Connection, message: ClientMessage) -> Reply:
    playlist_id = _playlist_id(message)
    revision = _optional_revision(message.content, "revision")
    actor = conn.principal
    await call_service(playlist_access, actor=actor, playlist_id=playlist_id)
    topic = _topic(conn, playlist_id)

    async def fetch_missing(*, after: int, upto: int | None) -> list[StoredFrame]:
        try:
            return await database_sync_to_async(_stored_frames)(
                actor=actor, playlist_id=playlist_id, after=after, upto=upto
            )
        except DomainError:
            await _leave(conn, playlist_id)
            return []

    # Subscribe first, read after: whatever commits after the read arrives live.
    subscription = await conn.room_subscribe(topic, fetch_missing=fetch_missing)
    try:
        state = await call_service(_subscribe_state, actor=actor, playlist_id=playlist_id, revision=revision)
    except BaseException:
        conn.room_unsubscribe(topic)
        raise
    resumed = state["resumed"]
    start_after = revision if resumed else state["revision"]

    async def start() -> None:
        await subscription.start(last_seq=start_after, replay=resumed)

    conn.after_reply(start)
    state["present"] = await _presence_show(conn, playlist_id, state="viewing", selected=None)
    return Reply("ack", state)


@registry.message("playlist.unsubscribe")
async def handle_playlist_unsubscribe(conn: Connection, message: ClientMessage) -> Reply:
    playlist_id = _playlist_id(message)
    return Reply("ack", {"playlist": playlist_id, "unsubscribed": await _leave(conn, playlist_id)})


@registry.message("playlist.op")
async def handle_playlist_op(conn: Connection, message: ClientMessage) -> Reply:
    content = message.content
    result = await call_service(
        playlist_apply_op,
        actor=conn.principal,
        playlist_id=_playlist_id(message),
        base_revision=content.get("base_revision"),
        op=content.get("op"),
        client_op_id=content.get("client_op_id"),
    )
    return Reply("ack", result.as_dict())


@registry.message("playlist.revert")
async def handle_playlist_revert(conn: Connection, message: ClientMessage) -> Reply:
    content = message.content
    result = await call_service(
        playlist_revert,
        actor=conn.principal,
        playlist_id=_playlist_id(message),
        revision=content.get("revision"),
        client_op_id=content.get("client_op_id"),
    )
    return Reply("ack", result.as_dict())


@registry.message("playlist.presence")
async def handle_playlist_presence(conn: Connection, message: ClientMessage) -> Reply:
    playlist_id = _playlist_id(message)
    state = message.content.get("state", "viewing")
    if state not in PRESENCE_STATES:
        raise invalid_field("state", "state must be viewing or editing.")
    selected = message.content.get("selected")
    if selected is not None and (not isinstance(selected, str) or len(selected) > 64):
        raise invalid_field("selected", "selected must be an item id or null.")
    if _topic(conn, playlist_id) not in conn.room_subscriptions():
        raise ProtocolError(ErrorCode.CONFLICT, "Subscribe to the playlist first.")
    present = await _presence_show(conn, playlist_id, state=state, selected=selected if state == "editing" else None)
    return Reply("ack", {"playlist": playlist_id, "present": present})


@registry.message("playlist.suggest")
async def handle_playlist_suggest(conn: Connection, message: ClientMessage) -> Reply:
    playlist_id = _playlist_id(message)
    limit = _optional_revision(message.content, "limit")
    suggestions = await call_service(playlist_suggestions, actor=conn.principal, playlist_id=playlist_id, limit=limit)
    return Reply("playlist.suggestions", {"playlist": playlist_id, "suggestions": suggestions})


# --- Events and socket close -----------------------------------------------------------------


@registry.event("playlist.overridden")
async def handle_playlist_overridden_event(conn: Connection, event: dict[str, Any]) -> None:
    await conn.send_frame(envelope("playlist.overridden", event.get("content", {})))


@registry.event("playlist.access_changed")
async def handle_playlist_access_changed_event(conn: Connection, event: dict[str, Any]) -> None:
    content = event.get("content", {})
    playlist_id = content.get("playlist")
    if not isinstance(playlist_id, int) or _topic(conn, playlist_id) not in conn.room_subscriptions():
        return
    if await database_sync_to_async(_still_visible)(actor=conn.principal, playlist_id=playlist_id):
        return
    await _leave(conn, playlist_id)
    await conn.send_frame(
        envelope("playlist.access_revoked", {"playlist": playlist_id, "reason": content.get("reason", "")})
    )


@registry.close_listener
async def clear_playlist_presence(conn: Connection) -> None:
    for topic in conn.room_subscriptions():
        playlist_id = playlist_topic_id(topic)
        if playlist_id is not None:
            await _leave(conn, playlist_id)

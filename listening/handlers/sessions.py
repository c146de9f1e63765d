"""The ``session.*`` and ``playback.*`` WebSocket families.

Listening sessions: ``session.join`` joins (``listening.services.sessions``) and
subscribes the socket to the session's fan-out topic, then answers with the
session and its playback state, so a late joiner knows at once what plays and
where (``session.create`` creates one and follows it alike); ``session.leave``;
``session.invite``, ``session.visibility``, ``session.list`` and
``session.suggestions``; ``playback.play|pause|seek|skip|volume`` with the
``base_revision`` the client saw (a command that lost to another answers
``conflict`` with ``details.state``); ``playback.buffering`` reports the
player buffering or ready, so a start waits for it (a closing socket withdraws
its report). The queue is edited with ``playlist.*`` on the session's queue
playlist. docs/protocol.md, "Listening sessions".
"""

from __future__ import annotations

import weakref

from realtime.calls import call_service
from realtime.groups import session_topic
from realtime.protocol import ClientMessage, ErrorCode, ProtocolError, Reply, envelope, invalid_field
from realtime.registry import Connection, registry

from .. import reactions, selectors
from ..constants import PlaybackAction
from ..services import playback, sessions
from .common import session_id_of

# Sessions in which this socket's user is muted: reactions are refused here,
# without a database read per reaction (session.join and session.moderated
# keep it current; playback commands are checked by the service).
_muted: weakref.WeakKeyDictionary[Connection, set[int]] = weakref.WeakKeyDictionary()


def _mute(conn: Connection, session_id: int, *, muted: bool) -> None:
    sessions = _muted.setdefault(conn, set())
    if muted:
        sessions.add(session_id)
    else:
        sessions.discard(session_id)


@registry.event("session.moderated")
async def handle_session_moderated_event(conn: Connection, event: dict) -> None:
    content = event.get("content", {})
    session_id, action = content.get("session"), content.get("action")
    if not isinstance(session_id, int):
        return
    if action == "removed":
        conn.room_unsubscribe(session_topic(tenant_id=conn.principal.tenant_id, session_id=session_id))
    _mute(conn, session_id, muted=action == "muted")
    await conn.send_frame(envelope("session.moderated", {"session": session_id, "action": action}))


@registry.event("session.invited")
async def handle_session_invited_event(conn: Connection, event: dict) -> None:
    await conn.send_frame(envelope("session.invited", event.get("content", {})))


async def _follow(conn: Connection, session_id: int) -> Reply:
    """Subscribe the socket to a session its user is in, and answer with the
    session's state (``session.join`` and ``session.create``)."""
    actor = conn.principal
    topic = session_topic(tenant_id=actor.tenant_id, session_id=session_id)

    async def fetch_missing(*, after: int, upto: int | None) -> list:
        # Nothing here is sequenced: every frame is a whole state or a notice.
        return []

    # Subscribe first, read after: a command committed after the read arrives live.
    subscription = await conn.room_subscribe(topic, fetch_missing=fetch_missing)
    try:
        state = await call_service(selectors.session_state, actor=actor, session_id=session_id)
    except BaseException:
        conn.room_unsubscribe(topic)
        raise

    async def start() -> None:
        await subscription.start(last_seq=0, replay=False)

    conn.after_reply(start)
    _mute(conn, session_id, muted=state["muted"])
    return Reply("ack", state)


@registry.message("session.join")
async def handle_session_join(conn: Connection, message: ClientMessage) -> Reply:
    session_id = session_id_of(message)
    await call_service(sessions.session_join, actor=conn.principal, session_id=session_id)
    return await _follow(conn, session_id)


@registry.message("session.create")
async def handle_session_create(conn: Connection, message: ClientMessage) -> Reply:
    content = message.content
    # Options left out take the service's defaults.
    options = {name: content[name] for name in ("mode", "visibility", "vote_skip_threshold") if name in content}
    session = await call_service(sessions.session_create, actor=conn.principal, title=content.get("title"), **options)
    return await _follow(conn, session.pk)


@registry.message("session.invite")
async def handle_session_invite(conn: Connection, message: ClientMessage) -> Reply:
    session_id = session_id_of(message)
    result = await call_service(
        sessions.session_invite, actor=conn.principal, session_id=session_id, user_id=message.content.get("user")
    )
    return Reply("ack", {"session": session_id, "user": result.invite.user_id, "created": result.created})


@registry.message("session.visibility")
async def handle_session_visibility(conn: Connection, message: ClientMessage) -> Reply:
    session = await call_service(
        sessions.session_visibility_set,
        actor=conn.principal,
        session_id=session_id_of(message),
        visibility=message.content.get("visibility"),
    )
    return Reply("ack", {"session": session.pk, "visibility": session.visibility})


@registry.message("session.list")
async def handle_session_list(conn: Connection, message: ClientMessage) -> Reply:
    limit = message.content.get("limit")
    listed = await call_service(selectors.sessions_listed_page, actor=conn.principal, limit=limit)
    return Reply("ack", {"sessions": listed})


@registry.message("session.suggestions")
async def handle_session_suggestions(conn: Connection, message: ClientMessage) -> Reply:
    session_id = session_id_of(message)
    suggestions = await call_service(
        selectors.session_recommendations,
        actor=conn.principal,
        session_id=session_id,
        limit=message.content.get("limit"),
    )
    return Reply("ack", {"session": session_id, "suggestions": suggestions})


@registry.message("session.leave")
async def handle_session_leave(conn: Connection, message: ClientMessage) -> Reply:
    session_id = session_id_of(message)
    await call_service(sessions.session_leave, actor=conn.principal, session_id=session_id)
    conn.room_unsubscribe(session_topic(tenant_id=conn.principal.tenant_id, session_id=session_id))
    return Reply("ack", {"session": session_id})


def _playback_handler(action: str):
    async def handle(conn: Connection, message: ClientMessage) -> Reply:
        content = message.content
        state = await call_service(
            playback.playback_command,
            actor=conn.principal,
            session_id=session_id_of(message),
            action=action,
            base_revision=content.get("base_revision"),
            position_ms=content.get("position_ms"),
            volume=content.get("volume"),
        )
        return Reply("ack", state)

    handle.__name__ = f"handle_playback_{action}"
    return handle


for _action in PlaybackAction.values:
    registry.message(f"playback.{_action}")(_playback_handler(_action))


@registry.message("playback.position")
async def handle_playback_position(conn: Connection, message: ClientMessage) -> Reply:
    content = message.content
    answer = await call_service(
        playback.playback_position_report,
        actor=conn.principal,
        session_id=session_id_of(message),
        revision=content.get("revision"),
        position_ms=content.get("position_ms"),
        at_ms=content.get("at_ms"),
    )
    return Reply("playback.correction", answer)


# Sessions in which this socket last reported its player buffering: when the
# socket closes, its player holds nobody's start any more (docs/protocol.md,
# "Buffering"), so the report is withdrawn at once rather than left to lapse.
_buffering: weakref.WeakKeyDictionary[Connection, set[int]] = weakref.WeakKeyDictionary()


@registry.message("playback.buffering")
async def handle_playback_buffering(conn: Connection, message: ClientMessage) -> Reply:
    session_id = session_id_of(message)
    answer = await call_service(
        playback.playback_buffering,
        actor=conn.principal,
        session_id=session_id,
        buffering=message.content.get("buffering"),
        revision=message.content.get("revision"),
    )
    reported = _buffering.setdefault(conn, set())
    if answer["buffering"]:
        reported.add(session_id)
    else:
        reported.discard(session_id)
    return Reply("ack", answer)


@registry.close_listener
async def handle_playback_buffering_closed(conn: Connection) -> None:
    actor = conn.principal
    for session_id in _buffering.pop(conn, set()):
        try:
            await call_service(playback.playback_buffering, actor=actor, session_id=session_id, buffering=False)
        except ProtocolError:
            pass  # the member left, or the session ended: nothing to withdraw


@registry.message("session.react")
async def handle_session_react(conn: Connection, message: ClientMessage) -> Reply:
    session_id = session_id_of(message)
    emoji = message.content.get("emoji")
    if emoji not in reactions.EMOJIS:
        raise invalid_field("emoji", f"emoji must be one of {' '.join(reactions.EMOJIS)}.")
    principal = conn.principal
    # Joining checked membership; the socket follows the session only while a member.
    if session_topic(tenant_id=principal.tenant_id, session_id=session_id) not in conn.room_subscriptions():
        raise ProtocolError(ErrorCode.FORBIDDEN, "Join the session first.")
    if session_id in _muted.get(conn, ()):
        raise ProtocolError(ErrorCode.FORBIDDEN, "The host muted you in this session.")
    if not await reactions.reaction_allowed(session_id=session_id, user_id=principal.user_id):
        raise ProtocolError(ErrorCode.RATE_LIMITED, "Too many reactions; slow down.", retry_after=1.0)
    await reactions.reaction_count(tenant_id=principal.tenant_id, session_id=session_id, emoji=emoji)
    return Reply("ack", {})


@registry.message("session.mute")
async def handle_session_mute(conn: Connection, message: ClientMessage) -> Reply:
    await call_service(
        sessions.member_mute,
        actor=conn.principal,
        session_id=session_id_of(message),
        user_id=message.content.get("user"),
        muted=message.content.get("muted", True),
        context=conn.request_context,
    )
    return Reply("ack", {})


@registry.message("session.remove")
async def handle_session_remove(conn: Connection, message: ClientMessage) -> Reply:
    await call_service(
        sessions.member_remove,
        actor=conn.principal,
        session_id=session_id_of(message),
        user_id=message.content.get("user"),
        context=conn.request_context,
    )
    return Reply("ack", {})


@registry.message("session.radio")
async def handle_session_radio(conn: Connection, message: ClientMessage) -> Reply:
    state = await call_service(
        playback.session_radio_set,
        actor=conn.principal,
        session_id=session_id_of(message),
        on=message.content.get("on"),
    )
    return Reply("ack", state)


@registry.message("playback.vote_skip")
async def handle_playback_vote_skip(conn: Connection, message: ClientMessage) -> Reply:
    answer = await call_service(playback.playback_vote_skip, actor=conn.principal, session_id=session_id_of(message))
    return Reply("ack", answer)

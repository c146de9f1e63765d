"""The ``dj.*`` and ``request.*`` WebSocket families: the audience of a DJ session.

``dj.waitlist_join`` / ``dj.waitlist_leave`` / ``dj.waitlist_remove`` /
``dj.turn`` / ``dj.list``: the wait list and the DJ on deck
(``listening.services.djs``); ``request.create`` / ``vote`` / ``withdraw`` /
``accept`` / ``reject`` / ``list``: audience requests
(``listening.services.requests``). Each handler parses the frame and calls one
service or selector; the rules are theirs. Changes reach the session's sockets
as ``session.djs`` and ``session.requests``. docs/protocol.md, "DJ rotation"
and "Requests".
"""

from __future__ import annotations

from realtime.calls import call_service
from realtime.protocol import ClientMessage, Reply
from realtime.registry import Connection, registry

from .. import selectors
from ..services import djs, requests
from .common import session_id_of

# --- DJ rotation -----------------------------------------------------------------------


@registry.message("dj.waitlist_join")
async def handle_dj_waitlist_join(conn: Connection, message: ClientMessage) -> Reply:
    deck = await call_service(djs.waitlist_join, actor=conn.principal, session_id=session_id_of(message))
    return Reply("ack", deck)


@registry.message("dj.waitlist_leave")
async def handle_dj_waitlist_leave(conn: Connection, message: ClientMessage) -> Reply:
    deck = await call_service(djs.waitlist_leave, actor=conn.principal, session_id=session_id_of(message))
    return Reply("ack", deck)


@registry.message("dj.waitlist_remove")
async def handle_dj_waitlist_remove(conn: Connection, message: ClientMessage) -> Reply:
    deck = await call_service(
        djs.waitlist_remove,
        actor=conn.principal,
        session_id=session_id_of(message),
        user_id=message.content.get("user"),
    )
    return Reply("ack", deck)


@registry.message("dj.turn")
async def handle_dj_turn(conn: Connection, message: ClientMessage) -> Reply:
    deck = await call_service(
        djs.waitlist_turn_set,
        actor=conn.principal,
        session_id=session_id_of(message),
        tracks=message.content.get("tracks"),
    )
    return Reply("ack", deck)


@registry.message("dj.list")
async def handle_dj_list(conn: Connection, message: ClientMessage) -> Reply:
    deck = await call_service(selectors.waitlist_state, actor=conn.principal, session_id=session_id_of(message))
    return Reply("ack", deck)


# --- Requests --------------------------------------------------------------------------


@registry.message("request.create")
async def handle_request_create(conn: Connection, message: ClientMessage) -> Reply:
    answer = await call_service(
        requests.request_create,
        actor=conn.principal,
        session_id=session_id_of(message),
        track_id=message.content.get("track"),
    )
    return Reply("ack", answer)


@registry.message("request.vote")
async def handle_request_vote(conn: Connection, message: ClientMessage) -> Reply:
    answer = await call_service(
        requests.request_vote,
        actor=conn.principal,
        session_id=session_id_of(message),
        request_id=message.content.get("request"),
        vote=message.content.get("vote", True),
    )
    return Reply("ack", answer)


def _decision_handler(action: str, service):
    async def handle(conn: Connection, message: ClientMessage) -> Reply:
        answer = await call_service(
            service,
            actor=conn.principal,
            session_id=session_id_of(message),
            request_id=message.content.get("request"),
        )
        return Reply("ack", answer)

    handle.__name__ = f"handle_request_{action}"
    return handle


for _action, _service in (
    ("withdraw", requests.request_withdraw),
    ("accept", requests.request_accept),
    ("reject", requests.request_reject),
):
    registry.message(f"request.{_action}")(_decision_handler(_action, _service))


@registry.message("request.list")
async def handle_request_list(conn: Connection, message: ClientMessage) -> Reply:
    answer = await call_service(
        selectors.requests_pending,
        actor=conn.principal,
        session_id=session_id_of(message),
        limit=message.content.get("limit"),
    )
    return Reply("ack", answer)

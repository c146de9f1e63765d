"""The handler registry and how a family plugs into the consumer.

Handler-level tests run the real consumer and middleware in-process with
``WebsocketCommunicator``: they exercise dispatch rules, which a daphne process
would not change.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.exceptions import ImproperlyConfigured

from realtime import consumers, handlers
from realtime.groups import user_group
from realtime.middleware import WebSocketAuthMiddleware
from realtime.protocol import ErrorCode, ProtocolError, Reply, envelope
from realtime.registry import HandlerRegistry, registry
from realtime.routing import websocket_urlpatterns

from .conftest import access_token


def test_project_families_are_discovered():
    assert {"auth", "ping"} <= set(registry.message_types())
    assert registry.event_handler("session.revoked") is handlers.handle_core_session_revoked


def test_a_type_cannot_be_registered_twice():
    table = HandlerRegistry()

    @table.message("demo.do")
    async def first(conn, message):
        return None

    with pytest.raises(ImproperlyConfigured):

        @table.message("demo.do")
        async def second(conn, message):
            return None


@pytest.fixture
def demo_registry(monkeypatch) -> HandlerRegistry:
    """The core family plus a demo family, swapped in for the consumer's registry."""
    table = HandlerRegistry()
    table.message("auth")(handlers.handle_core_auth)
    table.message("ping")(handlers.handle_core_ping)
    table.event("session.revoked")(handlers.handle_core_session_revoked)

    @table.message("demo.echo")
    async def handle_demo_echo(conn, message):
        return Reply("demo.echoed", {"you_said": message.content, "user": conn.principal.user_id})

    @table.message("demo.quiet")
    async def handle_demo_quiet(conn, message):
        return None

    @table.message("demo.denied")
    async def handle_demo_denied(conn, message):
        raise ProtocolError(ErrorCode.FORBIDDEN, "Not for you.")

    @table.message("demo.broken")
    async def handle_demo_broken(conn, message):
        raise RuntimeError("bug")

    @table.event("demo.happened")
    async def handle_demo_happened(conn, event):
        await conn.send_frame(envelope("demo.happened", event["content"], room=event["room"], seq=event["seq"]))

    monkeypatch.setattr(consumers, "registry", table)
    return table


@pytest.fixture
async def communicator(demo_registry, user):
    token = await database_sync_to_async(access_token)(user)
    app = WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns))
    comm = WebsocketCommunicator(app, "/ws/", headers=[(b"authorization", f"Bearer {token}".encode())])
    connected, _ = await comm.connect()
    assert connected
    assert (await comm.receive_json_from())["type"] == "hello"
    yield comm
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_family_answers_through_the_registry(communicator, user):
    await communicator.send_json_to({"type": "demo.echo", "id": "e1", "content": {"a": 1}})
    answer = await communicator.receive_json_from()

    assert (answer["type"], answer["id"]) == ("demo.echoed", "e1")
    assert answer["content"] == {"you_said": {"a": 1}, "user": user.pk}


@pytest.mark.django_db(transaction=True)
async def test_a_handler_returning_nothing_is_acked_only_when_asked(communicator):
    await communicator.send_json_to({"type": "demo.quiet"})
    await communicator.send_json_to({"type": "demo.quiet", "id": 5})

    answer = await communicator.receive_json_from()
    assert (answer["type"], answer["id"]) == ("ack", 5)
    assert await communicator.receive_nothing(timeout=0.2)


@pytest.mark.django_db(transaction=True)
async def test_handler_errors_become_error_frames_and_the_socket_stays(communicator):
    await communicator.send_json_to({"type": "demo.denied", "id": "d"})
    denied = await communicator.receive_json_from()
    await communicator.send_json_to({"type": "demo.broken", "id": "b"})
    broken = await communicator.receive_json_from()
    await communicator.send_json_to({"type": "ping", "id": "p"})
    pong = await communicator.receive_json_from()

    assert (denied["code"], denied["id"], denied["message"]) == ("forbidden", "d", "Not for you.")
    assert (broken["code"], broken["id"]) == ("internal", "b")
    assert (pong["type"], pong["id"]) == ("pong", "p")


@pytest.mark.django_db(transaction=True)
async def test_group_events_reach_the_socket_through_their_handler(communicator, tenant, user):
    layer = get_channel_layer()
    group = user_group(tenant_id=tenant.pk, user_id=user.pk)

    await layer.group_send(group, {"type": "demo.happened", "room": "r1", "seq": 3, "content": {"x": 1}})
    await layer.group_send(group, {"type": "demo.unregistered", "content": {}})

    frame = await communicator.receive_json_from()
    assert (frame["type"], frame["room"], frame["seq"], frame["content"]) == ("demo.happened", "r1", 3, {"x": 1})
    assert await communicator.receive_nothing(timeout=0.2)

"""A client that stops reading, against a real daphne: the bytes held for it are
bounded (``WS_MAX_OUTBOUND_BYTES``), it is closed with 4413 and audited, and the
room's other members lose nothing."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from channels.db import database_sync_to_async

from audit.constants import AuditAction
from chat.services.messages import message_send
from chat.services.rooms import room_create, room_join
from tests.conftest import daphne_server, wait_for_sockets_recorded
from tests.realtime.conftest import access_token, audit_actions, bearer, connected, open_ws, ws_url

from .conftest import as_principal

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

HELD_LIMIT = 64 * 1024
BODY = "x" * 3500
# Far more than the limit plus what the kernel buffers on both sides take.
MAX_MESSAGES = 2000


@pytest.fixture
def server(transactional_db, tmp_path):
    with daphne_server(tmp_path, WS_MAX_OUTBOUND_BYTES=str(HELD_LIMIT)) as url:
        yield url
        # Before daphne stops: a socket it has not recorded the end of by then
        # never will be, and the next test would find the count off.
        wait_for_sockets_recorded()


def small_window_socket(url: str) -> socket.socket:
    """A connected TCP socket with a small receive buffer, so that a client that
    stops reading backs up into the server quickly."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    return sock


async def test_slow_consumer_under_daphne_is_closed_by_the_bytes_held_for_it(server, user, bob, settings):
    settings.CHAT_MODERATORS = []
    room = await database_sync_to_async(room_create)(actor=as_principal(user), name="firehose")
    await database_sync_to_async(room_join)(actor=as_principal(bob), room_id=room.pk)
    slow_token = await database_sync_to_async(access_token)(bob)
    reader_token = await database_sync_to_async(access_token)(user)

    # max_queue=1: once one frame waits unread, websockets stops reading the socket.
    async with (
        open_ws(
            ws_url(server), additional_headers=bearer(slow_token), sock=small_window_socket(server), max_queue=1
        ) as slow,
        open_ws(ws_url(server), additional_headers=bearer(reader_token)) as reader,
    ):
        await connected(slow)
        await connected(reader)
        for ws in (slow, reader):
            await ws.send(json.dumps({"type": "room.join", "id": "j", "room": str(room.pk)}))
            while json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] != "ack":
                pass

        # The other member keeps reading, all along.
        seqs: list[int] = []

        async def read() -> None:
            async for text in reader:
                frame = json.loads(text)
                if frame["type"] == "chat.message":
                    seqs.append(frame["seq"])

        reading = asyncio.create_task(read())
        # From here on the slow client reads nothing. Messages stored by the
        # service reach daphne through the fan-out, like anyone else's.
        sent = 0
        closed = []
        while sent < MAX_MESSAGES and not closed:
            await database_sync_to_async(message_send)(
                actor=as_principal(user), room_id=room.pk, client_id=f"c{sent}", body=f"{sent} {BODY}"
            )
            sent += 1
            if sent % 20 == 0:
                await asyncio.sleep(0.1)
                closed = await audit_actions(action=AuditAction.WS_DISCONNECTED, actor_id=bob.pk)
        for _ in range(50):
            if closed:
                break
            await asyncio.sleep(0.1)
            closed = await audit_actions(action=AuditAction.WS_DISCONNECTED, actor_id=bob.pk)
        assert closed, f"the slow client was still open after {sent} messages"
        assert (closed[-1].details["code"], closed[-1].details["reason"]) == (4413, "slow_consumer")
        # Held and kernel buffers are bounded: far fewer bytes than were sent to it.
        assert sent * len(BODY) > HELD_LIMIT

        # The member that reads got every message, in order, none lost.
        async with asyncio.timeout(10):
            while len(seqs) < sent:
                await asyncio.sleep(0.05)
        reading.cancel()
        assert seqs == list(range(seqs[0], seqs[0] + sent))

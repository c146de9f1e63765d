"""bench.wsclient against a real WebSocket server (the ``websockets`` library's):
handshake, text both ways at every length encoding, fragments, pings, close
codes, a refused handshake."""

from __future__ import annotations

import asyncio
import http
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.server import serve

from bench import wsclient


@asynccontextmanager
async def server(handler, **kwargs):
    async with serve(handler, "127.0.0.1", 0, compression=None, **kwargs) as srv:
        port = srv.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws/"


async def open_client(url, received, **headers):
    return await wsclient.connect(url, headers=headers, on_text=received.append, timeout=5)


async def until(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536, 200_000])
async def test_text_goes_both_ways_at_every_length(length):
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    text = "ü" * length
    received: list[str] = []
    async with server(echo) as url:
        client = await open_client(url, received)
        client.send_text(text)
        await until(lambda: received)
        assert received == [text]
        await client.close()


async def test_the_handshake_carries_the_headers_and_fragments_are_joined():
    seen = {}

    async def handler(ws):
        seen["auth"] = ws.request.headers.get("Authorization")
        await ws.send(["one ", "two ", "three"])  # a fragmented message
        await ws.send("next")
        await ws.wait_closed()

    received: list[str] = []
    async with server(handler) as url:
        client = await open_client(url, received, Authorization="Bearer abc")
        await until(lambda: len(received) == 2)
        assert received == ["one two three", "next"]
        assert seen["auth"] == "Bearer abc"
        await client.close()


async def test_pings_are_answered_and_the_server_close_code_is_kept():
    async def handler(ws):
        await asyncio.wait_for(await ws.ping(), 5)  # waits for the pong
        await ws.close(4413, "slow_consumer")

    async with server(handler) as url:
        client = await open_client(url, [])
        await asyncio.wait_for(client.closed.wait(), 5)
        assert client.close_code == 4413
        with pytest.raises(wsclient.ConnectionClosedError):
            client.send_text("too late")


async def test_a_refused_handshake_reports_the_http_status():
    def refuse(connection, request):
        return connection.respond(http.HTTPStatus.FORBIDDEN, "no\n")

    async with server(lambda ws: None, process_request=refuse) as url:
        with pytest.raises(wsclient.HandshakeError) as refused:
            await open_client(url, [])
    assert refused.value.status == 403

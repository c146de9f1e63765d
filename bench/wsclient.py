"""A lean WebSocket client for the load generator: RFC 6455 over one asyncio.Protocol.

A load generator that spends more per received frame than the server spends per
sent one measures itself: with ``websockets``' asyncio client each frame costs a
parse through its Sans-I/O generators, a queue and a task wake-up, and four
worker processes sharing two cores with the server topped out below the rates
the scenarios ask for. Here a frame is parsed in place inside
``data_received`` and handed to one callback, with no task per socket.

Only what the scenarios use: ``ws://`` URLs, text messages (fragmented or not),
pings answered, a close handshake; no extensions (no compression is offered).
Frames from the server must not be masked (RFC 6455 5.1); frames sent are
masked, with ``websockets``' C mask when it is available.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Callable
from urllib.parse import urlsplit

try:
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension

    def _apply_mask(data: bytes, mask: bytes) -> bytes:
        return bytes(byte ^ mask[index % 4] for index, byte in enumerate(data))


_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEADER_BYTES = 16 * 1024
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeError(Exception):
    """The server did not switch protocols; ``status`` is its HTTP status (0: no valid response)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class ConnectionClosedError(Exception):
    """Sending on a socket that is closed."""


def _frame(opcode: int, payload: bytes) -> bytes:
    length = len(payload)
    if length <= 125:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    mask = os.urandom(4)
    return header + mask + _apply_mask(payload, mask)


class LeanSocket(asyncio.Protocol):
    """One client socket. ``on_text`` gets every text message; ``closed`` is set
    when the connection ends, ``close_code`` then holds the server's close code
    (None when the connection dropped without a close frame)."""

    def __init__(self, on_text: Callable[[str], None], request: bytes, key: bytes) -> None:
        self.on_text = on_text
        self._request = request
        self._accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())  # noqa: S324 (RFC 6455)
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._open = False
        self._fragments: list[bytes] = []
        self._close_sent = False
        self.handshake: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed = asyncio.Event()
        self.close_code: int | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._open:
            self._read_handshake()
            if not self._open:
                return
        self._read_frames()

    def connection_lost(self, exc: Exception | None) -> None:
        self._open = False
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeError(0, f"connection lost during the handshake: {exc}"))
        self.closed.set()

    # --- sending ----------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        if not self._open or self._close_sent:
            raise ConnectionClosedError(f"closed ({self.close_code})")
        self._transport.write(_frame(OP_TEXT, text.encode()))

    async def close(self, code: int = 1000, timeout: float = 5.0) -> None:
        """Send a close frame and wait (up to ``timeout``) for the server to end the connection."""
        if self._transport is None:
            return
        if self._open and not self._close_sent:
            self._close_sent = True
            self._transport.write(_frame(OP_CLOSE, struct.pack("!H", code)))
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except TimeoutError:
            self._transport.abort()

    # --- reading ----------------------------------------------------------------------------

    def _read_handshake(self) -> None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_HEADER_BYTES:
                self._fail_handshake(0, "response headers too long")
            return
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            self._fail_handshake(0, f"not an HTTP response: {head[0]!r}")
            return
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status != 101:
            self._fail_handshake(status, f"HTTP {status}")
            return
        if headers.get("sec-websocket-accept", "").encode() != self._accept:
            self._fail_handshake(0, "bad Sec-WebSocket-Accept")
            return
        self._open = True
        self.handshake.set_result(None)

    def _fail_handshake(self, status: int, text: str) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeError(status, text))
        self._transport.close()

    def _read_frames(self) -> None:
        buffer = self._buffer
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length = second & 0x7F
            start = offset + 2
            if length == 126:
                if size - start < 2:
                    break
                (length,) = struct.unpack_from("!H", buffer, start)
                start += 2
            elif length == 127:
                if size - start < 8:
                    break
                (length,) = struct.unpack_from("!Q", buffer, start)
                start += 8
            if second & 0x80:
                self._protocol_error("masked frame from the server")
                return
            if size - start < length:
                break
            payload = bytes(buffer[start : start + length])
            offset = start + length
            self._frame_received(first & 0x80, first & 0x0F, payload)
            if self._transport is None or self._transport.is_closing():
                break
        if offset:
            del buffer[:offset]

    def _frame_received(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
            if not fin:
                self._fragments.append(payload)
                return
            if self._fragments:
                payload = b"".join([*self._fragments, payload])
                self._fragments = []
            self.on_text(payload.decode("utf-8", "replace"))
        elif opcode == OP_PING:
            if not self._close_sent:
                self._transport.write(_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if not self._close_sent:
                self._close_sent = True
                self._transport.write(_frame(OP_CLOSE, payload[:2]))
            self._transport.close()

    def _protocol_error(self, text: str) -> None:
        self.close_code = 1002
        self._transport.close()


async def connect(url: str, *, headers: dict[str, str], on_text: Callable[[str], None], timeout: float) -> LeanSocket:
    """Open a WebSocket to ``url`` (``ws://host:port/path``) and complete the handshake.

    Raises ``HandshakeError`` (with the HTTP status when the server answered),
    ``OSError`` or ``TimeoutError``."""
    parts = urlsplit(url)
    if parts.scheme != "ws":
        raise ValueError("only ws:// URLs are supported")
    host, port = parts.hostname, parts.port or 80
    key = base64.b64encode(os.urandom(16))
    lines = [
        f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        transport, socket = await loop.create_connection(lambda: LeanSocket(on_text, request, key), host, port)
        try:
            await socket.handshake
        except BaseException:
            transport.abort()
            raise
    return socket

"""Frames written straight to daphne's sockets: encoded once, sent at once, bounded.

Under daphne, one frame sent the ASGI way travels Channels' ``base_send`` →
``daphne.server.Server.handle_reply`` → ``WebSocketProtocol.serverSend`` →
autobahn's ``sendMessage`` and ``sendFrame`` (the frame header built again for
every socket) → twisted's ``FileDescriptor.write``, which only buffers the
bytes and registers the socket with the event loop, so they leave on the
loop's next turn through one more callback and two ``epoll_ctl`` calls. In a
1,000-member room that path was most of the fan-out's cost, and no socket
got its copy before the loop had been round every other one
(docs/benchmarks.md).

A ``DirectWire`` is what autobahn itself offers for broadcasts
(``sendPreparedMessage``), carried one step further: the frame's octets are
built once per message per process (``text_frame``; fan-out hands every local
socket the same ``str``) and written to the socket's kernel buffer at once when
twisted holds nothing for it, as asyncio's own transports do; otherwise they go
behind what twisted holds, so order is kept with every frame sent the ASGI way
(acks, pings, the close). It also knows how many bytes twisted is holding for
a client that stopped reading, which the ASGI interface cannot tell: past
``limit`` the write is refused and the consumer closes the socket (4413).

Only daphne's own ``send`` (a ``functools.partial`` of ``Server.handle_reply``)
over plain TCP gets the write-through; under TLS terminated in daphne the
prepared frame goes through the transport's ``write``; any other ASGI server,
or a wrapped ``send``, gets no ``DirectWire`` and the consumer uses the ASGI
path unchanged. The twisted attributes read here are checked on each transport
(``_TCP_ATTRIBUTES``); Twisted and autobahn are pinned in requirements.txt.
"""

from __future__ import annotations

import enum
import functools
import logging
import struct
from typing import Any

logger = logging.getLogger(__name__)

try:
    from autobahn.websocket.protocol import WebSocketProtocol as _AutobahnProtocol
    from daphne.server import Server as _DaphneServer
    from twisted.internet import tcp as _tcp
except ImportError:  # another ASGI server without daphne installed
    _DaphneServer = _AutobahnProtocol = _tcp = None

# What the write-through reads of a twisted TCP connection; a transport that
# lacks any of them (another Twisted release) gets the prepared frame through its
# own ``write`` instead.
_TCP_ATTRIBUTES = ("socket", "connected", "disconnecting", "_writeDisconnected", "_tempDataLen", "dataBuffer", "offset")


class Written(enum.Enum):
    SENT = "sent"  # in the kernel, or queued in twisted behind earlier bytes
    OVERFLOW = "overflow"  # refused: the client is not reading, more than the limit is held for it
    ASGI = "asgi"  # not written: send it the ASGI way (socket not open, or a frame autobahn refuses)


def text_frame(text: str) -> bytes:
    """The octets of one unfragmented, unmasked server text frame carrying ``text``.

    Memoized on the identity of the last ``text`` (the one-entry cache keeps it
    alive, so the identity cannot be reused): a fan-out hands the same ``str`` to
    every local socket, so the frame is built once per message per process."""
    cached = _last_frame
    if cached[0] is text:
        return cached[1]
    payload = text.encode("utf-8")
    length = len(payload)
    if length <= 125:
        header = bytes((0x81, length))
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    frame = header + payload
    _set_last_frame(text, frame)
    return frame


_last_frame: tuple[Any, bytes] = (None, b"")


def _set_last_frame(text: str, frame: bytes) -> None:
    global _last_frame  # noqa: PLW0603 (a one-entry cache, read and replaced whole)
    _last_frame = (text, frame)


class DirectWire:
    """One daphne WebSocket's write side, bypassing the per-frame ASGI detour."""

    __slots__ = ("_limit", "_protocol", "_tcp")

    def __init__(self, protocol: Any, *, limit: int) -> None:
        self._protocol = protocol
        self._limit = limit
        transport = protocol.transport
        direct = isinstance(transport, _tcp.Connection) and all(hasattr(transport, name) for name in _TCP_ATTRIBUTES)
        self._tcp = transport if direct else None

    @property
    def held(self) -> int:
        """Bytes twisted holds for this socket, not yet taken by the kernel (0 when unknown)."""
        transport = self._tcp
        if transport is None:
            return 0
        return transport._tempDataLen + len(transport.dataBuffer) - transport.offset

    def write(self, text: str) -> Written:
        protocol = self._protocol
        if protocol.state != protocol.STATE_OPEN:
            # Opening or closing: daphne's own handling applies.
            return Written.ASGI
        frame = text_frame(text)
        if 0 < protocol.maxMessagePayloadSize < len(frame) - 2:
            # What autobahn would refuse: let the ASGI path refuse it as it always did.
            return Written.ASGI
        transport = self._tcp
        if transport is None:
            protocol.transport.write(frame)
            return Written.SENT
        held = self.held
        if held > self._limit:
            return Written.OVERFLOW
        if held or not transport.connected or transport.disconnecting or transport._writeDisconnected:
            # Behind what twisted holds (or for twisted to find the connection gone).
            transport.write(frame)
            return Written.SENT
        try:
            sent = transport.socket.send(frame)
        except OSError:
            # Full (EAGAIN), interrupted, or the connection is going: twisted's
            # write queues it, or notices the loss and tears down as usual.
            sent = 0
        if sent < len(frame):
            transport.write(frame[sent:])
        return Written.SENT


def direct_wire(send: Any, *, limit: int) -> DirectWire | None:
    """A ``DirectWire`` for an accepted socket whose ASGI ``send`` is daphne's own; else None."""
    if _DaphneServer is None or not isinstance(send, functools.partial):
        return None
    if getattr(send.func, "__func__", None) is not _DaphneServer.handle_reply or len(send.args) != 1:
        return None
    protocol = send.args[0]
    if not isinstance(protocol, _AutobahnProtocol) or getattr(protocol, "transport", None) is None:
        return None
    return DirectWire(protocol, limit=limit)

"""realtime.wire: server text frames built once, and the outbox's use of a direct wire.

The write-through itself runs against a real daphne in
``test_slow_consumer_under_daphne_is_closed_by_the_bytes_held_for_it``
(tests/chat/test_ws_slow_consumer.py); every end-to-end test goes through it."""

from __future__ import annotations

import functools

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from realtime.outbox import Outbox
from realtime.wire import Written, direct_wire, text_frame


def parse(data: bytes) -> tuple[Frame, bytes]:
    """One frame parsed by websockets' own reader (as a client would), and what is left."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        return done.value, reader.buffer
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_text_frame_is_what_a_client_parses_back(length):
    text = ("é" * length)[:length]
    frame, rest = parse(text_frame(text))
    assert (frame.opcode, frame.fin, frame.data.decode()) == (Opcode.TEXT, True, text)
    assert rest == b""


def test_the_same_text_is_encoded_once():
    text = "".join(["{", '"type": "chat.message"', "}"])  # built at run time: not interned
    first = text_frame(text)
    assert text_frame(text) is first
    # An equal but distinct string is encoded again (the memo goes by identity).
    assert text_frame("".join(["{", '"type": "chat.message"', "}"])) == first


async def test_no_direct_wire_for_a_send_that_is_not_daphnes():
    async def send(message):
        return None

    assert direct_wire(send, limit=1024) is None
    assert direct_wire(functools.partial(send), limit=1024) is None


class Wire:
    """What the outbox sees of a DirectWire: the verdict of each write."""

    def __init__(self, verdicts: list[Written]) -> None:
        self.verdicts = verdicts
        self.written: list[str] = []

    def write(self, text: str) -> Written:
        verdict = self.verdicts.pop(0)
        if verdict is Written.SENT:
            self.written.append(text)
        return verdict


async def test_the_outbox_writes_through_the_wire_and_falls_back_to_asgi():
    sent: list[str] = []
    overflows: list[bool] = []

    async def send(text: str) -> None:
        sent.append(text)

    wire = Wire([Written.SENT, Written.ASGI, Written.SENT, Written.OVERFLOW])
    box = Outbox(send, limit=10, on_overflow=lambda: overflows.append(True), wire=wire)
    for text in ("a", "b", "c", "d", "e"):
        box.put(text)
    assert wire.written == ["a", "c"]
    # "b": the wire declined (socket opening or closing), daphne's own path took it.
    assert sent == ["b"]
    # "d" overflowed: the outbox closed and took nothing more ("e").
    assert overflows == [True]

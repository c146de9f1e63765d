"""realtime.outbox: frames written at once, queued in order only behind a send that waits."""

from __future__ import annotations

import asyncio

from realtime.outbox import Outbox


class Server:
    """An ASGI-like send: completes at once unless ``gate`` is shut; may fail."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_at: int | None = None

    async def send(self, text: str) -> None:
        if not self.gate.is_set():
            await self.gate.wait()
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            raise ConnectionResetError("gone")
        self.sent.append(text)


def outbox(server: Server, *, limit: int = 3, overflows: list | None = None) -> Outbox:
    return Outbox(
        server.send, limit=limit, on_overflow=lambda: overflows.append(True) if overflows is not None else None
    )


async def test_a_send_that_does_not_wait_is_done_before_put_returns():
    server = Server()
    box = outbox(server)
    for n in range(5):
        box.put(str(n))
        assert server.sent[-1] == str(n)
    assert box.waiting == 0


async def test_a_waiting_send_keeps_later_frames_in_order_and_flush_waits_for_them():
    server = Server()
    box = outbox(server)
    server.gate.clear()
    for n in range(3):
        box.put(str(n))
    assert server.sent == [] and box.waiting == 2

    async def open_later():
        await asyncio.sleep(0.05)
        server.gate.set()

    opener = asyncio.ensure_future(open_later())
    await box.flush()
    await opener
    assert server.sent == ["0", "1", "2"] and box.waiting == 0
    box.put("3")
    assert server.sent[-1] == "3"


async def test_overflow_drops_everything_once_and_takes_no_more():
    server = Server()
    overflows: list = []
    box = outbox(server, limit=2, overflows=overflows)
    server.gate.clear()
    for n in range(5):
        box.put(str(n))
    assert overflows == [True]
    assert box.waiting == 0
    server.gate.set()
    await asyncio.sleep(0.01)
    box.put("late")
    assert server.sent == []  # the suspended send was abandoned too


async def test_a_failing_transport_is_logged_and_ends_the_outbox(caplog):
    server = Server()
    server.fail_at = 1
    box = outbox(server)
    box.put("a")
    box.put("b")  # raises inside put's send: swallowed, logged
    box.put("c")
    assert server.sent == ["a"]
    assert "transport gone" in caplog.text


async def test_a_send_failing_after_waiting_drops_the_backlog(caplog):
    server = Server()
    server.fail_at = 0
    box = outbox(server)
    server.gate.clear()
    box.put("a")
    box.put("b")
    server.gate.set()
    await box.flush()
    assert server.sent == [] and box.waiting == 0
    assert "transport gone" in caplog.text

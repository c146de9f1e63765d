"""The frames on their way to one client: written at once, queued only behind a
server that is not taking them.

A room message reaches every local member from the fan-out's one callback. A
task and a queue per socket cost a wake-up and a hand-off per delivery,
about a fifth of the event loop's time in a 1,000-member room
(docs/benchmarks.md). Instead ``Outbox.put`` starts the ASGI ``send`` at once
and, when the server's ``send`` completes without waiting (daphne's always
does: it hands the frame to twisted's buffer), the frame is out before
``put`` returns, with no task at all. Under daphne the consumer also hands
the outbox a ``realtime.wire.DirectWire``: frames then skip the ASGI detour
and go to the socket directly, and a client that stopped reading is caught by
the bytes held for it (past ``WS_MAX_OUTBOUND_BYTES``, ``on_overflow``).

An ASGI server may also make ``send`` wait (backpressure from a socket whose
client stopped reading). Then the half-done send is finished by a task and the
frames that follow wait in a backlog behind it, in order. Past ``limit``
waiting frames the client is not keeping up: the backlog and the send in
progress are dropped and ``on_overflow`` runs (the consumer closes with
4413), so memory stays bounded and the client resumes by seq after reconnecting.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from .wire import DirectWire, Written

logger = logging.getLogger(__name__)


class _Resumed:
    """Awaits the rest of a coroutine that was started by hand and is suspended on
    ``pending`` (what its first ``send(None)`` yielded): ``pending`` is handed up to
    the task awaiting this, and every value or exception the task sends back is
    passed down, exactly as ``await`` would have done from the start."""

    __slots__ = ("_coroutine", "_pending")

    def __init__(self, coroutine: Coroutine[Any, Any, Any], pending: Any) -> None:
        self._coroutine = coroutine
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        pending = self._pending
        while True:
            try:
                value = yield pending
            except BaseException as exc:  # noqa: BLE001 (handed to the coroutine, as await does)
                try:
                    pending = self._coroutine.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = self._coroutine.send(value)
                except StopIteration as stop:
                    return stop.value


class Outbox:
    """One socket's outgoing frames, in order. Not thread-safe: the loop's only."""

    def __init__(
        self,
        send: Callable[[str], Coroutine[Any, Any, Any]],
        *,
        limit: int,
        on_overflow: Callable[[], None],
        wire: DirectWire | None = None,
    ) -> None:
        self._send = send
        self._wire = wire
        self._limit = limit
        self._on_overflow = on_overflow
        self._backlog: deque[str] = deque()
        self._blocked: asyncio.Task | None = None
        self._closed = False

    @property
    def waiting(self) -> int:
        """Frames queued behind a send the server has not completed."""
        return len(self._backlog)

    def put(self, text: str) -> None:
        """Send ``text`` now, or after the frames ahead of it; never blocks."""
        if self._closed:
            return
        if self._blocked is None:
            if self._wire is not None:
                written = self._wire.write(text)
                if written is Written.SENT:
                    return
                if written is Written.OVERFLOW:
                    self.discard()
                    self._on_overflow()
                    return
            self._start(text)
            return
        if len(self._backlog) >= self._limit:
            # The socket is closing: the send in progress is abandoned as well,
            # so the close does not wait behind it.
            self.discard()
            self._on_overflow()
            return
        self._backlog.append(text)

    async def flush(self) -> None:
        """Wait until every frame put so far is handed to the server (before a close)."""
        blocked = self._blocked
        if blocked is None or blocked is asyncio.current_task():
            return
        try:
            await asyncio.shield(blocked)
        except asyncio.CancelledError:
            if not blocked.cancelled():
                raise  # the caller itself was cancelled
        except Exception:  # noqa: BLE001 (the task logged it; nothing more to flush)
            return

    def discard(self) -> None:
        """Drop what is waiting and take no more (the client is gone)."""
        self._closed = True
        self._backlog.clear()
        if self._blocked is not None:
            self._blocked.cancel()

    def _start(self, text: str) -> None:
        coroutine = self._send(text)
        try:
            pending = coroutine.send(None)
        except StopIteration:
            return  # sent: the usual case
        except Exception:  # noqa: BLE001 (any failure means the transport is gone)
            # The disconnect that follows cleans up.
            self._broken()
            return
        self._blocked = asyncio.get_running_loop().create_task(self._finish(coroutine, pending), name="ws-outbox")

    async def _finish(self, coroutine: Coroutine[Any, Any, Any], pending: Any) -> None:
        try:
            await _Resumed(coroutine, pending)
            while self._backlog and not self._closed:
                await self._send(self._backlog.popleft())
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 (any failure means the transport is gone)
            self._broken()
        finally:
            self._blocked = None

    def _broken(self) -> None:
        logger.warning("WebSocket send failed: transport gone", exc_info=True)
        self._closed = True
        self._backlog.clear()

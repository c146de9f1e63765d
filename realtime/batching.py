"""Group commit for the hub: requests that arrive together are written together.

Channels runs every ``database_sync_to_async`` call of a process on one
thread, so a process writes at most one transaction at a time. When each
``chat.message`` is its own transaction (a dozen round trips), that thread
caps a process at a few hundred messages a second, and the queue in front of
it is the latency. A ``Batcher`` instead hands a batch function everything
that arrived while the previous batch was being written: at low load a batch
is one request and nothing waits, under load the number of transactions stays
flat while the batches grow (up to ``max_batch``).

The batch function is a service that takes a list of requests and returns one
outcome per request, in order (``chat.services.messages.message_send_many``):
a request's own failure is its outcome, not an exception. An exception (the
database is down) fails every request of that batch. One state per event loop.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from channels.db import database_sync_to_async

Request = TypeVar("Request")
Outcome = TypeVar("Outcome")


class _LoopState:
    def __init__(self) -> None:
        self.queue: list[tuple[object, asyncio.Future]] = []
        self.worker: asyncio.Task | None = None


class Batcher(Generic[Request, Outcome]):
    """Submit requests one at a time; ``run`` sees them in batches."""

    def __init__(self, run: Callable[[Sequence[Request]], list[Outcome]], *, max_batch: int = 100) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = database_sync_to_async(run)
        self._name = getattr(run, "__name__", "batch")
        self._max_batch = max_batch
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()

    def _state(self) -> tuple[asyncio.AbstractEventLoop, _LoopState]:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = self._states[loop] = _LoopState()
        return loop, state

    async def submit(self, request: Request) -> Outcome:
        """The outcome of ``request``, once the batch it joined is written."""
        loop, state = self._state()
        future = loop.create_future()
        state.queue.append((request, future))
        if state.worker is None or state.worker.done():
            state.worker = loop.create_task(self._drain(state), name=f"batch-{self._name}")
        return await future

    async def _drain(self, state: _LoopState) -> None:
        while state.queue:
            batch, state.queue = state.queue[: self._max_batch], state.queue[self._max_batch :]
            try:
                outcomes = await self._run([request for request, _future in batch])
            except Exception as exc:  # noqa: BLE001 (handed to every waiting request)
                for _request, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_request, future), outcome in zip(batch, outcomes, strict=True):
                # A socket that closed meanwhile cancelled its wait: its outcome is dropped.
                if not future.done():
                    future.set_result(outcome)

"""One timer scheduler per event loop for the hub's per-socket deadlines.

Every open socket has a handful of deadlines (first-frame authentication,
access-token expiry, heartbeat, the periodic auth re-check, the refresh of its
entry in the connection registry). A sleeping task per socket would cost one
wake-up per socket per second; here one task per event loop sleeps until the
earliest deadline of a heap and fires everything that is due.

Deadlines are rounded *up* to the scheduler's resolution (1 s for the hub), so
timers that fall in the same second share one wake-up: a callback never runs
early and at most one resolution late. Cancelling is O(1) (the entry is skipped
when it reaches the top of the heap, and the heap is compacted when cancelled
entries outnumber live ones). A callback may be a plain function or return an
awaitable, which then runs as its own task so that a slow one (a database
re-check) never delays the others. docs/protocol.md lists the deadlines.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import weakref
from collections.abc import Awaitable, Callable
from inspect import isawaitable

logger = logging.getLogger(__name__)

TimerCallback = Callable[[], Awaitable[None] | None]

# The hub's deadlines are all in seconds and tolerate a second of lateness.
HUB_RESOLUTION = 1.0

# Below this many cancelled entries the heap is never compacted: not worth the pass.
_COMPACT_MIN = 1024


class TimerHandle:
    """A scheduled callback; ``cancel()`` is idempotent and safe after it fired."""

    __slots__ = ("_scheduler", "callback", "deadline")

    def __init__(self, scheduler: Scheduler, deadline: float, callback: TimerCallback) -> None:
        self._scheduler: Scheduler | None = scheduler
        self.deadline = deadline
        self.callback = callback

    @property
    def active(self) -> bool:
        """True until the callback fired or the handle was cancelled."""
        return self._scheduler is not None

    def cancel(self) -> None:
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler._cancelled += 1
            if not len(scheduler):
                # Nothing left to wait for: let the driver purge the heap and end.
                scheduler._wake()


class Scheduler:
    """A heap of deadlines (``loop.time()`` seconds) driven by one task.

    The task starts with the first timer and ends when the heap is empty, so an
    idle loop carries no task at all."""

    def __init__(self, *, resolution: float = HUB_RESOLUTION, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if resolution <= 0:
            raise ValueError("resolution must be positive")
        self.resolution = resolution
        self._loop = loop or asyncio.get_running_loop()
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._counter = itertools.count()
        self._cancelled = 0
        self._driver: asyncio.Task | None = None
        self._waiter: asyncio.Future | None = None
        self._waiting_until = math.inf
        # Strong references to running callback tasks (the loop keeps only weak ones).
        self._running: set[asyncio.Task] = set()

    def __len__(self) -> int:
        """Timers still pending (cancelled ones excluded)."""
        return len(self._heap) - self._cancelled

    def time(self) -> float:
        return self._loop.time()

    def call_later(self, delay: float, callback: TimerCallback) -> TimerHandle:
        return self.schedule(self._loop.time() + max(0.0, delay), callback)

    def schedule(self, deadline: float, callback: TimerCallback) -> TimerHandle:
        """Run ``callback`` once, at ``deadline`` (in ``loop.time()``) or up to one resolution later."""
        handle = TimerHandle(self, deadline, callback)
        heapq.heappush(self._heap, (deadline, next(self._counter), handle))
        if self._driver is None or self._driver.done():
            self._driver = self._loop.create_task(self._drive(), name="realtime-timers")
        elif self._fire_time(deadline) < self._waiting_until:
            self._wake()
        return handle

    # --- Driver ---------------------------------------------------------------------------

    def _fire_time(self, deadline: float) -> float:
        return math.ceil(deadline / self.resolution) * self.resolution

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _drive(self) -> None:
        while self._heap:
            self._discard_cancelled_head()
            if not self._heap:
                break
            fire_at = self._fire_time(self._heap[0][0])
            if fire_at > self._loop.time():
                await self._sleep_until(fire_at)
                continue  # an earlier timer may have woken us: look at the head again
            self._fire_due(self._loop.time())

    async def _sleep_until(self, moment: float) -> None:
        self._waiter = self._loop.create_future()
        self._waiting_until = moment
        timer = self._loop.call_at(moment, self._wake)
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None
            self._waiting_until = math.inf

    def _discard_cancelled_head(self) -> None:
        while self._heap and not self._heap[0][2].active:
            heapq.heappop(self._heap)
            self._cancelled -= 1
        if self._cancelled > _COMPACT_MIN and self._cancelled * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2].active]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def _fire_due(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _deadline, _seq, handle = heapq.heappop(self._heap)
            if not handle.active:
                self._cancelled -= 1
                continue
            handle._scheduler = None
            self._run(handle.callback)

    def _run(self, callback: TimerCallback) -> None:
        try:
            result = callback()
        except Exception:
            logger.exception("timer callback failed")
            return
        if isawaitable(result):
            task = asyncio.ensure_future(result, loop=self._loop)
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("timer callback failed", exc_info=task.exception())


_schedulers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Scheduler] = weakref.WeakKeyDictionary()


def hub_scheduler() -> Scheduler:
    """The running loop's scheduler (daphne runs one loop per process)."""
    loop = asyncio.get_running_loop()
    scheduler = _schedulers.get(loop)
    if scheduler is None:
        scheduler = _schedulers[loop] = Scheduler(loop=loop)
    return scheduler


class Deadlines:
    """The named timers of one owner (a socket): arming a name replaces its
    previous timer, and ``cancel_all`` ends them all when the socket goes."""

    __slots__ = ("_handles", "_scheduler")

    def __init__(self, scheduler: Scheduler | None = None) -> None:
        self._scheduler = scheduler if scheduler is not None else hub_scheduler()
        self._handles: dict[str, TimerHandle] = {}

    def arm(self, name: str, delay: float, callback: TimerCallback) -> TimerHandle:
        self.cancel(name)
        handle = self._handles[name] = self._scheduler.call_later(delay, callback)
        return handle

    def cancel(self, name: str) -> None:
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()

    def armed(self, name: str) -> bool:
        handle = self._handles.get(name)
        return handle is not None and handle.active

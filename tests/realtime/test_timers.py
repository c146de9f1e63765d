"""The process-wide timer scheduler behind every socket's deadlines."""

from __future__ import annotations

import asyncio

import pytest

from realtime.timers import Deadlines, Scheduler, hub_scheduler

# Fine enough for fast tests, coarse enough to batch timers like the hub's 1 s.
RESOLUTION = 0.02


async def test_callbacks_fire_in_deadline_order():
    scheduler = Scheduler(resolution=RESOLUTION)
    fired: list[str] = []
    now = scheduler.time()
    for name, delay in [("c", 0.09), ("a", 0.01), ("b", 0.05), ("a2", 0.01)]:
        scheduler.schedule(now + delay, lambda name=name: fired.append(name))

    await asyncio.sleep(0.2)

    assert fired == ["a", "a2", "b", "c"]
    assert len(scheduler) == 0


async def test_a_callback_never_fires_early_and_at_most_one_resolution_late():
    scheduler = Scheduler(resolution=0.1)
    fired_at: list[float] = []
    deadline = scheduler.time() + 0.15
    scheduler.schedule(deadline, lambda: fired_at.append(scheduler.time()))

    await asyncio.sleep(0.4)

    assert len(fired_at) == 1
    assert deadline <= fired_at[0] <= deadline + 0.1 + 0.05  # resolution plus loop jitter


async def test_cancelled_timers_do_not_fire():
    scheduler = Scheduler(resolution=RESOLUTION)
    fired: list[int] = []
    handles = [scheduler.call_later(0.03, lambda i=i: fired.append(i)) for i in range(5)]
    handles[1].cancel()
    handles[3].cancel()
    handles[3].cancel()  # idempotent

    assert len(scheduler) == 3
    await asyncio.sleep(0.1)

    assert fired == [0, 2, 4]
    handles[0].cancel()  # after firing: harmless
    assert len(scheduler) == 0


async def test_an_earlier_timer_wakes_a_sleeping_driver():
    scheduler = Scheduler(resolution=RESOLUTION)
    fired: list[str] = []
    scheduler.call_later(5.0, lambda: fired.append("late"))
    await asyncio.sleep(0.03)  # the driver is now asleep until the 5 s timer

    scheduler.call_later(0.02, lambda: fired.append("early"))
    await asyncio.sleep(0.1)

    assert fired == ["early"]


async def test_async_callbacks_run_as_tasks_without_blocking_others():
    scheduler = Scheduler(resolution=RESOLUTION)
    fired: list[str] = []
    release = asyncio.Event()

    async def slow() -> None:
        await release.wait()
        fired.append("slow")

    scheduler.call_later(0.01, slow)
    scheduler.call_later(0.03, lambda: fired.append("quick"))
    await asyncio.sleep(0.1)
    assert fired == ["quick"]

    release.set()
    await asyncio.sleep(0.01)
    assert fired == ["quick", "slow"]


async def test_a_failing_callback_does_not_stop_the_scheduler(caplog):
    scheduler = Scheduler(resolution=RESOLUTION)
    fired: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    async def broken_async() -> None:
        raise RuntimeError("async boom")

    scheduler.call_later(0.01, broken)
    scheduler.call_later(0.01, broken_async)
    scheduler.call_later(0.03, lambda: fired.append("after"))
    await asyncio.sleep(0.1)

    assert fired == ["after"]
    assert sum("timer callback failed" in record.message for record in caplog.records) == 2


async def test_many_handles_with_most_cancelled():
    scheduler = Scheduler(resolution=RESOLUTION)
    fired: list[int] = []
    handles = [scheduler.call_later(0.05 + (i % 7) * 0.001, lambda i=i: fired.append(i)) for i in range(20_000)]
    for i, handle in enumerate(handles):
        if i % 10:
            handle.cancel()
    assert len(scheduler) == 2_000
    # Cancelled entries beyond half the heap are compacted away at the next wake-up.
    scheduler.call_later(0, lambda: None)
    await asyncio.sleep(0.01)
    assert len(scheduler._heap) <= 2_001

    await asyncio.sleep(0.1)

    assert sorted(fired) == list(range(0, 20_000, 10))
    assert len(scheduler) == 0


async def test_the_driver_ends_when_nothing_is_left():
    scheduler = Scheduler(resolution=RESOLUTION)
    handle = scheduler.call_later(10.0, lambda: None)
    driver = scheduler._driver
    await asyncio.sleep(0)

    handle.cancel()
    await asyncio.sleep(0.01)

    assert driver.done()
    fired: list[str] = []
    scheduler.call_later(0.01, lambda: fired.append("again"))
    await asyncio.sleep(0.05)
    assert fired == ["again"]


async def test_the_hub_has_one_scheduler_per_loop():
    assert hub_scheduler() is hub_scheduler()
    assert hub_scheduler().resolution == 1.0


async def test_deadlines_rearm_by_name():
    deadlines = Deadlines(Scheduler(resolution=RESOLUTION))
    fired: list[str] = []
    deadlines.arm("heartbeat", 0.02, lambda: fired.append("first"))
    deadlines.arm("heartbeat", 0.04, lambda: fired.append("second"))
    deadlines.arm("auth", 0.02, lambda: fired.append("auth"))
    deadlines.cancel("auth")
    assert deadlines.armed("heartbeat") and not deadlines.armed("auth")

    await asyncio.sleep(0.1)
    assert fired == ["second"]

    deadlines.arm("expiry", 0.02, lambda: fired.append("expiry"))
    deadlines.cancel_all()
    await asyncio.sleep(0.05)
    assert fired == ["second"]


def test_resolution_must_be_positive():
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError):
            Scheduler(resolution=0, loop=loop)
    finally:
        loop.close()

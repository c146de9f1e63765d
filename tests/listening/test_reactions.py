"""Reactions under a flood: counted in the real cache, broadcast by the real
fan-out at most once per window, nothing lost, each user held to their budget."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from listening import reactions
from realtime.fanout import close_fanout, get_fanout
from realtime.groups import session_topic

pytestmark = pytest.mark.redis


class Frames:
    def __init__(self) -> None:
        self.frames: list[dict] = []

    def deliver(self, text: str, seq: int | None) -> None:
        self.frames.append(json.loads(text))

    def resync(self, topic: str) -> None:
        return


async def flood(*, session_id: int, users: int, each: int) -> tuple[int, float]:
    """``users`` listeners each reacting ``each`` times as fast as they can."""
    accepted = 0

    async def listener(user_id: int) -> None:
        nonlocal accepted
        for number in range(each):
            if await reactions.reaction_allowed(session_id=session_id, user_id=user_id):
                emoji = reactions.EMOJIS[(user_id + number) % len(reactions.EMOJIS)]
                await reactions.reaction_count(tenant_id=1, session_id=session_id, emoji=emoji)
                accepted += 1

    started = time.monotonic()
    await asyncio.gather(*(listener(user_id) for user_id in range(users)))
    return accepted, time.monotonic() - started


def test_a_flood_becomes_a_few_frames_carrying_every_accepted_reaction():
    session_id = int(time.time() * 1000) % 10**9

    async def scenario():
        hub = get_fanout()
        frames = Frames()
        topic = session_topic(tenant_id=1, session_id=session_id)
        hub.subscribe(topic, frames)
        await hub.wait_subscribed(topic, timeout=5)
        try:
            accepted, elapsed = await flood(session_id=session_id, users=200, each=8)
            await asyncio.sleep(reactions.REACTION_WINDOW_SECONDS * 3)
            await reactions.reactions_flush(tenant_id=1, session_id=session_id)  # whatever is left
            await asyncio.sleep(0.3)
            return accepted, elapsed, frames.frames
        finally:
            hub.unsubscribe(topic, frames)
            await reactions.close_reactions()
            await close_fanout()

    accepted, elapsed, frames = asyncio.run(scenario())
    counted = sum(sum(frame["content"]["counts"].values()) for frame in frames)
    assert counted == accepted
    # 200 users at 5 a second: at least 1,000 reactions fit in the first second.
    assert accepted >= 200 * reactions.REACTIONS_PER_SECOND
    # One frame per window (plus the final flush), not one per reaction.
    assert len(frames) <= (elapsed + 3 * reactions.REACTION_WINDOW_SECONDS) / reactions.REACTION_WINDOW_SECONDS + 2
    assert all(frame["type"] == "session.reactions" for frame in frames)


def test_each_user_is_held_to_their_budget():
    session_id = int(time.time() * 1000) % 10**9 + 1

    async def scenario():
        # Start at the beginning of a second, so the budget is not split across two.
        await asyncio.sleep(1 - (time.time() % 1) + 0.01)
        try:
            return [await reactions.reaction_allowed(session_id=session_id, user_id=7) for _ in range(8)]
        finally:
            await reactions.close_reactions()

    allowed = asyncio.run(scenario())
    assert allowed == [True] * reactions.REACTIONS_PER_SECOND + [False] * (8 - reactions.REACTIONS_PER_SECOND)

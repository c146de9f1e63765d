"""Helpers the listening tests share: the queue and playback through the services,
and real WebSocket clients of a daphne under test."""

from __future__ import annotations

import asyncio

from listening.services.playback import playback_command
from playlists.services.editing import playlist_apply_op
from realtime.client import BackoffPolicy, HubClient
from tests.realtime.client_support import RecordingTokens

# Reconnect fast: the tests restart servers and should not wait out a real backoff.
FAST_BACKOFF = BackoffPolicy(base=0.1, cap=0.5, stable_after=1.0, throttled_floor=0.0)


def enqueue(actor, session, *tracks):
    """Append ``tracks`` to the session's queue as ``actor``, against its latest revision."""
    session.queue.refresh_from_db()
    return playlist_apply_op(
        actor=actor,
        playlist_id=session.queue_id,
        base_revision=session.queue.revision,
        op={"op": "batch", "ops": [{"op": "insert", "index": i, "track": t.pk} for i, t in enumerate(tracks)]},
        client_op_id=f"q-{actor.user_id}-{session.queue.revision}-{tracks[0].pk}",
    )


def command(actor, session, action, **extra):
    """``playback_command`` against the session's current revision."""
    session.refresh_from_db()
    return playback_command(
        actor=actor, session_id=session.pk, action=action, base_revision=session.playback_revision, **extra
    )


def client_for(url: str, user) -> HubClient:
    return HubClient(url, token_provider=RecordingTokens(user), backoff=FAST_BACKOFF)


async def next_frame(client: HubClient, kind: str, timeout: float = 10.0) -> dict:
    """The next frame of type ``kind``."""
    async with asyncio.timeout(timeout):
        async for frame in client.events():
            if frame["type"] == kind:
                return frame
    raise AssertionError("events() ended")


async def next_state(client: HubClient, *, revision: int, timeout: float = 15.0) -> dict:
    """The first ``playback.state`` at ``revision`` or later."""
    async with asyncio.timeout(timeout):
        async for frame in client.events():
            if frame["type"] == "playback.state" and frame["content"]["revision"] >= revision:
                return frame["content"]
    raise AssertionError("events() ended")

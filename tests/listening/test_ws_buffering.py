"""Nobody stalls the room, end to end: two daphne processes (with a short start
wait), a real Celery worker, real WebSocket clients. A listener's player is
buffering: the host's play waits for it, and its "ready" starts the room a lead
ahead; the next time it stays buffering, the worker starts the room at the
deadline without it, and once ready it places itself where the room is (the
server agrees within 50 ms). A socket that closes withdraws its report."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async

from accounts.services.tokens import principal_for_user
from listening.constants import PLAYBACK_LEAD_MS, SessionMode
from listening.models import ListeningSession, SessionMember
from listening.services.common import now_ms
from listening.services.sessions import session_create
from playlists.models import Track
from playlists.services.editing import playlist_apply_op
from realtime.client.clock import clock_sync
from realtime.client.playback import position_now, position_report
from tests.listening.support import client_for, next_state
from tests.realtime.client_support import RestartableDaphne

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

# The servers' start wait (LISTENING_START_WAIT_MS), short so the test is quick.
WAIT_MS = 1500


@pytest.fixture
def servers(transactional_db, tmp_path):
    """Two daphne processes whose starts wait at most WAIT_MS; stopped before the
    test's database flush."""
    pair = [RestartableDaphne(tmp_path, name=name, LISTENING_START_WAIT_MS=str(WAIT_MS)) for name in ("a", "b")]
    for server in pair:
        server.start()
    yield pair
    for server in pair:
        server.stop()


@pytest.fixture
def dj_session(tenant, user):
    tracks = [
        Track.objects.create(tenant=tenant, uri=f"test:buf:{n}", title=f"Song {n}", artist="Band", duration_ms=60_000)
        for n in range(2)
    ]
    alice = principal_for_user(user)
    session = session_create(actor=alice, title="Live", mode=SessionMode.DJ)
    playlist_apply_op(
        actor=alice,
        playlist_id=session.queue_id,
        base_revision=0,
        op={"op": "batch", "ops": [{"op": "insert", "index": i, "track": t.pk} for i, t in enumerate(tracks)]},
        client_op_id="fill",
    )
    return session


@database_sync_to_async
def room_position(session_id: int) -> tuple[int, int]:
    """(server ms, where the room's track is then), from the stored state."""
    session = ListeningSession.objects.get(pk=session_id)
    now = now_ms()
    return now, session.position_at(now)


@pytest.mark.usefixtures("celery_worker")
def test_a_buffering_listener_holds_a_start_at_most_the_wait_then_catches_up(servers, user, bob, carol, dj_session):
    first, second = servers
    session = dj_session
    pk = session.pk

    async def scenario():
        async with (
            client_for(first.url, user) as host,
            client_for(second.url, bob) as listener,
            client_for(first.url, carol) as other,
        ):
            for client in (host, listener, other):
                await client.request("session.join", content={"session": pk})

            # The listener's player is buffering: the host's play waits for it...
            reported = await listener.request("playback.buffering", content={"session": pk, "buffering": True})
            assert reported["content"] == {"buffering": True, "revision": 0}
            held = (await host.request("playback.play", content={"session": pk, "base_revision": 0}))["content"]
            assert not held["playing"] and held["waiting"]["members"] == [bob.pk] and held["waiting"]["count"] == 1
            assert WAIT_MS - PLAYBACK_LEAD_MS <= held["waiting"]["until_ms"] - held["anchor_ms"] <= WAIT_MS
            heard = await next_state(other, revision=1)
            assert heard["waiting"] == held["waiting"] and not heard["playing"]

            # ...and its "ready" starts the room, a lead ahead, before the deadline.
            ready = await listener.request(
                "playback.buffering", content={"session": pk, "buffering": False, "revision": 1}
            )
            assert ready["content"] == {"buffering": False, "revision": 2}
            started = await next_state(other, revision=2)
            assert (started["action"], started["playing"], started["waiting"], started["by"]) == (
                "start",
                True,
                None,
                None,
            )
            assert started["anchor_ms"] < held["waiting"]["until_ms"]

            # Paused; the listener buffers again (once the flip limit allows) and stays so.
            paused = (await host.request("playback.pause", content={"session": pk, "base_revision": 2}))["content"]
            await asyncio.sleep(0.3)
            await listener.request("playback.buffering", content={"session": pk, "buffering": True, "revision": 3})
            held = (await host.request("playback.play", content={"session": pk, "base_revision": 3}))["content"]
            assert not held["playing"] and held["position_ms"] == paused["position_ms"]
            waited_from = time.monotonic()
            # Nobody sends anything: at the deadline the worker starts the room without it.
            started = await next_state(listener, revision=5, timeout=10)
            assert (started["action"], started["playing"], started["waiting"]) == ("start", True, None)
            assert started["anchor_ms"] >= held["waiting"]["until_ms"] + PLAYBACK_LEAD_MS
            assert time.monotonic() - waited_from < WAIT_MS / 1000 + 3

            # The late one's player is ready: nothing changes for the room...
            ready = await listener.request("playback.buffering", content={"session": pk, "buffering": False})
            assert ready["content"] == {"buffering": False, "revision": 5}
            # ...and it seeks to where the state says the track is now.
            clock = await clock_sync(listener, samples=4, spacing=0.01)
            await asyncio.sleep(max(0.0, (started["anchor_ms"] - now_ms()) / 1000) + 0.2)
            mine = position_now(started, clock)
            server_ms, theirs = await room_position(pk)
            mine_then = position_now(started, clock, local_ms=clock.to_local(server_ms))
            assert abs(mine_then - theirs) <= 50, (mine, mine_then, theirs)
            report = position_report(started, clock, player_position_ms=position_now(started, clock))
            correction = (await listener.request("playback.position", content=report))["content"]
            assert correction["action"] == "none" and abs(correction["drift_ms"]) <= 50, correction

            # A socket that closes withdraws its player's report.
            await other.request("playback.buffering", content={"session": pk, "buffering": True})

    asyncio.run(scenario())
    deadline = time.monotonic() + 5
    while SessionMember.objects.get(session_id=pk, user=carol).buffering_since is not None:
        assert time.monotonic() < deadline, "the closed socket's buffering report stayed"
        time.sleep(0.05)

"""A DJ session end to end: two daphne processes, a real Celery worker, three
real WebSocket clients. The host plays; both listeners get the same state for
the same moment; a listener may not touch playback; a command based on an old
revision loses and learns the state; the queue advances by itself at each
track's end, with nobody sending anything."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from accounts.services.tokens import principal_for_user
from listening.constants import SessionMode
from listening.services.sessions import member_mute, member_remove, session_create
from playlists.models import Track
from playlists.services.editing import playlist_apply_op
from realtime.client import HubError
from realtime.client.clock import clock_sync
from realtime.client.playback import position_report
from tests.listening.support import client_for, next_frame, next_state

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def dj_session(tenant, user):
    short = [
        Track.objects.create(tenant=tenant, uri=f"test:short:{n}", title=f"Jingle {n}", artist="Band", duration_ms=1500)
        for n in range(2)
    ]
    alice = principal_for_user(user)
    session = session_create(actor=alice, title="Live", mode=SessionMode.DJ)
    playlist_apply_op(
        actor=alice,
        playlist_id=session.queue_id,
        base_revision=0,
        op={"op": "batch", "ops": [{"op": "insert", "index": i, "track": t.pk} for i, t in enumerate(short)]},
        client_op_id="fill",
    )
    return session, short


@pytest.mark.usefixtures("celery_worker")
def test_a_dj_plays_to_two_listeners_and_the_queue_advances_by_itself(servers, user, bob, carol, dj_session):
    first, second = servers
    session, short = dj_session

    async def scenario():
        async with (
            client_for(first.url, user) as host,
            client_for(second.url, bob) as listener,
            client_for(first.url, carol) as other,
        ):
            joined = [
                (await client.request("session.join", content={"session": session.pk}))["content"]
                for client in (host, listener, other)
            ]
            assert [answer["role"] for answer in joined] == ["host", "listener", "listener"]
            assert joined[2]["audience"] == 3 and joined[2]["queue"] == session.queue_id

            with pytest.raises(HubError) as caught:
                await listener.request("playback.play", content={"session": session.pk, "base_revision": 0})
            assert caught.value.code == "forbidden"

            played = await host.request("playback.play", content={"session": session.pk, "base_revision": 0})
            assert played["content"]["track"]["id"] == short[0].pk
            heard = [await next_state(client, revision=1) for client in (listener, other)]
            assert heard[0] == heard[1]
            assert (heard[0]["track"]["id"], heard[0]["anchor_ms"]) == (short[0].pk, played["content"]["anchor_ms"])

            with pytest.raises(HubError) as caught:
                await host.request("playback.pause", content={"session": session.pk, "base_revision": 0})
            assert caught.value.code == "conflict" and caught.value.details["state"]["revision"] == 1

            # Nobody sends anything: the worker moves to the next track, then stops.
            advanced = [await next_state(client, revision=2) for client in (listener, other)]
            assert advanced[0]["track"]["id"] == short[1].pk and advanced[0]["action"] == "advance"
            assert advanced[0] == advanced[1]
            stopped = await next_state(listener, revision=3)
            assert stopped["track"] is None and not stopped["playing"]

            # A clock-synced listener places itself within the exchange's error of the server.
            clock = await clock_sync(listener, samples=4, spacing=0.01)
            assert abs(clock.offset) <= clock.error_bound

    asyncio.run(scenario())


def test_a_late_joiner_gets_the_state_at_once(servers, user, carol, dj_session):
    first, _second = servers
    session, _short = dj_session

    async def scenario():
        async with client_for(first.url, user) as host:
            with pytest.raises(HubError) as caught:
                await host.request("session.react", content={"session": session.pk, "emoji": "🔥"})
            assert caught.value.code == "forbidden"  # not joined on this socket
            await host.request("session.join", content={"session": session.pk})
            await host.request("playback.volume", content={"session": session.pk, "base_revision": 0, "volume": 30})
        async with client_for(first.url, carol) as late:
            answer = (await late.request("session.join", content={"session": session.pk}))["content"]
            assert answer["playback"]["volume"] == 30 and answer["playback"]["revision"] == 1
            assert answer["server_time_ms"] > 0
            with pytest.raises(HubError) as caught:
                await late.request("session.join", content={"session": 10**9})
            assert caught.value.code == "not_found"
            for kind, content, field in [
                ("session.join", {}, "session"),
                ("session.radio", {"session": session.pk, "on": "yes"}, "on"),
                ("session.mute", {"session": session.pk, "user": 1, "muted": "x"}, "muted"),
                ("playback.play", {"session": session.pk, "base_revision": "latest"}, "base_revision"),
                ("playback.position", {"session": session.pk, "revision": -1}, "revision"),
            ]:
                with pytest.raises(HubError) as caught:
                    await late.request(kind, content=content)
                assert caught.value.code == "invalid" and field in caught.value.details["fields"], kind
            # Nothing plays yet: a position report is answered stale, with the state.
            clock = await clock_sync(late, samples=3, spacing=0.01)
            report = position_report(answer["playback"], clock, player_position_ms=0)
            correction = (await late.request("playback.position", content=report))["content"]
            assert correction["action"] == "stale" and correction["state"]["volume"] == 30

            with pytest.raises(HubError) as caught:
                await late.request("session.react", content={"session": session.pk, "emoji": "🍕"})
            assert caught.value.code == "invalid"
            for _ in range(3):
                await late.request("session.react", content={"session": session.pk, "emoji": "🔥"})
            async with asyncio.timeout(10):
                async for frame in late.events():
                    if frame["type"] == "session.reactions":
                        assert frame["content"]["counts"] == {"🔥": 3}
                        break

    asyncio.run(scenario())
    assert session.members.count() == 2


def test_a_muted_listener_cannot_react_and_a_removed_one_stops_following(servers, user, bob, dj_session):
    first, second = servers
    session, _short = dj_session

    async def scenario():
        async with client_for(first.url, user) as host, client_for(second.url, bob) as listener:
            for client in (host, listener):
                await client.request("session.join", content={"session": session.pk})
            alice = principal_for_user(user)
            await database_sync_to_async(member_mute)(actor=alice, session_id=session.pk, user_id=bob.pk)
            told = await next_frame(listener, "session.moderated")
            assert told["content"] == {"session": session.pk, "action": "muted"}
            with pytest.raises(HubError) as caught:
                await listener.request("session.react", content={"session": session.pk, "emoji": "🔥"})
            assert caught.value.code == "forbidden"

            await database_sync_to_async(member_remove)(actor=alice, session_id=session.pk, user_id=bob.pk)
            told = await next_frame(listener, "session.moderated")
            assert told["content"]["action"] == "removed"
            with pytest.raises(HubError) as caught:
                await listener.request("session.join", content={"session": session.pk})
            assert caught.value.code == "forbidden"
            # The host still plays; the removed socket hears nothing of it.
            await host.request("playback.volume", content={"session": session.pk, "base_revision": 0, "volume": 5})
            with pytest.raises(TimeoutError):
                await next_state(listener, revision=1, timeout=1.5)

    asyncio.run(scenario())

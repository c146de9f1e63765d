"""A DJ session's audience end to end: two daphne processes, four real WebSocket
clients. A member joins the wait list and is on deck for everyone
(``session.djs``); a listener requests a track, another votes for it, the DJ on
deck accepts it: every socket hears each change (``session.requests``) and the
track arrives in the queue (``playlist.changed`` on the queue playlist)."""

from __future__ import annotations

import asyncio

import pytest

from accounts.services.tokens import principal_for_user
from listening.constants import SessionMode
from listening.services.sessions import session_create
from playlists.models import PlaylistItem, Track
from realtime.client import HubClient, HubError
from tests.factories import UserFactory
from tests.listening.support import client_for, next_frame

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


async def first_of_each(client: HubClient, *kinds: str, timeout: float = 10.0) -> dict[str, dict]:
    """The first frame of each of ``kinds``, in whatever order they arrive."""
    found: dict[str, dict] = {}
    async with asyncio.timeout(timeout):
        async for frame in client.events():
            if frame["type"] in kinds and frame["type"] not in found:
                found[frame["type"]] = frame
                if len(found) == len(kinds):
                    return found
    raise AssertionError("events() ended")


def test_a_request_voted_and_accepted_reaches_everyone_and_the_queue(servers, user, bob, carol, tenant):
    first, second = servers
    dan = UserFactory(username="dan", tenant=tenant)
    track = Track.objects.create(tenant=tenant, uri="test:req:1", title="Wish", artist="Band", duration_ms=1500)
    session = session_create(actor=principal_for_user(user), title="Club", mode=SessionMode.DJ)

    async def scenario():
        async with (
            client_for(first.url, user) as host,
            client_for(second.url, bob) as asker,
            client_for(first.url, carol) as voter,
            client_for(second.url, dan) as dj,
        ):
            everyone = (host, asker, voter, dj)
            for client in everyone:
                await client.request("session.join", content={"session": session.pk})
            await host.request("playlist.subscribe", content={"playlist": session.queue_id})

            on_deck = (await dj.request("dj.waitlist_join", content={"session": session.pk}))["content"]
            assert on_deck["dj"] == {"id": dan.pk, "username": "dan"}
            for client in everyone:
                assert (await next_frame(client, "session.djs"))["content"] == on_deck

            with pytest.raises(HubError) as caught:
                await asker.request("request.create", content={"session": session.pk, "track": "Wish"})
            assert caught.value.code == "invalid" and "track" in caught.value.details["fields"]
            created = (await asker.request("request.create", content={"session": session.pk, "track": track.pk}))[
                "content"
            ]
            assert (created["status"], created["votes"], created["created"]) == ("pending", 1, True)
            for client in everyone:
                heard = (await next_frame(client, "session.requests"))["content"]
                assert heard == {"session": session.pk, "request": {k: created[k] for k in heard["request"]}}

            voted = await voter.request("request.vote", content={"session": session.pk, "request": created["id"]})
            assert voted["content"]["votes"] == 2
            for client in everyone:
                heard = (await next_frame(client, "session.requests"))["content"]["request"]
                assert (heard["id"], heard["votes"]) == (created["id"], 2)
            listed = (await voter.request("request.list", content={"session": session.pk}))["content"]
            assert [(row["id"], row["voted"]) for row in listed["requests"]] == [(created["id"], True)]

            with pytest.raises(HubError) as caught:
                await voter.request("request.accept", content={"session": session.pk, "request": created["id"]})
            assert caught.value.code == "forbidden"
            accepted = await dj.request("request.accept", content={"session": session.pk, "request": created["id"]})
            assert accepted["content"]["status"] == "accepted"
            for client in (asker, voter, dj):
                heard = (await next_frame(client, "session.requests"))["content"]["request"]
                assert (heard["id"], heard["status"], heard["votes"]) == (created["id"], "accepted", 2)
            # The host follows the queue too: its change and the decision, whichever comes first.
            found = await first_of_each(host, "session.requests", "playlist.changed")
            assert found["session.requests"]["content"]["request"]["status"] == "accepted"
            changed = found["playlist.changed"]["content"]
            assert [op["item"]["track_id"] for op in changed["ops"] if op["op"] == "insert"] == [track.pk]

            with pytest.raises(HubError) as caught:
                await dj.request("request.reject", content={"session": session.pk, "request": created["id"]})
            assert caught.value.code == "conflict"

            # The host sets the turn; the rest of the family answers as the services do.
            turned = (await host.request("dj.turn", content={"session": session.pk, "tracks": 2}))["content"]
            assert (turned["turn_tracks"], turned["dj"]["username"]) == (2, "dan")
            assert (await voter.request("dj.list", content={"session": session.pk}))["content"] == turned
            for kind, content, code in [
                ("dj.turn", {"session": session.pk, "tracks": 2}, "forbidden"),  # not the host
                ("dj.turn", {"session": session.pk, "tracks": 99}, "invalid"),
                ("dj.list", {}, "invalid"),
                ("dj.list", {"session": 10**9}, "not_found"),
                ("request.withdraw", {"session": session.pk, "request": created["id"]}, "forbidden"),
                ("request.list", {"session": session.pk, "limit": "all"}, "invalid"),
            ]:
                with pytest.raises(HubError) as caught:
                    await voter.request(kind, content=content)
                assert caught.value.code == code, kind
            assert (await dj.request("dj.waitlist_leave", content={"session": session.pk}))["content"]["dj"] is None

    asyncio.run(scenario())
    assert list(PlaylistItem.objects.filter(playlist_id=session.queue_id).values_list("track_id", flat=True)) == [
        track.pk
    ]

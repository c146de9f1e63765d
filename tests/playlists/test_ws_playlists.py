"""``playlist.*`` end to end: real daphne processes sharing PostgreSQL and Redis,
real WebSocket clients (``HubClient`` + ``PlaylistSession``).

Two editors on two server processes edit one playlist at once from stale
copies and end with the server's list; a REST edit reaches a WebSocket
subscriber; presence appears, follows the selection and disappears when the
socket closes; roles, bad input and a copy too old to merge get their errors;
an overridden author and a removed collaborator are told.
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request

import pytest
from channels.db import database_sync_to_async

from playlists.constants import CollaboratorRole
from playlists.models import PlaylistItem, PlaylistOp
from playlists.ot import PlaylistState, apply_all
from playlists.services.sharing import collaborator_remove, collaborator_set
from realtime.client import BackoffPolicy, HubClient, HubError
from realtime.client.playlist import PlaylistSession
from tests.realtime.client_support import RecordingTokens, RestartableDaphne
from tests.realtime.conftest import access_token

from .conftest import as_principal

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

FAST_BACKOFF = BackoffPolicy(base=0.1, cap=0.5, stable_after=1.0, throttled_floor=0.0)


def client_for(url: str, user) -> HubClient:
    return HubClient(url, token_provider=RecordingTokens(user), backoff=FAST_BACKOFF)


async def pump(client: HubClient, session: PlaylistSession, until, timeout: float = 20.0) -> None:
    """Feed the session its frames until ``until()`` holds."""
    async with asyncio.timeout(timeout):
        if until():
            return
        async for frame in client.events():
            await session.handle(frame)
            if until():
                return


async def drain(client: HubClient, session: PlaylistSession) -> None:
    """Feed the session whatever frames arrive within a few milliseconds."""
    try:
        async with asyncio.timeout(0.02):
            async for frame in client.events():
                await session.handle(frame)
    except TimeoutError:
        return


async def next_frame(client: HubClient, kind: str, timeout: float = 10.0) -> dict:
    async with asyncio.timeout(timeout):
        async for frame in client.events():
            if frame["type"] == kind:
                return frame
    raise AssertionError(f"no {kind}")


@database_sync_to_async
def server_items(playlist) -> tuple[int, list[str]]:
    playlist.refresh_from_db()
    ids = [
        str(i)
        for i in PlaylistItem.objects.filter(playlist=playlist).order_by("position").values_list("item_id", flat=True)
    ]
    return playlist.revision, ids


@database_sync_to_async
def replayed_log(playlist) -> list[str]:
    state = PlaylistState(title="", description="", items=[])
    for entry in PlaylistOp.objects.filter(playlist=playlist, revision__isnull=False).order_by("revision"):
        apply_all(state, entry.ops)
    return state.item_ids()


def random_op(session: PlaylistSession, tracks, rng: random.Random) -> dict:
    items = session.state.items
    choice = rng.random()
    if not items or choice < 0.5:
        return {"op": "insert", "index": rng.randint(0, len(items)), "track": rng.choice(tracks).pk}
    item = rng.choice(items)["item_id"]
    if choice < 0.75:
        return {"op": "move", "item_id": item, "index": rng.randint(0, len(items) - 1)}
    return {"op": "remove", "item_id": item}


def test_two_editors_on_two_servers_converge(servers, user, bob, playlist, tracks):
    first, second = servers

    async def scenario():
        async with client_for(first.url, user) as alice_client, client_for(second.url, bob) as bob_client:
            alice = PlaylistSession(alice_client, playlist.pk)
            bobs = PlaylistSession(bob_client, playlist.pk)
            await alice.open()
            await bobs.open()

            async def editor(session: PlaylistSession, client: HubClient, seed: int) -> None:
                rng = random.Random(seed)
                for _ in range(15):
                    await session.edit(random_op(session, tracks, rng))
                    # Sometimes catch up before the next edit, often not: stale bases.
                    if rng.random() < 0.3:
                        await drain(client, session)

            await asyncio.gather(editor(alice, alice_client, 1), editor(bobs, bob_client, 2))
            revision, ids = await server_items(playlist)
            await pump(alice_client, alice, lambda: alice.revision == revision)
            await pump(bob_client, bobs, lambda: bobs.revision == revision)
            assert alice.state.item_ids() == ids == bobs.state.item_ids()
            assert await replayed_log(playlist) == ids
            assert revision > 0

    asyncio.run(scenario())


def test_a_rest_edit_reaches_websocket_subscribers(servers, user, bob, playlist, tracks):
    first, _second = servers

    async def scenario():
        async with client_for(first.url, bob) as client:
            session = PlaylistSession(client, playlist.pk)
            await session.open()
            token = await database_sync_to_async(access_token)(user)
            body = json.dumps(
                {
                    "base_revision": 0,
                    "client_op_id": "rest-1",
                    "op": {"op": "insert", "index": 0, "track": tracks[3].pk},
                }
            ).encode()
            request = urllib.request.Request(
                f"{first.url}/api/v1/playlists/{playlist.pk}/ops/",
                data=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                method="POST",
            )
            answer = await asyncio.to_thread(lambda: json.load(urllib.request.urlopen(request, timeout=10)))
            assert answer["revision"] == 1
            await pump(client, session, lambda: session.revision == 1)
            assert [item["track_id"] for item in session.state.items] == [tracks[3].pk]
            assert session.tracks[tracks[3].pk]["title"] == tracks[3].title

    asyncio.run(scenario())


def test_presence_follows_subscribers_and_their_selection(servers, user, bob, playlist, tracks):
    first, second = servers

    async def scenario():
        async with client_for(first.url, user) as alice_client:
            alice = PlaylistSession(alice_client, playlist.pk)
            opened = await alice.open()
            assert [entry["username"] for entry in opened["present"]] == ["alice"]
            await alice.edit({"op": "insert", "index": 0, "track": tracks[0].pk})
            await pump(alice_client, alice, lambda: alice.revision == 1)
            item_id = alice.state.items[0]["item_id"]

            bob_client = client_for(second.url, bob)
            await bob_client.__aenter__()
            bobs = PlaylistSession(bob_client, playlist.pk)
            await bobs.open()
            await pump(alice_client, alice, lambda: {e["username"] for e in alice.present} == {"alice", "bob"})
            await bob_client.request(
                "playlist.presence", content={"playlist": playlist.pk, "state": "editing", "selected": item_id}
            )
            await pump(
                alice_client,
                alice,
                lambda: any(e["username"] == "bob" and e["selected"] == item_id for e in alice.present),
            )
            await bob_client.close()
            await pump(alice_client, alice, lambda: [e["username"] for e in alice.present] == ["alice"])

    asyncio.run(scenario())


def test_roles_errors_and_resync_over_the_socket(servers, user, carol, playlist, tracks):
    first, _second = servers
    collaborator_set(actor=as_principal(user), playlist_id=playlist.pk, user_id=carol.pk, role=CollaboratorRole.VIEWER)

    async def scenario():
        async with client_for(first.url, carol) as viewer_client, client_for(first.url, user) as alice_client:
            viewer = PlaylistSession(viewer_client, playlist.pk)
            await viewer.open()
            with pytest.raises(HubError) as caught:
                await viewer.edit({"op": "insert", "index": 0, "track": tracks[0].pk})
            assert caught.value.code == "forbidden"
            alice = PlaylistSession(alice_client, playlist.pk)
            await alice.open()
            with pytest.raises(HubError) as caught:
                await alice.edit({"op": "insert", "index": 4, "track": tracks[0].pk})
            assert caught.value.code == "invalid" and "op.index" in caught.value.details["fields"]
            with pytest.raises(HubError) as caught:
                await alice_client.request("playlist.subscribe", content={"playlist": 10**9})
            assert caught.value.code == "not_found"
            with pytest.raises(HubError) as caught:
                await alice_client.request("playlist.op", content={"playlist": playlist.pk, "op": {}})
            assert caught.value.code == "invalid"
            for content, code, field in [
                ({"playlist": playlist.pk, "state": "dancing"}, "invalid", "state"),
                ({"playlist": playlist.pk, "state": "editing", "selected": 7}, "invalid", "selected"),
                ({}, "invalid", "playlist"),
            ]:
                with pytest.raises(HubError) as caught:
                    await alice_client.request("playlist.presence", content=content)
                assert caught.value.code == code and field in caught.value.details["fields"]
            await alice_client.request("playlist.unsubscribe", content={"playlist": playlist.pk})
            with pytest.raises(HubError) as caught:
                await alice_client.request("playlist.presence", content={"playlist": playlist.pk})
            assert caught.value.code == "conflict"  # subscribe first

    asyncio.run(scenario())


def test_a_copy_too_old_gets_resync_required_with_a_snapshot(tmp_path, transactional_db, user, playlist, tracks):
    server = RestartableDaphne(tmp_path, name="window", PLAYLIST_TRANSFORM_WINDOW="2")
    server.start()

    async def scenario():
        async with client_for(server.url, user) as client:
            session = PlaylistSession(client, playlist.pk)
            await session.open()
            for index in range(3):
                await session.edit({"op": "insert", "index": 0, "track": tracks[index].pk}, client_op_id=f"a{index}")
            stale = PlaylistSession(client, playlist.pk)
            stale.state = PlaylistState(title="", description="", items=[], revision=0)
            with pytest.raises(HubError) as caught:
                await stale.edit({"op": "insert", "index": 0, "track": tracks[5].pk})
            assert caught.value.code == "resync_required"
            assert stale.revision == 3 and len(stale.state.items) == 3

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_overridden_authors_and_removed_collaborators_are_told(servers, user, bob, playlist, tracks):
    first, second = servers

    async def scenario():
        async with client_for(first.url, user) as alice_client, client_for(second.url, bob) as bob_client:
            alice = PlaylistSession(alice_client, playlist.pk)
            bobs = PlaylistSession(bob_client, playlist.pk)
            await alice.open()
            await bobs.open()
            await bobs.edit({"op": "update", "title": "Bob's title"})
            # alice still at revision 0: her title wins, bob hears that his lost.
            ack = await alice.edit({"op": "update", "title": "Alice's title"})
            assert ack["overridden"][0]["field"] == "title"
            told = await next_frame(bob_client, "playlist.overridden")
            assert told["content"]["overridden"] == [{"field": "title", "revision": 1}]
            assert told["content"]["by"]["username"] == "alice"

            await database_sync_to_async(collaborator_remove)(
                actor=as_principal(user), playlist_id=playlist.pk, user_id=bob.pk
            )
            revoked = await next_frame(bob_client, "playlist.access_revoked")
            assert revoked["content"] == {"playlist": playlist.pk, "reason": "collaborator_removed"}
            with pytest.raises(HubError) as caught:
                await bobs.edit({"op": "insert", "index": 0, "track": tracks[0].pk})
            assert caught.value.code == "not_found"

    asyncio.run(scenario())

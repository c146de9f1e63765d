"""Invitations over real WebSockets, against a running daphne: a host creates an
invite-only session with ``session.create``, the rest of the tenant does not
see it in ``session.list``, ``session.invite`` reaches the invitee's socket as
``session.invited``, and the invitee then finds it, joins and asks for
suggestions."""

from __future__ import annotations

import asyncio

import pytest

from realtime.client import HubError
from tests.conftest import wait_for_sockets_recorded
from tests.listening.support import client_for, next_frame

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_an_invitation_reaches_the_invitees_socket_and_opens_the_session(live_server_url, user, bob):
    async def scenario():
        async with client_for(live_server_url, user) as host, client_for(live_server_url, bob) as guest:
            created = (await host.request("session.create", content={"title": "After hours", "visibility": "invite"}))[
                "content"
            ]
            session_id = created["session"]
            assert (created["role"], created["visibility"], created["audience"]) == ("host", "invite", 1)
            # The creating socket follows the session as a joined one does.
            await host.request("playback.volume", content={"session": session_id, "base_revision": 0, "volume": 40})
            heard = await next_frame(host, "playback.state")
            assert heard["content"]["volume"] == 40

            assert (await guest.request("session.list", content={}))["content"] == {"sessions": []}
            with pytest.raises(HubError) as caught:
                await guest.request("session.join", content={"session": session_id})
            assert caught.value.code == "forbidden"
            with pytest.raises(HubError) as caught:
                await host.request("session.invite", content={"session": session_id, "user": "bob"})
            assert caught.value.code == "invalid" and "user" in caught.value.details["fields"]

            invited = await host.request("session.invite", content={"session": session_id, "user": bob.pk})
            assert invited["content"] == {"session": session_id, "user": bob.pk, "created": True}
            told = await next_frame(guest, "session.invited")
            assert told["content"] == {
                "session": session_id,
                "title": "After hours",
                "mode": "group",
                "host": {"id": user.pk, "username": "alice"},
                "invited_by": {"id": user.pk, "username": "alice"},
            }

            listed = (await guest.request("session.list", content={}))["content"]["sessions"]
            assert [(row["id"], row["audience"], row["visibility"]) for row in listed] == [(session_id, 1, "invite")]
            joined = (await guest.request("session.join", content={"session": session_id}))["content"]
            assert (joined["role"], joined["audience"]) == ("listener", 2)
            suggested = (await guest.request("session.suggestions", content={"session": session_id}))["content"]
            assert suggested == {"session": session_id, "suggestions": []}  # no model built yet
            shown = (await host.request("session.visibility", content={"session": session_id, "visibility": "public"}))[
                "content"
            ]
            assert shown == {"session": session_id, "visibility": "public"}

    try:
        asyncio.run(scenario())
    finally:
        wait_for_sockets_recorded()

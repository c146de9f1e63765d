"""Devices end to end, in one scenario (two daphne processes cost seconds to
start): one user with two real WebSocket clients, each a device, on different
servers. A transfer from one to the other tells both (the target with
``this: true``), and the target places its player from the event's state
within 50 ms of the session's position; bad frames are refused naming the
field; forgetting a device tells its socket; a reconnected device registers
again; a device's socket closing refreshes its last seen."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from accounts.services.tokens import principal_for_user
from listening.models import Device, ListeningSession
from listening.services.devices import device_forget
from listening.services.playback import playback_command
from listening.services.sessions import session_create, session_join
from playlists.services.editing import playlist_apply_op
from realtime.client import CLIENT_CONNECTED, HubError
from realtime.client.clock import clock_sync
from realtime.client.devices import DevicePlayer
from realtime.client.playback import position_at
from tests.listening.test_ws_sessions import client_for, next_frame

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def playing(user, bob, tracks):
    """alice hosts a group session playing a one-minute track, 20 s in; bob listens."""
    alice = principal_for_user(user)
    session = session_create(actor=alice, title="Friday")
    session_join(actor=principal_for_user(bob), session_id=session.pk)
    playlist_apply_op(
        actor=alice,
        playlist_id=session.queue_id,
        base_revision=0,
        op={"op": "batch", "ops": [{"op": "insert", "index": 0, "track": tracks[1].pk}]},
        client_op_id="fill",
    )
    playback_command(actor=alice, session_id=session.pk, action="play", base_revision=0)
    playback_command(actor=alice, session_id=session.pk, action="seek", base_revision=1, position_ms=20_000)
    return session


def test_a_transfer_moves_playback_to_the_other_device_at_the_right_position(servers, bob, playing):
    first, second = servers

    async def scenario():
        async with client_for(first.url, bob) as phone_socket, client_for(second.url, bob) as speaker_socket:
            phone = DevicePlayer(phone_socket, device_id="ios:7F3A", name="Bob's phone", kind="phone")
            speaker = DevicePlayer(speaker_socket, device_id="sonos.kitchen", name="Kitchen", kind="speaker")
            assert (await phone.register())["active"] is True  # the user's first device plays
            registered = await speaker.register()
            assert (registered["active"], registered["this"], registered["kind"]) == (False, True, "speaker")
            listed = await speaker.devices()
            assert [(d["device_id"], d["active"], d["this"]) for d in listed] == [
                ("ios:7F3A", True, False),
                ("sonos.kitchen", False, True),
            ]
            clock = await clock_sync(speaker_socket, samples=4, spacing=0.01)

            # The phone hands playback to the speaker.
            answer = await phone.transfer("sonos.kitchen")
            assert (answer["changed"], answer["previous"], answer["this"]) == (True, "ios:7F3A", False)
            assert answer["session"] == playing.pk and answer["playback"]["playing"]
            assert not phone.active

            told = {}
            for name, socket, player in (("phone", phone_socket, phone), ("speaker", speaker_socket, speaker)):
                frame = await next_frame(socket, "device.active")
                assert await player.handle(frame)
                told[name] = frame["content"]
            assert (told["phone"]["this"], told["speaker"]["this"]) == (False, True)
            assert told["speaker"]["previous"] == "ios:7F3A" and told["speaker"]["session"] == playing.pk
            assert told["speaker"]["playback"] == answer["playback"]
            assert speaker.active and not phone.active and phone.position_now(clock) is None

            # The speaker resumes where the session is, by the server's clock.
            session = await database_sync_to_async(ListeningSession.objects.get)(pk=playing.pk)
            local_ms = time.time() * 1000
            resumed = position_at(speaker.playback, clock.to_server(local_ms))
            assert abs(resumed - session.position_at(int(local_ms))) <= 50
            assert 20_000 <= resumed < 40_000

            # Again on the active device: nothing changes, nobody is told.
            again = await speaker.transfer()
            assert (again["changed"], again["this"]) == (False, True)
            with pytest.raises(TimeoutError):
                await next_frame(phone_socket, "device.active", timeout=0.5)

            for kind, content, field in [
                ("device.register", {"device_id": "a b", "name": "Phone", "kind": "phone"}, "device_id"),
                ("device.register", {"device_id": "p1", "name": " ", "kind": "phone"}, "name"),
                ("device.register", {"device_id": "p1", "name": "Phone", "kind": "fridge"}, "kind"),
                ("device.transfer", {}, "device_id"),
            ]:
                with pytest.raises(HubError) as caught:
                    await phone_socket.request(kind, content=content)
                assert caught.value.code == "invalid" and list(caught.value.details["fields"]) == [field], content
            with pytest.raises(HubError) as caught:
                await phone_socket.request("device.transfer", content={"device_id": "nobody"})
            assert caught.value.code == "not_found"

            # Forgetting the active speaker (REST does this): nothing plays until a transfer.
            await database_sync_to_async(device_forget)(actor=principal_for_user(bob), device_id="sonos.kitchen")
            frame = await next_frame(speaker_socket, "device.forgotten")
            assert frame["content"] == {"device_id": "sonos.kitchen", "was_active": True, "this": True}
            assert await speaker.handle(frame) and not (speaker.registered or speaker.active)
            assert (await next_frame(phone_socket, "device.forgotten"))["content"]["this"] is False
            listed = await phone.devices()
            assert [(d["device_id"], d["active"], d["this"]) for d in listed] == [("ios:7F3A", False, True)]

            # The phone's server restarts: on the new socket the phone registers again
            # and learns from the answer that it is the one to play (none was active).
            first.stop()
            first.start()
            reconnected = await next_frame(phone_socket, CLIENT_CONNECTED, timeout=15)
            assert not await phone.handle(reconnected)
            assert phone.registered and phone.active

            old = timezone.now() - timedelta(hours=3)
            await database_sync_to_async(Device.objects.filter(device_id="ios:7F3A").update)(last_seen_at=old)

        # The phone's socket closed: its device was seen just now.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            seen = await database_sync_to_async(lambda: Device.objects.get(device_id="ios:7F3A").last_seen_at)()
            if seen > old + timedelta(hours=2):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("closing the socket did not refresh last_seen_at")

    asyncio.run(scenario())

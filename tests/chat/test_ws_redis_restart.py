"""Chat survives a Redis restart: a private ``redis-server`` (never the shared one)
behind a daphne of its own is restarted while two members are connected;
messages sent afterwards still reach the other member exactly once and in
order (live, or re-read from PostgreSQL after the fan-out resubscribes), and a
resume after that works as before."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from chat.services.rooms import room_create, room_join
from tests.conftest import daphne_server, free_port, stop_process, wait_for_port

from .test_ws_chat import _sockets_settled, joined, message_seqs, wait_for_sockets_recorded, ws_client

pytestmark = [
    pytest.mark.redis,
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary"),
]

__all__ = ["_sockets_settled"]  # the autouse fixture, shared with test_ws_chat


class PrivateRedis:
    """A throwaway redis-server on a free port: no persistence, restartable."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@pytest.fixture
def private_redis():
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server_url(private_redis, transactional_db, tmp_path):
    """A daphne whose Redis (fan-out, channel layer, presence, limits) is the private one."""
    with daphne_server(tmp_path, REDIS_URL=private_redis.url) as url:
        yield url
        wait_for_sockets_recorded()


@pytest.fixture
def room(alice_p, bob_p):
    created = room_create(actor=alice_p, name="general")
    room_join(actor=bob_p, room_id=created.pk)
    return created


async def test_delivery_and_resume_work_across_a_redis_restart(server_url, private_redis, user, bob, room):
    async with ws_client(server_url, user) as alice, ws_client(server_url, bob) as bobs:
        await joined(alice, room)
        await joined(bobs, room)
        await bobs.request("chat.message", room=room.pk, client_id="before", body="before")
        assert (await alice.expect("chat.message"))["seq"] == 1

        private_redis.stop()
        private_redis.start()

        # Sent at once, while the fan-out may still be reconnecting: each one is
        # stored, and reaches alice live or through the re-read that follows
        # the re-subscription.
        for number in range(3):
            answer = await bobs.request("chat.message", room=room.pk, client_id=f"after-{number}", body=f"a{number}")
            assert answer["type"] == "ack", answer
        received = [await alice.expect("chat.message", timeout=15) for _ in range(3)]
        assert message_seqs(received) == [2, 3, 4]

        # Once resubscribed, live delivery is back.
        await bobs.request("chat.message", room=room.pk, client_id="live", body="live")
        assert (await alice.expect("chat.message", timeout=10))["seq"] == 5
        assert await alice.frames_of("chat.message", settle=0.5) == []

    async with ws_client(server_url, bob) as bobs:
        for number in range(2):
            await bobs.request("chat.message", room=room.pk, client_id=f"missed-{number}", body=f"m{number}")
    async with ws_client(server_url, user) as alice:
        ack = await joined(alice, room, last_seq=5)
        assert (ack["content"]["last_seq"], ack["content"]["recovered"]) == (7, True)
        assert message_seqs([await alice.expect("chat.message") for _ in range(2)]) == [6, 7]
        assert await alice.frames_of("chat.message", settle=0.3) == []

"""Clock synchronisation (``time.sync`` and ``realtime.client.clock``): the NTP
arithmetic, its accuracy over simulated links with fixed delays and jitter,
robustness to a stalled exchange, and the exchange against a real daphne."""

from __future__ import annotations

import asyncio
import random

import pytest

from realtime.client import HubClient, HubError
from realtime.client.clock import ClockSync, Sample, clock_sync

from .client_support import RecordingTokens


def test_a_symmetric_exchange_gives_the_exact_offset():
    # The server is 1,000 ms ahead; 30 ms each way; 2 ms in the server.
    sample = Sample.from_times(client_sent=0, server_received=1030, server_sent=1032, client_received=62)
    assert sample.offset == 1000
    assert sample.round_trip == 60


def simulate(clock: ClockSync, *, true_offset: float, delay: float, jitter: float, rng: random.Random, n: int):
    """``n`` exchanges over a link taking ``delay`` ms each way plus up to ``jitter`` ms of queueing."""
    local = 1_000_000.0
    for _ in range(n):
        sent = local
        received = sent + true_offset + delay + rng.uniform(0, jitter)
        answered = received + rng.uniform(0.05, 0.5)
        local = answered - true_offset + delay + rng.uniform(0, jitter)
        clock.add(
            Sample.from_times(client_sent=sent, server_received=received, server_sent=answered, client_received=local)
        )
        local += 50


@pytest.mark.parametrize("delay", [5, 20, 50, 100, 200])
def test_offset_is_found_within_a_few_ms_over_slow_jittery_links(delay):
    """Links of 5-200 ms each way with up to 40 ms of jitter per direction: after
    eight exchanges every simulated client knows the server's clock within 20 ms
    (the error is half the jitter asymmetry of the fastest exchange, whatever the
    link's own delay), well inside the 50 ms that playback sync allows."""
    rng = random.Random(delay)
    errors = []
    for _ in range(200):
        clock = ClockSync()
        true_offset = rng.uniform(-60_000, 60_000)
        simulate(clock, true_offset=true_offset, delay=delay, jitter=40, rng=rng, n=8)
        errors.append(abs(clock.offset - true_offset))
        assert abs(clock.offset - true_offset) <= clock.error_bound
    assert max(errors) <= 20, f"spread {min(errors):.2f}-{max(errors):.2f} ms over 200 clients"


def test_one_stalled_exchange_does_not_move_the_estimate():
    clock = ClockSync()
    simulate(clock, true_offset=500, delay=10, jitter=0, rng=random.Random(1), n=6)
    before = clock.offset
    # A reply stuck 3 s in a queue on the way back.
    clock.add(Sample.from_times(client_sent=0, server_received=510, server_sent=511, client_received=3011))
    assert clock.offset == before
    assert clock.to_local(clock.to_server(123.0)) == 123.0


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_time_sync_against_a_running_server(live_server_url, user):
    async def scenario():
        async with HubClient(live_server_url, token_provider=RecordingTokens(user)) as client:
            clock = await clock_sync(client, samples=6, spacing=0.01)
            with pytest.raises(HubError) as caught:
                await client.request("time.sync", content={"client_sent": "noon"})
            assert caught.value.code == "invalid"
            return clock

    clock = asyncio.run(scenario())
    # Same machine, same clock: the offset is the measurement's own error.
    assert abs(clock.offset) <= clock.error_bound <= 50

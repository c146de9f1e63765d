"""Keeping listeners together: the drift rule, positions computed by clients on
jittery links, and drift reports through the service, with their metrics."""

from __future__ import annotations

import random

import pytest
from prometheus_client import REGISTRY

from listening.constants import SessionMode
from listening.services import common
from listening.services.playback import playback_command, playback_position_report
from listening.services.sessions import session_create, session_join
from listening.sync import MAX_RATE_ADJUST, CorrectionAction, correction
from playlists.services.editing import playlist_apply_op
from realtime.client.clock import ClockSync, Sample
from realtime.client.playback import position_at, position_now
from spotify_agent.errors import Forbidden, Invalid

# --- The rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drift", "action"),
    [(0, "none"), (40, "none"), (-40, "none"), (41, "rate"), (-500, "rate"), (1000, "rate"), (1001, "seek")],
)
def test_the_correction_depends_on_the_size_of_the_drift(drift, action):
    assert correction(drift_ms=drift).action == CorrectionAction(action)


def test_a_rate_correction_slows_the_ahead_and_hurries_the_behind_and_absorbs_the_drift():
    ahead = correction(drift_ms=200)
    behind = correction(drift_ms=-200)
    assert ahead.rate < 1 < behind.rate
    # Over duration_ms at the corrected rate, the player falls back exactly by the drift.
    assert ahead.duration_ms * (1 - ahead.rate) == pytest.approx(200, abs=1)
    assert correction(drift_ms=900).rate == pytest.approx(1 - MAX_RATE_ADJUST)
    assert correction(drift_ms=-300, session_rate=1.5).rate > 1.5


# --- Positions on simulated clients ----------------------------------------------------


def synced_clock(*, true_offset: float, delay: float, jitter: float, rng: random.Random) -> ClockSync:
    clock, local = ClockSync(), 0.0
    for _ in range(8):
        received = local + true_offset + delay + rng.uniform(0, jitter)
        answered = received + rng.uniform(0.05, 0.5)
        back = answered - true_offset + delay + rng.uniform(0, jitter)
        clock.add(
            Sample.from_times(client_sent=local, server_received=received, server_sent=answered, client_received=back)
        )
        local = back + 50
    return clock


def test_clients_on_links_of_5_to_200_ms_agree_with_the_server_within_50_ms(record_property):
    """Each client has its own fixed link delay (5-200 ms each way) and random
    jitter; after syncing its clock it computes where the track is. Reported: the
    spread of errors over the clients."""
    rng = random.Random(2026)
    state = {"session": 1, "revision": 3, "position_ms": 12_000, "anchor_ms": 1_000_000, "playing": True, "rate": 1.0}
    errors = []
    for _ in range(300):
        true_offset = rng.uniform(-3_600_000, 3_600_000)
        clock = synced_clock(true_offset=true_offset, delay=rng.uniform(5, 200), jitter=30, rng=rng)
        server_now = 1_000_000 + rng.uniform(0, 200_000)
        computed = position_now(state, clock, local_ms=server_now - true_offset)
        errors.append(computed - position_at(state, server_now))
    spread = (min(errors), max(errors))
    record_property("position_error_spread_ms", f"{spread[0]:.1f}..{spread[1]:.1f}")
    assert max(abs(error) for error in errors) <= 50, f"spread {spread[0]:.1f}..{spread[1]:.1f} ms"


# --- Reports through the service --------------------------------------------------------


@pytest.fixture
def playing(people, tracks):
    session = session_create(actor=people.alice, title="Group", mode=SessionMode.GROUP)
    session_join(actor=people.bob, session_id=session.pk)
    playlist_apply_op(
        actor=people.alice,
        playlist_id=session.queue_id,
        base_revision=0,
        op={"op": "insert", "index": 0, "track": tracks[0].pk},
        client_op_id="q",
    )
    state = playback_command(actor=people.alice, session_id=session.pk, action="play", base_revision=0)
    return session, state


def report(actor, session, state, *, drift: int, at_ms: int | None = None):
    at_ms = at_ms if at_ms is not None else common.now_ms() + 1_000
    return playback_position_report(
        actor=actor,
        session_id=session.pk,
        revision=state["revision"],
        position_ms=int(position_at(state, at_ms)) + drift,
        at_ms=at_ms,
    )


@pytest.mark.django_db
def test_drift_reports_get_corrections_and_feed_the_metrics(people, playing):
    session, state = playing
    assert report(people.bob, session, state, drift=10)["action"] == "none"
    slow = report(people.bob, session, state, drift=300)
    assert slow["action"] == "rate" and slow["rate"] < 1 and slow["drift_ms"] == pytest.approx(300, abs=1)
    assert report(people.bob, session, state, drift=5_000)["action"] == "seek"
    assert REGISTRY.get_sample_value("listening_session_drift_ms", {"session": str(session.pk)}) == 5000
    assert REGISTRY.get_sample_value("listening_drift_ms_count") >= 3


@pytest.mark.django_db
def test_stale_unsynced_and_outsider_reports(people, playing):
    session, state = playing
    playback_command(actor=people.alice, session_id=session.pk, action="pause", base_revision=state["revision"])
    stale = report(people.bob, session, state, drift=0)
    assert stale["action"] == "stale" and stale["state"]["playing"] is False
    with pytest.raises(Invalid) as caught:
        report(people.bob, session, state, drift=0, at_ms=common.now_ms() - 120_000)
    assert "at_ms" in caught.value.details["fields"]
    with pytest.raises(Forbidden):
        report(people.carol, session, state, drift=0)

"""The client side of listening sessions: the member's copy of the state, the
stand-in player and its corrections (pure), and the DJ demo end to end against
real daphne processes and a real Celery worker."""

from __future__ import annotations

import asyncio

import pytest

from playlists.models import Track
from realtime.client.clock import ClockSync, Sample
from realtime.client.demo import dj_demo
from realtime.client.listening import SessionMember, VirtualPlayer
from tests.factories import DEFAULT_PASSWORD

STATE = {
    "session": 7,
    "revision": 3,
    "track": {"id": 1, "duration_ms": 200_000},
    "position_ms": 10_000,
    "anchor_ms": 1_000_000,
    "playing": True,
    "rate": 1.0,
}


class FakeClock:
    """A hand-moved clock (seconds), standing in for ``time.time``."""

    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def synced(offset: float) -> ClockSync:
    clock = ClockSync()
    clock.add(Sample(offset=offset, round_trip=2.0))
    return clock


def test_a_member_keeps_the_newest_state_of_its_session_only():
    member = SessionMember(client=None, session_id=7)
    assert member.adopt(STATE) and member.revision == 3
    assert not member.adopt({**STATE, "revision": 2, "position_ms": 0})  # older: ignored
    assert not member.adopt({**STATE, "revision": 9, "session": 8})  # another session
    assert member.adopt({**STATE, "revision": 4, "playing": False}) and member.state["playing"] is False
    assert member.changes == 2


def test_the_position_now_follows_the_servers_clock_not_ours():
    # Our clock is 2.5 s behind the server's: the offset puts it right.
    now = FakeClock(1_005.0 - 2.5)  # server time 1_005_000 ms
    member = SessionMember(client=None, session_id=7, clock=synced(2_500.0), now=now)
    assert member.position_now() is None
    member.adopt(STATE)
    assert member.position_now() == pytest.approx(10_000 + 5_000)


def test_the_player_starts_where_the_state_says_and_drifts_with_its_sound_card():
    now = FakeClock(1_002.0)
    player = VirtualPlayer(rate_error=0.01, now=now)
    player.follow(STATE, synced(0.0))
    assert player.position() == pytest.approx(12_000)
    now.at += 10
    # 10 s at 1% fast: 100 ms ahead.
    assert player.position() == pytest.approx(22_100)


def test_a_rate_correction_absorbs_the_drift_and_ends_by_itself():
    now = FakeClock(1_000.0)
    clock = synced(0.0)
    player = VirtualPlayer(now=now)
    player.follow(STATE, clock)
    player._position += 200  # 200 ms ahead
    player.correct({"action": "rate", "rate": 0.95, "duration_ms": 4000}, clock)
    now.at += 4
    assert player.position() == pytest.approx(10_000 + 4_000 + 200 - 200, abs=0.01)
    now.at += 2  # the nudge is over: normal speed again
    assert player.position() == pytest.approx(16_000, abs=0.01)
    assert player.nudges == 1


def test_a_seek_correction_lands_where_the_track_is_now():
    now = FakeClock(1_003.0)
    clock = synced(0.0)
    player = VirtualPlayer(now=now)
    player.follow(STATE, clock)
    player._position -= 5_000
    # The server's answer is about the moment of the report, 100 ms ago.
    player.correct({"action": "seek", "position_ms": 12_900, "at_ms": 1_002_900}, clock)
    assert player.position() == pytest.approx(13_000)
    assert player.seeks == 2


def test_a_command_scheduled_ahead_starts_the_player_at_its_anchor():
    now = FakeClock(999.7)  # 300 ms before the anchor
    player = VirtualPlayer(now=now)
    player.follow(STATE, synced(0.0))
    assert player.position() == 10_000
    now.at = 1_000.0
    assert player.position() == 10_000
    now.at = 1_001.5
    assert player.position() == pytest.approx(11_500)


def test_a_paused_state_holds_the_player():
    now = FakeClock(1_002.0)
    player = VirtualPlayer(now=now)
    player.follow({**STATE, "playing": False}, synced(0.0))
    now.at += 5
    assert player.position() == 10_000


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_the_dj_demo_keeps_two_listeners_together_and_the_queue_advances(servers, tenant, user, bob, carol):
    for n in range(3):
        Track.objects.create(
            tenant=tenant, uri=f"test:demo:{n}", title=f"Demo {n}", artist="Band", duration_ms=12_000 + n
        )
    first, _second = servers
    lines: list[str] = []
    report = asyncio.run(
        dj_demo(
            first.url,
            password=DEFAULT_PASSWORD,
            host="alice",
            listeners=("bob", "carol"),
            lead_out_s=2.0,
            after_s=2.0,
            sample_every=0.1,
            report_every=0.5,
            out=lines.append,
        )
    )
    output = "\n".join(lines)
    assert report.advanced_to is not None, output
    assert report.samples >= 10, output
    assert report.worst_error_ms <= 50, output
    assert report.ok and output.splitlines()[-1].startswith("OK"), output

"""One member's copy of a listening session over a ``HubClient``: the client side
of ``session.*`` and ``playback.*``.

``SessionMember`` joins (after synchronising the clock, ``clock.py``), keeps
the newest ``playback.state`` it has seen (by revision: a state is whole, so a
lost frame costs nothing once the next arrives), tells where the track is now
on this client's clock, sends commands written against the revision it holds
(a command that lost a race raises ``HubError`` ``conflict`` and the copy takes
the state the error carries) and reports its player's position, answered by
the server's correction. After a reconnect it joins again and re-synchronises
the clock. The application reads ``HubClient.events()`` and hands every frame
to ``handle`` (one reader per client).

``VirtualPlayer`` stands in for an audio player in tests, the demo and the
benchmarks: it starts where a state says, on this client's clock, runs at the
rate its hardware runs (``rate_error``: a sound card's clock is never exact)
and takes the server's corrections (a short rate change, or a seek). A real
player does the same with its audio engine. docs/protocol.md, "Listening
sessions", describes the frames and the rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .clock import ClockSync, clock_sync
from .hub import CLIENT_CONNECTED, HubClient, HubError
from .playback import position_at


def _now_ms() -> float:
    return time.time() * 1000


class SessionMember:
    def __init__(
        self,
        client: HubClient,
        session_id: int,
        *,
        clock: ClockSync | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.session_id = session_id
        self.clock = clock or ClockSync()
        self._now = now
        self.info: dict[str, Any] = {}
        self.state: dict[str, Any] | None = None
        self.audience: int | None = None
        self.ended: str | None = None
        self.changes = 0

    # --- Joining ---------------------------------------------------------------------------

    async def sync_clock(self, *, samples: int = 8) -> ClockSync:
        return await clock_sync(self.client, self.clock, samples=samples, now=self._now)

    async def join(self) -> dict[str, Any]:
        """Synchronise the clock (first time), join, and take the state the answer carries."""
        if not self.clock.synced:
            await self.sync_clock()
        answer = (await self.client.request("session.join", content={"session": self.session_id}, retry=True))[
            "content"
        ]
        self.info = answer
        self.audience = answer.get("audience")
        self.adopt(answer["playback"])
        return answer

    async def leave(self) -> None:
        await self.client.request("session.leave", content={"session": self.session_id})

    # --- The state ---------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self.state["revision"] if self.state is not None else 0

    def adopt(self, state: dict[str, Any]) -> bool:
        """Take ``state`` if it is newer than the copy; True if it was."""
        if state.get("session") != self.session_id:
            return False
        if self.state is not None and state["revision"] <= self.state["revision"]:
            return False
        self.state = state
        self.changes += 1
        return True

    def server_now(self) -> float:
        """The server's clock now, as this client reckons it (ms)."""
        return self.clock.to_server(self._now() * 1000)

    def position_now(self) -> float | None:
        """Where the session's track is now, in ms (None with nothing on)."""
        if self.state is None or self.state.get("track") is None:
            return None
        return position_at(self.state, self.server_now())

    # --- Commands and reports --------------------------------------------------------------

    async def command(self, action: str, **fields: Any) -> dict[str, Any]:
        """``playback.<action>`` written against the copy's revision; returns the new
        state (the copy takes it). A command that lost raises ``HubError``
        ``conflict``, and the copy takes the state it carries."""
        content = {"session": self.session_id, "base_revision": self.revision, **fields}
        try:
            state = (await self.client.request(f"playback.{action}", content=content))["content"]
        except HubError as exc:
            if exc.code == "conflict" and exc.details and isinstance(exc.details.get("state"), dict):
                self.adopt(exc.details["state"])
            raise
        self.adopt(state)
        return state

    async def report(self, player_position_ms: float) -> dict[str, Any]:
        """Tell the server where the player is now; returns the correction
        (``action`` none, rate or seek, ``drift_ms``, …; ``stale`` carries a newer state)."""
        if self.state is None:
            raise RuntimeError("join first")
        content = {
            "session": self.session_id,
            "revision": self.revision,
            "position_ms": max(0, int(player_position_ms)),
            "at_ms": int(self.server_now()),
        }
        answer = (await self.client.request("playback.position", content=content))["content"]
        if answer.get("action") == "stale" and isinstance(answer.get("state"), dict):
            self.adopt(answer["state"])
        return answer

    # --- Frames ----------------------------------------------------------------------------

    async def handle(self, frame: dict[str, Any]) -> bool:
        """Take one frame from ``events()``; True if the playback state changed."""
        kind = frame.get("type")
        content = frame.get("content") or {}
        if kind == CLIENT_CONNECTED and self.state is not None and self.client.sessions > 1:
            # A new socket: the clock may have moved and the server forgot us.
            await self.sync_clock(samples=4)
            await self.join()
            return True
        if content.get("session") != self.session_id:
            return False
        if kind == "playback.state":
            return self.adopt(content)
        if kind == "session.member":
            self.audience = content.get("audience", self.audience)
        elif kind == "session.ended":
            self.ended = content.get("reason") or "ended"
        return False


class VirtualPlayer:
    """A stand-in audio player on this client's clock (ms, ``time.time()`` by default).

    ``follow(state, clock)`` starts it where the state says the track is; it
    then runs at ``rate * (1 + rate_error)``. ``correct(answer, clock)`` applies a
    ``playback.correction``: a rate change for its ``duration_ms``, or a seek."""

    def __init__(self, *, rate_error: float = 0.0, now: Callable[[], float] = time.time) -> None:
        self.rate_error = rate_error
        self._now = now
        self.track: int | None = None
        self.playing = False
        self._position = 0.0  # at _since (local ms)
        self._since = 0.0
        self._start_at = 0.0  # local ms: a state takes effect at its anchor
        self._rate = 1.0
        self._nudge_until = 0.0
        self._nudge_rate = 1.0
        self.seeks = 0
        self.nudges = 0

    def _local(self) -> float:
        return self._now() * 1000

    def _speed(self) -> float:
        return self._rate * (1 + self.rate_error)

    def _advance(self, local_ms: float) -> None:
        """Bring the position up to ``local_ms``, ending a nudge that has run out.
        Before ``_start_at`` (a state's anchor, slightly ahead) the player holds."""
        since = max(self._since, self._start_at)
        if self.playing and local_ms > since:
            if self._nudge_until > since:
                nudged_until = min(local_ms, self._nudge_until)
                self._position += (nudged_until - since) * self._nudge_rate * (1 + self.rate_error)
                since = nudged_until
            self._position += (local_ms - since) * self._speed()
        self._since = max(self._since, local_ms)

    def position(self, local_ms: float | None = None) -> float:
        local_ms = self._local() if local_ms is None else local_ms
        self._advance(local_ms)
        return self._position

    def follow(self, state: dict[str, Any], clock: ClockSync) -> None:
        """Place the player where ``state`` says, now (a new track, a pause, a seek...)."""
        local = self._local()
        track = state.get("track") or {}
        self.track = track.get("id")
        self.playing = bool(state.get("playing")) and self.track is not None
        self._rate = state.get("rate", 1.0)
        self._nudge_until = 0.0
        # A command takes effect at its anchor (the server schedules it slightly
        # ahead so everyone starts together): until then the player holds there.
        anchor = clock.to_local(state.get("anchor_ms", 0))
        self._start_at = anchor if anchor > local else local
        moment = clock.to_server(max(local, anchor))
        self._position = position_at(state, moment) if self.track is not None else 0.0
        self._since = local
        self.seeks += 1

    def correct(self, answer: dict[str, Any], clock: ClockSync) -> None:
        action = answer.get("action")
        local = self._local()
        self._advance(local)
        if action == "seek":
            # The answer's position is the authoritative one at its at_ms; the
            # player jumps there plus what has elapsed since (at the session's rate).
            elapsed = max(0.0, clock.to_server(local) - answer["at_ms"])
            self._position = answer["position_ms"] + elapsed * self._rate
            self.seeks += 1
        elif action == "rate":
            self._nudge_rate = answer["rate"]
            self._nudge_until = local + answer["duration_ms"]
            self.nudges += 1

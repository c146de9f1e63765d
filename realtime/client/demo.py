"""A DJ session with two listeners, end to end, through the client library.

``dj_demo`` logs in a host and listeners, synchronises each one's clock (the
listeners' clocks are set wrong on purpose, by ``skews_ms``: clock sync must
find it), has the host create a DJ session, queue a few tracks of the catalog,
play and jump close to the first track's end, then lets it be: the listeners'
players (``VirtualPlayer``, whose sound cards run a little fast or slow,
``rate_errors``) follow the state, report their position every second and take
the server's corrections. Meanwhile it samples, on the host's synchronised
clock, where each listener hears the track against where the server says it
is. The first track ends, and the server (not a client) puts the next one on;
the demo watches a few seconds of it and leaves.

``python -m realtime.client dj-demo`` runs it against a server (``make run``
then ``make demo``); it exits 1 if a listener strayed past ``bound_ms`` or the
queue did not advance. docs/protocol.md, "Listening sessions", has the rules
it shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .backoff import BackoffPolicy
from .hub import HubClient
from .listening import SessionMember, VirtualPlayer
from .playback import position_at
from .playlist import PlaylistSession
from .tokens import PasswordTokenProvider, http_base

# The bound: everyone hears the same second, within ±50 ms.
DEFAULT_BOUND_MS = 50.0


@dataclass
class Listener:
    name: str
    client: HubClient
    member: SessionMember
    player: VirtualPlayer
    corrections: list[str] = field(default_factory=list)


@dataclass
class DemoReport:
    session: int
    tracks: list[str]
    samples: int = 0
    worst_error_ms: float = 0.0  # the furthest any listener was from the server's position
    worst_spread_ms: float = 0.0  # the furthest two listeners were apart
    advanced_to: str | None = None  # the track the server put on by itself
    bound_ms: float = DEFAULT_BOUND_MS

    @property
    def ok(self) -> bool:
        return self.samples > 0 and self.worst_error_ms <= self.bound_ms and self.advanced_to is not None


def _skewed(skew_ms: float) -> Callable[[], float]:
    """A clock ``skew_ms`` off the machine's."""
    return lambda: time.time() + skew_ms / 1000


def _api_get(base_url: str, path: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 (http_base checks the scheme)
        http_base(base_url) + path, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


async def _follow(listener: Listener, *, report_every: float) -> None:
    """Hand every frame to the member; re-place the player on each new state;
    report the player's position every ``report_every`` seconds and correct."""

    async def frames() -> None:
        async for frame in listener.client.events():
            if await listener.member.handle(frame) and listener.member.state is not None:
                listener.player.follow(listener.member.state, listener.member.clock)

    async def reports() -> None:
        while True:
            await asyncio.sleep(report_every)
            if listener.member.state is None or not listener.member.state.get("playing"):
                continue
            answer = await listener.member.report(listener.player.position())
            if answer.get("action") == "stale":
                listener.player.follow(listener.member.state, listener.member.clock)
                continue
            listener.player.correct(answer, listener.member.clock)
            if answer.get("action") != "none":
                listener.corrections.append(f"{answer['action']} ({answer['drift_ms']:+.1f} ms)")

    async with asyncio.TaskGroup() as group:
        group.create_task(frames())
        group.create_task(reports())


async def dj_demo(
    url: str,
    *,
    password: str,
    host: str = "alice",
    listeners: tuple[str, ...] = ("bob", "carol"),
    skews_ms: tuple[float, ...] = (1500.0, -800.0),
    rate_errors: tuple[float, ...] = (0.003, -0.002),
    tracks: int = 3,
    lead_out_s: float = 6.0,
    after_s: float = 4.0,
    sample_every: float = 0.25,
    report_every: float = 1.0,
    bound_ms: float = DEFAULT_BOUND_MS,
    out: Callable[[str], None] = print,
) -> DemoReport:
    """Run the demo against the server at ``url``; returns what it measured."""
    backoff = BackoffPolicy(base=0.2, cap=2.0)
    host_tokens = PasswordTokenProvider(url, username=host, password=password)
    async with contextlib.AsyncExitStack() as stack:
        host_client = await stack.enter_async_context(HubClient(url, token_provider=host_tokens, backoff=backoff))
        created = (await host_client.request("session.create", content={"title": "Demo DJ set", "mode": "dj"}))[
            "content"
        ]
        session_id = created["session"]
        dj = SessionMember(host_client, session_id)
        await dj.sync_clock()
        dj.adopt(created["playback"])

        catalog = (await asyncio.to_thread(_api_get, url, "/api/v1/tracks/", await host_tokens()))["results"]
        picks = [track for track in catalog if track["duration_ms"] > (lead_out_s + after_s + 5) * 1000][:tracks]
        if len(picks) < 2:
            raise RuntimeError("the catalog needs at least two tracks (make seed)")
        queue = PlaylistSession(host_client, created["queue"])
        await queue.open()
        await queue.edit(
            {"op": "batch", "ops": [{"op": "insert", "index": n, "track": t["id"]} for n, t in enumerate(picks)]}
        )
        names = [f"{t['artist']} - {t['title']}" for t in picks]
        report = DemoReport(session=session_id, tracks=names, bound_ms=bound_ms)
        out(f"session {session_id} by {host}; queue: {'; '.join(names)}")

        crowd: list[Listener] = []
        for name, skew, rate_error in zip(listeners, skews_ms, rate_errors, strict=False):
            tokens = PasswordTokenProvider(url, username=name, password=password)
            client = await stack.enter_async_context(HubClient(url, token_provider=tokens, backoff=backoff))
            now = _skewed(skew)
            member = SessionMember(client, session_id, now=now)
            await member.join()
            out(
                f"{name} joined: clock {skew:+.0f} ms off, sync says {-member.clock.offset:+.1f} ms "
                f"(± {member.clock.error_bound:.1f}); sound card {rate_error * 100:+.2f}%"
            )
            crowd.append(Listener(name, client, member, VirtualPlayer(rate_error=rate_error, now=now)))

        await dj.command("play")
        first = dj.state["track"]
        await dj.command("seek", position_ms=max(0, first["duration_ms"] - int(lead_out_s * 1000)))
        out(f"playing {names[0]}, {lead_out_s:.0f} s before its end; nobody sends a command from here on")

        async def host_frames() -> None:
            async for frame in host_client.events():
                await dj.handle(frame)

        async with asyncio.TaskGroup() as group:
            followers = [group.create_task(_follow(listener, report_every=report_every)) for listener in crowd]
            followers.append(group.create_task(host_frames()))
            try:
                await _watch(dj, crowd, report, first_track=first["id"], after_s=after_s, every=sample_every, out=out)
            finally:
                for task in followers:
                    task.cancel()

        for listener in crowd:
            fixes = ", ".join(listener.corrections) or "none needed"
            out(f"{listener.name}: corrections {fixes}")
            await listener.member.leave()
        await dj.leave()
    verdict = "OK" if report.ok else "FAILED"
    out(
        f"{verdict}: {report.samples} samples, worst error {report.worst_error_ms:.1f} ms, "
        f"worst spread {report.worst_spread_ms:.1f} ms (bound ±{bound_ms:.0f} ms); "
        f"queue advanced to {report.advanced_to or 'nothing'}"
    )
    return report


async def _watch(
    dj: SessionMember,
    crowd: list[Listener],
    report: DemoReport,
    *,
    first_track: int,
    after_s: float,
    every: float,
    out: Callable[[str], None],
) -> None:
    """Sample until ``after_s`` seconds into the track the server puts on next."""
    started = time.monotonic()
    deadline: float | None = None
    await asyncio.sleep(0.5)  # let the players take the seek
    while deadline is None or time.monotonic() < deadline:
        if time.monotonic() - started > 120:
            raise RuntimeError("the queue did not advance within two minutes")
        await asyncio.sleep(every)
        state = _newest(dj, crowd)
        if state is None or not state.get("playing") or state["track"] is None:
            continue
        track = state["track"]
        if deadline is None and track["id"] != first_track and state.get("action") == "advance":
            report.advanced_to = f"{track['artist']} - {track['title']}"
            deadline = time.monotonic() + after_s
            out(f"the server put on {report.advanced_to} at revision {state['revision']} (action advance)")
        if any(listener.member.state is None or listener.member.revision != state["revision"] for listener in crowd):
            continue  # a listener has not heard of this state yet: compare on the next tick
        truth = position_at(state, dj.server_now())
        errors = {listener.name: listener.player.position() - truth for listener in crowd}
        report.samples += 1
        report.worst_error_ms = max(report.worst_error_ms, *(abs(e) for e in errors.values()))
        report.worst_spread_ms = max(report.worst_spread_ms, max(errors.values()) - min(errors.values()))
        if report.samples % 4 == 1:
            offsets = "  ".join(f"{name} {error:+6.1f} ms" for name, error in errors.items())
            out(f"{track['title'][:24]:24s} {truth / 1000:7.2f} s  {offsets}")


def _newest(dj: SessionMember, crowd: list[Listener]) -> dict[str, Any] | None:
    states = [member.state for member in [dj, *(listener.member for listener in crowd)] if member.state]
    return max(states, key=lambda state: state["revision"], default=None)

"""The load generator: WebSocket clients spread over worker processes.

Each worker process runs one asyncio loop holding its share of the clients, so
the generator is not limited to one core. The parent drives every worker
through the same phases over a pipe (connect, join, one or more send steps,
hold, close) and merges their reports.

Measurement:

* every message body carries a marker ``~B~<step>~<message id>~<send time>~E~``;
  a receiver takes its latency as its own clock minus the send time (one
  machine, one clock) and counts the message id, so nothing else in the frame
  is parsed and the same code reads the hub's and the reference's frames;
* every member of a room must receive every message sent to it, the sender
  included: ``expected = sent * members``; a message received fewer times is
  lost, more times duplicated; a delivery arriving after its step's report
  (``drain`` seconds after the last send) is not delivered (it is lost to
  that step) and is counted as ``late`` in the step during which it arrives;
* latencies are reported as percentiles in milliseconds.

Nothing here imports Django: workers start fast and stay small.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing
import secrets
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import wsclient
from .wsclient import ConnectionClosedError, HandshakeError, LeanSocket

MARK_START = "~B~"
MARK_END = "~E~"
# Handshakes a worker has in flight: enough to connect thousands in a minute,
# few enough that none waits past daphne's 5 s connect timeout in the server's
# authentication queue (one database thread).
CONNECT_CONCURRENCY = 12
# How long the workers get to close their sockets before they are terminated.
CLOSE_TIMEOUT = 30.0
# A refused handshake is retried, after 1 s then 2 s, as a client would reconnect.
CONNECT_ATTEMPTS = 3
# Idle clients still talk: the hub closes a socket silent for two heartbeat
# intervals (60 s by default).
PING_EVERY = 20.0
# How long a join, or a connection's first frame, may take before it counts as failed.
REPLY_TIMEOUT = 30.0
# Messages that fell short listed in a step's result, to tell a message nobody
# got from a member that missed several.
SHORT_SAMPLE = 5


@dataclass(frozen=True)
class ClientSpec:
    """One simulated user: its access token, the rooms it joins and whether it sends.

    ``phase`` (0 to 1) places a sender's first message within its send interval;
    ``LoadGenerator`` spaces the senders' phases evenly, so even a low total rate
    is sent at that rate from the first second of a step."""

    token: str
    rooms: tuple[str, ...] = ()
    sends: bool = False
    phase: float = 0.0


@dataclass
class StepResult:
    """One send step, merged over every worker."""

    target_rate: float
    duration: float
    sent: int = 0
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    late: int = 0
    # Up to a few messages that fell short, as [message id, room, received, members].
    short_sample: list[list[Any]] = field(default_factory=list)
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def sent_per_s(self) -> float:
        return self.sent / self.duration if self.duration else 0.0

    @property
    def delivered_per_s(self) -> float:
        return self.delivered / self.duration if self.duration else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "target_rate": self.target_rate,
            "duration": self.duration,
            "sent": self.sent,
            "sent_per_s": round(self.sent_per_s, 1),
            "expected": self.expected,
            "delivered": self.delivered,
            "delivered_per_s": round(self.delivered_per_s, 1),
            "lost": self.lost,
            "duplicated": self.duplicated,
            "late": self.late,
            "short_sample": self.short_sample,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "errors": self.errors,
        }


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values) + 0.5) - 1))
    return round(sorted_values[rank], 2)


# --- Worker side ---------------------------------------------------------------------


@dataclass(frozen=True)
class _WorkerConfig:
    run: str  # distinguishes this run's message ids from any earlier run's
    index: int
    url: str
    clients: list[ClientSpec]
    expect_hello: bool


class _Client:
    """One socket and what it has seen (``bench.wsclient``: no task per socket)."""

    def __init__(self, worker: _Worker, index: int, spec: ClientSpec) -> None:
        self.worker = worker
        self.index = index
        self.spec = spec
        self.ws: LeanSocket | None = None
        self.hello = asyncio.Event()
        self.pending: dict[str, asyncio.Future] = {}
        self.watcher: asyncio.Task | None = None
        self.closed_with: str | None = None

    async def open(self, url: str, expect_hello: bool) -> str | None:
        """Connect; returns None on success, else the failure's reason."""
        try:
            self.ws = await wsclient.connect(
                url,
                headers={"Authorization": f"Bearer {self.spec.token}"},
                on_text=self._received,
                timeout=REPLY_TIMEOUT,
            )
        except HandshakeError as exc:
            return f"http_{exc.status}" if exc.status else "InvalidHandshake"
        except (OSError, TimeoutError) as exc:
            return type(exc).__name__
        self.watcher = asyncio.create_task(self._watch())
        if expect_hello:
            try:
                await asyncio.wait_for(self.hello.wait(), REPLY_TIMEOUT)
            except TimeoutError:
                return self.closed_with or "no_hello"
        if self.closed_with is not None:
            return self.closed_with
        return None

    async def reset(self) -> None:
        """Forget a failed attempt, so ``open`` can be called again."""
        if self.ws is not None:
            await self.ws.close()
        if self.watcher is not None:
            self.watcher.cancel()
        self.ws = self.watcher = self.closed_with = None
        self.hello = asyncio.Event()

    def _received(self, text: str) -> None:
        start = text.find(MARK_START)
        if start >= 0:
            self.worker.record(text[start + 3 : text.find(MARK_END, start)])
            return
        frame = json.loads(text)
        kind = frame.get("type")
        if kind == "hello":
            self.hello.set()
        elif kind in ("ack", "error"):
            if kind == "error":
                self.worker.errors[frame.get("code", "unknown")] += 1
            waiter = self.pending.pop(str(frame.get("id")), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)

    async def _watch(self) -> None:
        await self.ws.closed.wait()
        code = self.ws.close_code
        self.closed_with = "closed" if code in (1000, 1001) else f"closed_{code or 'abnormal'}"
        self.hello.set()
        for waiter in self.pending.values():
            if not waiter.done():
                waiter.set_result({"type": "error", "code": self.closed_with})
        self.pending.clear()

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        waiter = asyncio.get_running_loop().create_future()
        self.pending[str(frame["id"])] = waiter
        self.ws.send_text(json.dumps(frame))
        return await asyncio.wait_for(waiter, REPLY_TIMEOUT)

    def send_chat(self, room: str, step: int, number: int, reference_style: bool) -> str:
        message_id = f"{self.worker.run}-{self.worker.index}-{self.index}-{step}-{number}"
        sent_at = time.time()
        body = f"{MARK_START}{step}~{message_id}~{sent_at:.6f}{MARK_END}"
        content: dict[str, Any] = {"client_id": message_id, "body": body}
        if reference_style:
            content["sent_at"] = sent_at
        self.ws.send_text(json.dumps({"type": "chat.message", "id": message_id, "room": room, "content": content}))
        return message_id


class _Worker:
    def __init__(self, config: _WorkerConfig) -> None:
        self.run = config.run
        self.index = config.index
        self.url = config.url
        self.expect_hello = config.expect_hello
        self.clients = [_Client(self, i, spec) for i, spec in enumerate(config.clients)]
        self.errors: Counter[str] = Counter()
        self.counts: dict[int, Counter[str]] = {}
        self.latencies: dict[int, list[float]] = {}
        self.late = 0
        self.pinger: asyncio.Task | None = None

    def record(self, token: str) -> None:
        step_text, message_id, sent_at = token.split("~")
        step = int(step_text)
        counts = self.counts.get(step)
        if counts is None:
            self.late += 1
            return
        counts[message_id] += 1
        self.latencies[step].append((time.time() - float(sent_at)) * 1000.0)

    async def connect(self, deadline: float) -> dict[str, Any]:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        failures: Counter[str] = Counter()
        retried: Counter[str] = Counter()
        started = time.monotonic()

        async def one(client: _Client) -> None:
            for attempt in range(1, CONNECT_ATTEMPTS + 1):
                async with gate:
                    if time.time() > deadline:
                        failures["deadline"] += 1
                        return
                    failure = await client.open(self.url, self.expect_hello)
                if failure is None:
                    return
                if attempt == CONNECT_ATTEMPTS:
                    failures[failure] += 1
                    return
                retried[failure] += 1
                await client.reset()
                await asyncio.sleep(attempt)

        # Pings start with the first socket: a slow connect phase must not let
        # the early sockets reach the server's heartbeat timeout.
        self.pinger = asyncio.create_task(self._ping())
        await asyncio.gather(*(one(client) for client in self.clients))
        return {
            "connected": len(self.clients) - sum(failures.values()),
            "failures": dict(failures),
            "retried": dict(retried),
            "seconds": time.monotonic() - started,
        }

    async def _ping(self) -> None:
        # Each client pings every PING_EVERY seconds at its own moment, as
        # independent clients do: a burst of every socket's ping at once would
        # be a stall of the harness's making, landing in whichever step it hits.
        while True:
            clients = self._open_clients()
            if not clients:
                await asyncio.sleep(PING_EVERY)
                continue
            gap = PING_EVERY / len(clients)
            for client in clients:
                await asyncio.sleep(gap)
                if client.closed_with is not None:
                    continue
                try:
                    client.ws.send_text('{"type": "ping"}')
                except ConnectionClosedError:
                    pass

    def _open_clients(self) -> list[_Client]:
        return [client for client in self.clients if client.ws is not None and client.closed_with is None]

    async def join(self) -> dict[str, Any]:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY * 4)
        joined: Counter[str] = Counter()
        failures: Counter[str] = Counter()

        async def one(client: _Client, room: str) -> None:
            async with gate:
                try:
                    reply = await client.request({"type": "room.join", "id": f"join-{room}", "room": room})
                except (TimeoutError, ConnectionClosedError) as exc:
                    failures[type(exc).__name__] += 1
                    return
            if reply.get("type") == "ack":
                joined[room] += 1
            else:
                failures[reply.get("code", "unknown")] += 1

        await asyncio.gather(*(one(client, room) for client in self._open_clients() for room in client.spec.rooms))
        return {"joined": dict(joined), "failures": dict(failures)}

    async def step(
        self,
        *,
        step: int,
        start_at: float,
        duration: float,
        rate_per_sender: float,
        drain: float,
        reference_style: bool,
    ) -> dict[str, Any]:
        self.counts[step] = Counter()
        self.latencies[step] = []
        sent: dict[str, str] = {}
        errors_before = Counter(self.errors)
        late_before = self.late
        senders = [client for client in self._open_clients() if client.spec.sends and client.spec.rooms]
        interval = 1.0 / rate_per_sender if rate_per_sender > 0 else 0.0
        end_at = start_at + duration

        async def send_loop(client: _Client) -> None:
            next_at = start_at + client.spec.phase * interval
            number = 0
            while next_at < end_at:
                delay = next_at - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                room = client.spec.rooms[number % len(client.spec.rooms)]
                try:
                    message_id = client.send_chat(room, step, number, reference_style)
                except ConnectionClosedError:
                    return
                sent[message_id] = room
                number += 1
                next_at += interval

        if interval:
            await asyncio.gather(*(send_loop(client) for client in senders))
        else:
            await asyncio.sleep(max(0.0, end_at - time.time()))
        await asyncio.sleep(max(0.0, end_at + drain - time.time()))
        counts = self.counts.pop(step)
        latencies = self.latencies.pop(step)
        return {
            "sent": sent,
            "counts": dict(counts),
            "latencies": latencies,
            "errors": dict(self.errors - errors_before),
            "late": self.late - late_before,
            "open": len(self._open_clients()),
        }

    async def hold(self, seconds: float) -> dict[str, Any]:
        await asyncio.sleep(seconds)
        return {"open": len(self._open_clients())}

    async def close(self) -> dict[str, Any]:
        if self.pinger is not None:
            self.pinger.cancel()
        open_before = len(self._open_clients())
        await asyncio.gather(
            *(client.ws.close() for client in self.clients if client.ws is not None), return_exceptions=True
        )
        return {"open": open_before}


def _worker_main(config: _WorkerConfig, pipe) -> None:
    async def serve() -> None:
        worker = _Worker(config)
        loop = asyncio.get_running_loop()
        while True:
            command, arguments = await loop.run_in_executor(None, pipe.recv)
            try:
                result = await getattr(worker, command)(**arguments)
            except Exception:  # noqa: BLE001 - reported whole to the parent
                # The parent raises it: a benchmark must not report half the clients.
                result = {"failed": traceback.format_exc()}
            pipe.send(result)
            if command == "close":
                return

    asyncio.run(serve())


# --- Parent side -----------------------------------------------------------------------


class LoadGenerator:
    """The clients of one scenario against one server, spread over ``workers`` processes.

    ``expect_hello``: the server greets an authenticated socket with a ``hello``
    frame (the hub); a connection counts as established only once it arrived.
    ``reference_style`` adds ``content.sent_at`` to messages, as the reference's
    frame format has it.
    """

    def __init__(
        self,
        *,
        url: str,
        clients: list[ClientSpec],
        workers: int,
        expect_hello: bool,
        reference_style: bool = False,
    ) -> None:
        self.url = url
        senders = sum(1 for spec in clients if spec.sends)
        ordinal = iter(range(senders))
        self.clients = clients = [
            dataclasses.replace(spec, phase=next(ordinal) / senders) if spec.sends else spec for spec in clients
        ]
        self.reference_style = reference_style
        context = multiprocessing.get_context("spawn")
        count = max(1, min(workers, len(clients)))
        # Message ids double as the hub's idempotency keys (client_id): a run
        # reusing an earlier run's ids would get the first answer back and no broadcast.
        run = secrets.token_hex(4)
        self._pipes = []
        self._processes = []
        for index in range(count):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_worker_main,
                args=(_WorkerConfig(run, index, url, clients[index::count], expect_hello), child_end),
                daemon=True,
                name=f"bench-loadgen-{index}",
            )
            process.start()
            self._pipes.append(parent_end)
            self._processes.append(process)
        self.members: Counter[str] = Counter()

    def _all(self, command: str, **arguments: Any) -> list[dict[str, Any]]:
        for pipe in self._pipes:
            pipe.send((command, arguments))
        replies = [pipe.recv() for pipe in self._pipes]
        for reply in replies:
            if "failed" in reply:
                raise RuntimeError(f"a load generator worker failed in {command!r}:\n{reply['failed']}")
        return replies

    def connect(self, *, within: float = 600.0) -> dict[str, Any]:
        """Open every socket; those not attempted within ``within`` seconds fail as ``deadline``."""
        replies = self._all("connect", deadline=time.time() + within)
        failures: Counter[str] = Counter()
        retried: Counter[str] = Counter()
        for reply in replies:
            failures.update(reply["failures"])
            retried.update(reply["retried"])
        return {
            "connected": sum(reply["connected"] for reply in replies),
            "failures": dict(failures),
            "retried": dict(retried),
            "seconds": round(max(reply["seconds"] for reply in replies), 2),
        }

    def join(self) -> dict[str, Any]:
        replies = self._all("join")
        failures: Counter[str] = Counter()
        self.members = Counter()
        for reply in replies:
            self.members.update(reply["joined"])
            failures.update(reply["failures"])
        return {"joined": sum(self.members.values()), "rooms": len(self.members), "failures": dict(failures)}

    def step(self, *, number: int, target_rate: float, duration: float, drain: float = 2.0) -> StepResult:
        """Send ``target_rate`` messages per second in total, shared evenly by the
        senders, for ``duration`` seconds; report ``drain`` seconds after the last send."""
        senders = sum(1 for spec in self.clients if spec.sends and spec.rooms)
        rate_per_sender = target_rate / senders if senders else 0.0
        start_at = time.time() + 0.5
        replies = self._all(
            "step",
            step=number,
            start_at=start_at,
            duration=duration,
            rate_per_sender=rate_per_sender,
            drain=drain,
            reference_style=self.reference_style,
        )
        result = StepResult(target_rate=target_rate, duration=duration)
        sent: dict[str, str] = {}
        counts: Counter[str] = Counter()
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        for reply in replies:
            sent.update(reply["sent"])
            counts.update(reply["counts"])
            latencies.extend(reply["latencies"])
            errors.update(reply["errors"])
            result.late += reply["late"]
        result.sent = len(sent)
        for message_id, room in sent.items():
            members = self.members[room]
            received = counts.get(message_id, 0)
            result.expected += members
            result.lost += max(0, members - received)
            if received < members and len(result.short_sample) < SHORT_SAMPLE:
                result.short_sample.append([message_id, room, received, members])
            result.duplicated += max(0, received - members)
        result.delivered = sum(counts.values())
        latencies.sort()
        result.p50_ms = percentile(latencies, 0.50)
        result.p95_ms = percentile(latencies, 0.95)
        result.p99_ms = percentile(latencies, 0.99)
        result.max_ms = round(latencies[-1], 2) if latencies else 0.0
        result.errors = dict(errors)
        return result

    def hold(self, seconds: float) -> int:
        """Keep every socket open (pinging) for ``seconds``; returns how many are still open."""
        return sum(reply["open"] for reply in self._all("hold", seconds=seconds))

    def close(self) -> None:
        """Close the sockets and stop the workers; a worker that does not answer
        (still busy with an interrupted phase) is terminated."""
        try:
            for pipe in self._pipes:
                pipe.send(("close", {}))
            for pipe in self._pipes:
                if pipe.poll(CLOSE_TIMEOUT):
                    pipe.recv()
        except (OSError, EOFError):
            pass
        finally:
            for process in self._processes:
                process.join(timeout=10)
                if process.is_alive():
                    process.terminate()
                    process.join(timeout=5)

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

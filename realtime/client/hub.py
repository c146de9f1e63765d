"""``HubClient``: a reconnecting asyncio client for ``/ws/``.

It owns the client side of docs/protocol.md: header authentication, the
``hello`` handshake, heartbeats (``ping`` every ``heartbeat_interval``), the
``auth`` frame that extends a session before its access token expires,
request/answer correlation by ``id``, and reconnection with exponential
backoff and full jitter (``backoff.py``). Close codes decide what happens next:
4401 fetches a new token first, 4403 stops the client (a configuration error),
4429 and 4430 wait longer, anything else (1000, 1011, 4408, 4413, 4500, a lost
TCP connection) retries with backoff.

Rooms survive reconnects: the client remembers every joined room and the last
``chat.message`` seq it handed to the application, re-sends ``room.join`` with
``last_seq`` on each new socket, and drops any message whose seq it already
delivered, so the application sees each message once and in seq order even
though the server replays what was missed. When the server says the history
is incomplete (``recovered: false``), the application is told with a
``client.resumed`` frame listing the missing ranges.

What the frames mean is the server's business (chat/handlers.py,
docs/protocol.md); this module knows only the envelope, the ``room.join``
answer and ``chat.message``'s seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from realtime.protocol import CloseCode, ErrorCode

from .backoff import BackoffPolicy
from .tokens import AuthenticationFailed, TokenProvider, hub_url

logger = logging.getLogger(__name__)

# Frames the client itself adds to ``events()``; the server never sends a "client." type.
CLIENT_CONNECTED = "client.connected"
CLIENT_DISCONNECTED = "client.disconnected"
CLIENT_RESUMED = "client.resumed"
CLIENT_ROOM_LOST = "client.room_lost"

# A socket that never says hello is not a working hub connection.
_HELLO_TIMEOUT = 10.0
# Send the next ping this fraction of heartbeat_interval after the last: the
# server's timers fire up to a second late, but the network may be slow too.
_HEARTBEAT_FRACTION = 0.75
# After a failed token refresh on an open socket, try again this much later
# (the socket keeps working until expires_at; 4401 follows if all tries fail).
_REFRESH_RETRY = 5.0
_THROTTLE_CODES = {CloseCode.TOO_MANY_CONNECTIONS, CloseCode.RATE_LIMIT_ABUSE}


class HubError(Exception):
    """The server answered a request with an ``error`` frame."""

    def __init__(
        self, code: str, message: str, details: dict[str, Any] | None = None, retry_after: float | None = None
    ):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}
        self.retry_after = retry_after


class ConnectionLost(Exception):
    """The socket closed before the answer arrived; the request may or may not have been processed."""


class HubClosed(Exception):
    """The client stopped: ``close()`` was called, or the server refused it for good
    (``code`` 4403), or the credentials were refused."""

    def __init__(self, reason: str, code: int | None = None):
        super().__init__(reason if code is None else f"{reason} (close code {code})")
        self.reason = reason
        self.code = code


@dataclass
class _Room:
    last_seq: int | None = None


@dataclass
class _Pending:
    future: asyncio.Future[dict[str, Any]]
    type: str
    room: str | None
    content: dict[str, Any] = field(default_factory=dict)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class HubClient:
    """One logical session with the hub, spread over as many sockets as it takes.

    ``url`` is the server (``http://host:port``) or the endpoint (``ws://host:port/ws/``).
    ``origin``, when given, is sent as the ``Origin`` header, as a browser page on
    that origin would (the server then checks it against its allowlist).
    Use as ``async with HubClient(...) as client:`` (waits for the first
    connection) or call ``start()`` and ``close()``."""

    def __init__(
        self,
        url: str,
        *,
        token_provider: TokenProvider,
        backoff: BackoffPolicy | None = None,
        request_timeout: float = 10.0,
        send_timeout: float = 60.0,
        open_timeout: float = 10.0,
        refresh_margin: float = 60.0,
        max_buffered_events: int = 10_000,
        origin: str | None = None,
    ):
        self.url = hub_url(url)
        self._origin = origin
        self._token_provider = token_provider
        self._backoff = backoff or BackoffPolicy()
        self._request_timeout = request_timeout
        self._send_timeout = send_timeout
        self._open_timeout = open_timeout
        self._refresh_margin = refresh_margin
        self._rooms: dict[str, _Room] = {}
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        # Bounded: when the application stops reading, the client stops reading
        # the socket, and the server's slow-consumer limit (4413) takes over.
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_buffered_events)
        self._held: dict[str, Any] | None = None
        self._connected = asyncio.Event()
        self._done = asyncio.Event()
        self._failure: HubClosed | None = None
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self.hello: dict[str, Any] | None = None
        # Sockets that reached hello since start(): 1 + the reconnects.
        self.sessions = 0

    # --- Lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> HubClient:
        self.start()
        try:
            await self.wait_connected(self._open_timeout + _HELLO_TIMEOUT)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="hub-client")

    async def close(self) -> None:
        """Close the socket and stop reconnecting. ``events()`` ends; waiting requests raise ``HubClosed``."""
        runner, self._runner = self._runner, None
        if runner is not None and not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        self._finish(None)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until a socket is authenticated and every tracked room rejoined."""
        async with asyncio.timeout(timeout):
            await self._ready()

    def last_seq(self, room: str | int) -> int | None:
        """The seq of the last ``chat.message`` of ``room`` handed to the application."""
        state = self._rooms.get(str(room))
        return state.last_seq if state else None

    @property
    def rooms(self) -> dict[str, int | None]:
        return {room: state.last_seq for room, state in self._rooms.items()}

    # --- Requests -------------------------------------------------------------------------

    async def request(
        self,
        message_type: str,
        *,
        room: str | int | None = None,
        content: dict[str, Any] | None = None,
        timeout: float | None = None,
        retry: bool = False,
    ) -> dict[str, Any]:
        """Send one frame with a fresh ``id`` and return the answer frame (``ack`` or typed reply).

        Raises ``HubError`` for an ``error`` answer, ``TimeoutError`` after
        ``timeout`` seconds (waiting for a connection included), ``HubClosed``
        when the client stops. When the socket drops before the answer,
        ``retry`` sends the frame again on the next socket (only for frames
        the server handles idempotently); otherwise ``ConnectionLost``."""
        room = None if room is None else str(room)
        async with asyncio.timeout(timeout if timeout is not None else self._request_timeout):
            while True:
                ws = await self._ready()
                try:
                    return await self._call(ws, message_type, room=room, content=content or {})
                except ConnectionLost:
                    if not retry:
                        raise

    async def ping(self) -> dict[str, Any]:
        return (await self.request("ping"))["content"]

    async def join(self, room: str | int, *, last_seq: int | None = None) -> dict[str, Any]:
        """Join ``room`` and follow it across reconnects. With ``last_seq``, every
        message after it is replayed (and ``client.resumed`` says whether the
        history was complete). Returns the ack's content."""
        room = str(room)
        state = self._rooms.setdefault(room, _Room())
        if last_seq is not None:
            state.last_seq = last_seq
        try:
            answer = await self.request("room.join", room=room, content=self._join_content(state), retry=True)
        except HubError:
            self._rooms.pop(room, None)
            raise
        return answer["content"]

    async def leave(self, room: str | int) -> dict[str, Any]:
        """Leave the room's membership; the client stops following it."""
        room = str(room)
        self._rooms.pop(room, None)
        return (await self.request("room.leave", room=room))["content"]

    async def send_message(
        self,
        room: str | int,
        body: str,
        *,
        client_id: str | None = None,
        reply_to_seq: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Post a message; returns the ack's content ({seq, message_id, created}).

        The same ``client_id`` (generated when not given) is re-sent on every
        new socket until an answer arrives, so a message whose ack was lost is
        stored once: the server answers the resend with the first ack."""
        content: dict[str, Any] = {"client_id": client_id or uuid.uuid4().hex, "body": body}
        if reply_to_seq is not None:
            content["reply_to_seq"] = reply_to_seq
        answer = await self.request(
            "chat.message",
            room=room,
            content=content,
            timeout=timeout if timeout is not None else self._send_timeout,
            retry=True,
        )
        return answer["content"]

    async def history(
        self,
        room: str | int,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """A page of stored messages: {messages, has_more}."""
        content = {
            key: value
            for key, value in (("before_seq", before_seq), ("after_seq", after_seq), ("limit", limit))
            if value is not None
        }
        return (await self.request("chat.history", room=room, content=content, retry=True))["content"]

    # --- Events ---------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Server frames that answer no request (``chat.message``, ``presence``,
        ``system``, id-less ``error`` …) and the client's own ``client.*`` frames,
        in arrival order. Ends after ``close()``; raises ``HubClosed`` when the
        server or the credentials stopped the client."""
        while True:
            if self._held is not None:
                frame, self._held = self._held, None
                yield frame
                continue
            if not self._events.empty():
                yield self._events.get_nowait()
                continue
            if self._done.is_set():
                if self._failure is not None:
                    raise self._failure
                return
            getter = asyncio.ensure_future(self._events.get())
            stopper = asyncio.ensure_future(self._done.wait())
            try:
                await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                # Cancelled (a reader's timeout) just as a frame was taken: keep it
                # for the next reader rather than lose it.
                if getter.done() and not getter.cancelled():
                    self._held = getter.result()
                raise
            finally:
                stopper.cancel()
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                yield getter.result()

    # --- Internals: the connection loop ------------------------------------------------------

    def _headers(self, token: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}"}
        if self._origin is not None:
            headers["Origin"] = self._origin
        return headers

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        refused_in_a_row = 0
        force_token = False
        while True:
            started: float | None = None
            code: int | None = None
            reason = ""
            try:
                token = await self._token_provider(force=force_token)
                force_token = False
                async with connect(
                    self.url,
                    additional_headers=self._headers(token),
                    open_timeout=self._open_timeout,
                    close_timeout=2,
                    max_size=None,
                ) as ws:
                    try:
                        hello = await self._handshake(ws)
                        started = loop.time()
                        await self._session(ws, hello)
                    finally:
                        code, reason = ws.close_code, ws.close_reason or ""
            except AuthenticationFailed as exc:
                self._finish(HubClosed(f"credentials refused: {exc}"))
                return
            except InvalidURI as exc:
                self._finish(HubClosed(f"invalid hub URL: {exc}"))
                return
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, ConnectionLost) as exc:
                # Transient: server down or restarting, network gone, proxy trouble.
                reason = reason or type(exc).__name__
                logger.info("hub connection failed: %s", exc)
            except Exception as exc:
                # Whatever else broke this socket (a frame that is not JSON, a
                # server speaking another protocol) must not end the client
                # silently: log it and reconnect with backoff like any failure.
                reason = reason or type(exc).__name__
                logger.exception("hub session failed")

            if code == CloseCode.FORBIDDEN_ORIGIN:
                self._finish(HubClosed("the server refused this client's origin", code))
                return
            if started is not None and loop.time() - started >= self._backoff.stable_after:
                attempt = 0
            if code == CloseCode.UNAUTHENTICATED:
                force_token = True
                refused_in_a_row += 1
            else:
                refused_in_a_row = 0
            if code == CloseCode.UNAUTHENTICATED and refused_in_a_row == 1:
                # The token expired or was revoked: a new one fixes it at once.
                delay = 0.0
            else:
                delay = self._backoff.delay(attempt, throttled=code in _THROTTLE_CODES)
                attempt += 1
            await self._emit(
                {"type": CLIENT_DISCONNECTED, "content": {"code": code, "reason": reason, "retry_in": round(delay, 3)}}
            )
            await asyncio.sleep(delay)

    async def _handshake(self, ws: ClientConnection) -> dict[str, Any]:
        async with asyncio.timeout(_HELLO_TIMEOUT):
            frame = json.loads(await ws.recv())
        if frame.get("type") != "hello":
            await ws.close()
            raise ConnectionLost(f"expected hello, got {frame.get('type')!r}")
        return frame

    async def _session(self, ws: ClientConnection, hello: dict[str, Any]) -> None:
        self.hello = hello
        self._ws = ws
        reader = asyncio.create_task(self._read(ws), name="hub-client-reader")
        helpers: list[asyncio.Task[None]] = []
        try:
            await self._resume(ws)
            self.sessions += 1
            self._connected.set()
            await self._emit({"type": CLIENT_CONNECTED, "content": hello["content"]})
            helpers.append(asyncio.create_task(self._heartbeat(ws, hello), name="hub-client-heartbeat"))
            helpers.append(asyncio.create_task(self._refresh(ws, hello), name="hub-client-refresh"))
            await reader
        finally:
            self._connected.clear()
            self._ws = None
            for task in [reader, *helpers]:
                task.cancel()
            # Their outcome no longer matters: the socket is gone.
            await asyncio.gather(reader, *helpers, return_exceptions=True)
            self._fail_pending(ConnectionLost("the connection closed before the answer arrived"))

    async def _resume(self, ws: ClientConnection) -> None:
        """Rejoin every followed room, asking for what was missed since its last seq."""
        rooms = list(self._rooms.items())
        rejoins = (self._rejoin(ws, room, state) for room, state in rooms)
        answers = await asyncio.gather(*rejoins, return_exceptions=True)
        for (room, _state), answer in zip(rooms, answers, strict=True):
            if isinstance(answer, HubError) and answer.code != ErrorCode.INTERNAL:
                # Banned, kicked from a private room, room deleted: stop following it.
                self._rooms.pop(room, None)
                lost = {"code": answer.code, "message": answer.message}
                await self._emit({"type": CLIENT_ROOM_LOST, "room": room, "content": lost})
            elif isinstance(answer, BaseException):
                await ws.close()
                raise ConnectionLost(f"rejoining room {room} failed: {answer!r}") from answer

    async def _rejoin(self, ws: ClientConnection, room: str, state: _Room) -> dict[str, Any]:
        while True:
            try:
                async with asyncio.timeout(self._request_timeout):
                    return await self._call(ws, "room.join", room=room, content=self._join_content(state))
            except HubError as exc:
                # Many rooms rejoined at once exceed the per-socket frame rate:
                # wait as told, the room is not lost.
                if exc.code != ErrorCode.RATE_LIMITED:
                    raise
                await asyncio.sleep(exc.retry_after or 1.0)

    async def _heartbeat(self, ws: ClientConnection, hello: dict[str, Any]) -> None:
        interval = float(hello["content"].get("heartbeat_interval") or 30)
        while True:
            await asyncio.sleep(interval * _HEARTBEAT_FRACTION)
            try:
                async with asyncio.timeout(max(interval, self._request_timeout)):
                    await self._call(ws, "ping")
            except TimeoutError:
                # The socket looks open but the server stopped answering: start over.
                logger.info("hub did not answer ping; reconnecting")
                await ws.close()
                return

    async def _refresh(self, ws: ClientConnection, hello: dict[str, Any]) -> None:
        """Send a fresh access token before the socket's ``expires_at``."""
        loop = asyncio.get_running_loop()
        # Measured on the server's clock (expires_at against the frame's
        # timestamp), so a skewed local clock does not matter.
        expires_at = _parse_time(hello["content"].get("expires_at"))
        server_at = _parse_time(hello.get("timestamp"))
        local_at = loop.time()
        delay: float | None = None
        while expires_at is not None and server_at is not None:
            if delay is None:
                remaining = (expires_at - server_at).total_seconds() - (loop.time() - local_at)
                delay = max(0.0, remaining - min(self._refresh_margin, remaining / 3))
            await asyncio.sleep(delay)
            try:
                token = await self._token_provider(force=True)
                async with asyncio.timeout(self._request_timeout):
                    answer = await self._call(ws, "auth", extra={"token": token})
            except (OSError, TimeoutError, AuthenticationFailed, HubError) as exc:
                # The socket works until expires_at; past it the server closes
                # with 4401 and the reconnect logs in anew.
                logger.warning("access token refresh failed: %s", exc)
                delay = _REFRESH_RETRY
                continue
            expires_at = _parse_time(answer["content"].get("expires_at"))
            server_at = _parse_time(answer.get("timestamp"))
            local_at = loop.time()
            delay = None

    async def _call(
        self,
        ws: ClientConnection,
        message_type: str,
        *,
        room: str | None = None,
        content: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        frame_id = f"c{next(self._ids)}"
        frame: dict[str, Any] = {"type": message_type, "id": frame_id}
        if room is not None:
            frame["room"] = room
        if content:
            frame["content"] = content
        frame.update(extra or {})
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = _Pending(future=future, type=message_type, room=room, content=content or {})
        try:
            try:
                await ws.send(json.dumps(frame, separators=(",", ":")))
            except ConnectionClosed as exc:
                raise ConnectionLost(str(exc)) from exc
            answer = await future
        finally:
            self._pending.pop(frame_id, None)
        if answer.get("type") == "error":
            raise HubError(
                code=answer.get("code", "internal"),
                message=answer.get("message", ""),
                details=answer.get("content"),
                retry_after=answer.get("retry_after"),
            )
        return answer

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for text in ws:
                try:
                    frame = json.loads(text)
                except ValueError:
                    logger.warning("hub sent a frame that is not JSON")
                    continue
                if not isinstance(frame, dict):
                    continue
                await self._route(frame)

    async def _route(self, frame: dict[str, Any]) -> None:
        frame_id = frame.get("id")
        pending = self._pending.get(frame_id) if isinstance(frame_id, str) else None
        if pending is not None:
            if pending.type == "room.join" and frame.get("type") == "ack":
                # Before resolving: the replayed messages that follow the ack
                # must meet the room's updated state.
                await self._joined(pending, frame.get("content") or {})
            if not pending.future.done():
                pending.future.set_result(frame)
            return
        if frame_id is not None:
            # The answer to a request that gave up waiting (timeout, reconnect).
            return
        if frame.get("type") != "chat.message":
            await self._emit(frame)
            return
        state = self._rooms.get(str(frame.get("room")))
        seq = frame.get("seq")
        if state is None or not isinstance(seq, int):
            # A straggler of a room the application left, or a frame without its seq.
            if state is not None:
                await self._emit(frame)
            return
        if state.last_seq is not None and seq <= state.last_seq:
            # Exactly once: the server replayed a message already delivered.
            return
        await self._emit(frame)
        # Only once the application's buffer took it: if the socket drops while
        # the buffer is full, the message is replayed on the next one.
        state.last_seq = seq

    async def _joined(self, pending: _Pending, content: dict[str, Any]) -> None:
        state = self._rooms.get(pending.room or "")
        if state is None:
            return
        server_last = content.get("last_seq")
        if "last_seq" not in pending.content:
            # No replay was asked for: the application starts from the room's present.
            if isinstance(server_last, int) and (state.last_seq is None or state.last_seq < server_last):
                state.last_seq = server_last
            return
        await self._emit(
            {
                "type": CLIENT_RESUMED,
                "room": pending.room,
                "content": {
                    "from_seq": pending.content["last_seq"],
                    "last_seq": server_last,
                    "recovered": content.get("recovered", True),
                    "missing": content.get("missing", []),
                },
            }
        )

    async def _emit(self, frame: dict[str, Any]) -> None:
        await self._events.put(frame)

    async def _ready(self) -> ClientConnection:
        while True:
            if self._done.is_set():
                raise self._failure or HubClosed("the client is closed")
            ws = self._ws
            if self._connected.is_set() and ws is not None:
                return ws
            waiter = asyncio.ensure_future(self._connected.wait())
            stopper = asyncio.ensure_future(self._done.wait())
            try:
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stopper.cancel()

    @staticmethod
    def _join_content(state: _Room) -> dict[str, Any]:
        return {} if state.last_seq is None else {"last_seq": state.last_seq}

    def _fail_pending(self, exc: Exception) -> None:
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(exc)

    def _finish(self, failure: HubClosed | None) -> None:
        if self._done.is_set():
            return
        self._failure = failure
        self._connected.clear()
        self._done.set()
        self._fail_pending(failure or HubClosed("the client is closed"))

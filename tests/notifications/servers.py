"""Local services on 127.0.0.1 that the delivery tests send to.

- ``RecordingHTTPServer(respond)``: a threaded HTTP/1.1 server that records
  every request and answers with ``respond(request)`` unless told otherwise
  for the next requests: ``fail(n, status)``, ``throttle(n, retry_after)``,
  ``hang(n)`` (hold the request until ``release()`` or the server stops,
  then drop the connection without an answer: a client timeout, or a client
  killed mid-call). ``requests`` holds every request received, ``accepted``
  those answered with a 2xx, ``dropped`` those never answered.
- ``TwilioSms``: a ``RecordingHTTPServer`` playing Twilio's Messages API.
- ``SmtpServer``: aiosmtpd's ``Controller`` with a handler that records each
  message and can refuse the next recipients with a code.
- ``SilentTcpServer``: accepts connections and never says a word (an SMTP
  server that hangs before its greeting).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import email
import email.policy
import json
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller

from spotify_agent.processes import free_port

# A hung request is held at most this long if the test never releases it.
HANG_SECONDS = 30


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return {key: values[0] for key, values in parse_qs(self.body.decode()).items()}

    def json(self) -> Any:
        return json.loads(self.body)

    def basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("authorization", "")
        if not value.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | dict | list = b""

    def encoded(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()


_HANG = object()


class RecordingHTTPServer:
    """Records requests and answers them as told. Use as a context manager."""

    def __init__(self, respond: Callable[[Request], Response] | None = None) -> None:
        self.respond = respond or (lambda request: Response(200, {"Content-Type": "application/json"}, {}))
        self.requests: list[Request] = []
        self.accepted: list[Request] = []
        self.dropped: list[Request] = []
        self._script: collections.deque[Any] = collections.deque()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.received = threading.Condition(self._lock)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    method=self.command,
                    path=self.path,
                    headers={key.lower(): value for key, value in self.headers.items()},
                    body=self.rfile.read(length),
                )
                answer = server._answer(request)
                if answer is _HANG:
                    server._release.wait(HANG_SECONDS)
                    with server._lock:
                        server.dropped.append(request)
                    self.close_connection = True
                    # Close without a word: the client sees a reset or its timeout.
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                body = answer.encoded()
                # Recorded before the answer goes out: a client that has read it
                # (and a test that then looks) must find the request recorded.
                accepted = 200 <= answer.status < 300
                if accepted:
                    with server._lock:
                        server.accepted.append(request)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    self.wfile.flush()
                except OSError:
                    with server._lock:
                        if accepted:
                            server.accepted.remove(request)
                        server.dropped.append(request)

            do_POST = do_GET = do_PUT = do_DELETE = _serve

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # --- Lifecycle ------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RecordingHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> RecordingHTTPServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- Behaviour ------------------------------------------------------------

    def _answer(self, request: Request) -> Response | object:
        with self._lock:
            self.requests.append(request)
            self.received.notify_all()
            scripted = self._script.popleft() if self._script else None
        return scripted if scripted is not None else self.respond(request)

    def then(self, *answers: Response | object) -> None:
        """Answer the next requests with ``answers``, in order, then as ``respond`` does."""
        with self._lock:
            self._script.extend(answers)

    def fail(self, n: int = 1, status: int = 500, body: bytes | dict = b"") -> None:
        self.then(*[Response(status, {"Content-Type": "application/json"}, body) for _ in range(n)])

    def throttle(self, n: int = 1, retry_after: str | int = 30) -> None:
        self.then(
            *[Response(429, {"Retry-After": str(retry_after)}, {"message": "Too many requests"}) for _ in range(n)]
        )

    def hang(self, n: int = 1) -> None:
        """Hold the next ``n`` requests unanswered until ``release()``, then drop them."""
        self._release.clear()
        self.then(*[_HANG for _ in range(n)])

    def release(self) -> None:
        self._release.set()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[Request]:
        with self._lock:
            if not self.received.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"{len(self.requests)} requests arrived, expected {count}")
            return list(self.requests)


class TwilioSms(RecordingHTTPServer):
    """Twilio's Messages API: ``POST /2010-04-01/Accounts/{sid}/Messages.json``."""

    def __init__(self, *, account_sid: str = "AC" + "1" * 32, auth_token: str = "secret-token") -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        super().__init__(self._messages)

    def _messages(self, request: Request) -> Response:
        if request.path != f"/2010-04-01/Accounts/{self.account_sid}/Messages.json":
            return Response(404, {"Content-Type": "application/json"}, {"code": 20404, "message": "Not found"})
        if request.basic_auth() != (self.account_sid, self.auth_token):
            return Response(401, {"Content-Type": "application/json"}, {"code": 20003, "message": "Authenticate"})
        form = request.form()
        if not form.get("To", "").startswith("+"):
            return Response(
                400,
                {"Content-Type": "application/json"},
                {"code": 21211, "message": f"The 'To' number {form.get('To')} is not a valid phone number."},
            )
        sid = "SM" + uuid.uuid4().hex
        return Response(201, {"Content-Type": "application/json"}, {"sid": sid, "status": "queued", **form})

    def env(self) -> dict[str, str]:
        """Settings that point the SMS provider here."""
        return {
            "SMS_API_BASE_URL": self.url,
            "SMS_ACCOUNT_SID": self.account_sid,
            "SMS_AUTH_TOKEN": self.auth_token,
            "SMS_FROM": "+15005550006",
        }


class _RecordingHandler:
    """aiosmtpd handler: records messages; refuses the next recipients when told."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.sessions = 0
        self.refusals: collections.deque[str] = collections.deque()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refusals:
            return self.refusals.popleft()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted for delivery"


class SmtpServer:
    """A real SMTP server (aiosmtpd) on 127.0.0.1. Use as a context manager."""

    def __init__(self) -> None:
        self.handler = _RecordingHandler()
        self.port = free_port()
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        return self.handler.messages

    def refuse(self, n: int = 1, reply: str = "550 5.1.1 No such user here") -> None:
        """Refuse the next ``n`` recipients with ``reply``."""
        self.handler.refusals.extend([reply] * n)

    def env(self) -> dict[str, str]:
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(self.port),
        }

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()


class SilentTcpServer:
    """Accepts connections and never answers (nor closes) until stopped."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self._conns.append(conn)

    def __enter__(self) -> SilentTcpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._conns:
            conn.close()
        self._sock.close()


def routing_rules_seed() -> None:
    """The default ``RoutingRule`` rows (migration 0002). A transactional test's
    flush empties the table, so tests that route seed it again."""
    from importlib import import_module

    from django.apps import apps

    import_module("notifications.migrations.0002_routing_rules").seed(apps, None)

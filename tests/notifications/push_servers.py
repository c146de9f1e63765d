"""Local push services on 127.0.0.1 for the push providers' tests.

- ``WebPushService``: a Web Push endpoint (HTTP/1.1) that checks the VAPID
  ``Authorization`` (the JWT verified against the expected public key), the
  ``TTL``/``Urgency``/``Content-Encoding`` headers, and decrypts the aes128gcm
  body with the subscriber's private key, as a browser would.
- ``FcmService``: Google's OAuth token endpoint (verifies the service
  account's RS256 assertion) and FCM HTTP v1's ``messages:send`` (checks the
  bearer token it issued).
- ``ApnsService``: APNs over HTTP/2 with TLS and ALPN ``h2`` (the ``h2``
  library on a TLS socket, a self-signed certificate made here), checking the
  ES256 provider token, the ``apns-*`` headers and the JSON body.

Each records what it received (``requests``) and anything that did not meet
the protocol (``problems``: a test asserts it is empty), and answers per
target as told with ``behave(name, ...)``: a status with headers and body, or
``hang`` (no answer until the server stops, for client timeouts).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import threading
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.events
import http_ece
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

# How long a "hang" holds a request at most when the test forgets to stop the server.
HANG_SECONDS = 10


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang: bool = False
    # Answer this way this many times, then as the default (None: always).
    times: int | None = None


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes
    # What the service made of it: the decrypted payload, the parsed JSON, the JWT claims.
    payload: Any = None
    claims: dict[str, Any] = field(default_factory=dict)
    status: int = 0


class _Behaviour:
    """Per-target answers and the record of what came in."""

    def __init__(self, default: Answer) -> None:
        self.default = default
        self.answers: dict[str, Answer] = {}
        self.requests: list[Recorded] = []
        self.problems: list[str] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def behave(self, name: str, status: int = 200, *, headers=None, body: Any = b"", hang=False, times=None) -> None:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.answers[name] = Answer(status, dict(headers or {}), body, hang, times)

    def answer_for(self, name: str) -> Answer:
        with self.lock:
            answer = self.answers.get(name)
            if answer is None:
                return self.default
            if answer.times is not None:
                answer.times -= 1
                if answer.times <= 0:
                    del self.answers[name]
            return answer

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    def hang(self) -> None:
        self.stopping.wait(HANG_SECONDS)


# --- HTTP/1.1 -----------------------------------------------------------------------


class _HTTPService(_Behaviour, ABC):
    """A threaded http.server whose POSTs go to ``handle(path, headers, body)``."""

    def __init__(self, default: Answer) -> None:
        super().__init__(default)
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                answer = service.handle(self.path, headers, body)
                if answer.hang:
                    service.hang()
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self):
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    @abstractmethod
    def handle(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """The answer to one request (each service plays its own protocol)."""


@dataclass
class Subscriber:
    """A browser's push subscription: its key pair and auth secret."""

    name: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @property
    def p256dh(self) -> str:
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(raw)

    @property
    def keys(self) -> dict[str, str]:
        return {"p256dh": self.p256dh, "auth": b64url(self.auth)}


class WebPushService(_HTTPService):
    def __init__(self, *, vapid_public_key: str, subject: str) -> None:
        super().__init__(Answer(201, {"Location": ""}))
        self.vapid_public_key = vapid_public_key
        self.subject = subject
        self.subscribers: dict[str, Subscriber] = {}

    def subscribe(self, name: str) -> Subscriber:
        subscriber = Subscriber(
            name=name,
            endpoint=f"{self.url}/push/{name}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth=os.urandom(16),
        )
        self.subscribers[name] = subscriber
        return subscriber

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        record = Recorded(path=path, headers=headers, body=body)
        self.requests.append(record)
        name = path.rsplit("/", 1)[-1]
        subscriber = self.subscribers.get(name)
        if subscriber is None:
            self.problem(f"{path}: no such subscription")
            return Answer(404)
        record.claims = self._check_vapid(headers.get("authorization", ""))
        for header in ("ttl", "urgency"):
            if header not in headers:
                self.problem(f"{path}: no {header} header")
        if headers.get("content-encoding") != "aes128gcm":
            self.problem(f"{path}: content-encoding {headers.get('content-encoding')!r}")
        if len(body) > 4096:
            self.problem(f"{path}: {len(body)}-byte body over the 4096 bytes a push service must accept")
        try:
            plaintext = http_ece.decrypt(
                body, private_key=subscriber.private_key, auth_secret=subscriber.auth, version="aes128gcm"
            )
            record.payload = json.loads(plaintext)
        except Exception as exc:
            self.problem(f"{path}: cannot decrypt: {exc!r}")
            return Answer(400)
        answer = self.answer_for(name)
        if answer.status == 201 and not answer.hang:
            answer = Answer(201, {"Location": f"{self.url}/message/{uuid.uuid4()}"})
        record.status = answer.status
        return answer

    def _check_vapid(self, authorization: str) -> dict[str, Any]:
        scheme, _, params = authorization.partition(" ")
        parts = dict(part.split("=", 1) for part in params.split(",") if "=" in part)
        if scheme != "vapid" or "t" not in parts or "k" not in parts:
            self.problem(f"Authorization is not 'vapid t=...,k=...': {authorization!r}")
            return {}
        if parts["k"] != self.vapid_public_key:
            self.problem(f"VAPID key {parts['k']!r} is not the configured one")
            return {}
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(parts["k"]))
        try:
            claims = jwt.decode(parts["t"], public_key, algorithms=["ES256"], audience=self.url)
        except jwt.PyJWTError as exc:
            self.problem(f"VAPID token: {exc!r}")
            return {}
        if claims.get("sub") != self.subject:
            self.problem(f"VAPID sub {claims.get('sub')!r}")
        if not time.time() < claims.get("exp", 0) <= time.time() + 24 * 3600:
            self.problem(f"VAPID exp {claims.get('exp')!r} not within 24 hours (RFC 8292)")
        return claims


class FcmService(_HTTPService):
    """The OAuth token endpoint at ``/token`` and FCM at ``/v1/projects/{id}/messages:send``."""

    def __init__(self, *, project_id: str, tmp_path: Path, token_lifetime: int = 3600) -> None:
        super().__init__(Answer(200))
        self.project_id = project_id
        self.token_lifetime = token_lifetime
        self.client_email = f"push@{project_id}.iam.gserviceaccount.com"
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.service_account_file = tmp_path / "service-account.json"
        self.issued: list[str] = []
        self.token_requests = 0

    def start(self):
        super().start()
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.service_account_file.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": self.project_id,
                    "private_key_id": "key-1",
                    "private_key": pem,
                    "client_email": self.client_email,
                    "client_id": "1",
                    "token_uri": f"{self.url}/token",
                }
            )
        )
        return self

    def revoke_tokens(self) -> None:
        self.issued.clear()

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if path == "/token":
            return self._token(body)
        record = Recorded(path=path, headers=headers, body=body)
        self.requests.append(record)
        if path != f"/v1/projects/{self.project_id}/messages:send":
            self.problem(f"unexpected path {path}")
            return Answer(404, body=b'{"error": {"code": 404, "status": "NOT_FOUND"}}')
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in self.issued:
            return Answer(401, body=b'{"error": {"code": 401, "status": "UNAUTHENTICATED"}}')
        try:
            record.payload = json.loads(body)
            token = record.payload["message"]["token"]
        except (ValueError, KeyError, TypeError) as exc:
            self.problem(f"body is not an FCM v1 message: {exc!r}")
            return Answer(400)
        answer = self.answer_for(token)
        if answer.status == 200 and not answer.hang:
            answer = Answer(
                200, body=json.dumps({"name": f"projects/{self.project_id}/messages/{uuid.uuid4()}"}).encode()
            )
        record.status = answer.status
        return answer

    def _token(self, body: bytes) -> Answer:
        self.token_requests += 1
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            self.problem(f"token grant_type {form.get('grant_type')!r}")
            return Answer(400, body=b'{"error": "unsupported_grant_type"}')
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                self._key.public_key(),
                algorithms=["RS256"],
                # google-auth addresses the assertion to Google's endpoint
                # whatever token_uri it posts it to, as Google expects.
                audience="https://oauth2.googleapis.com/token",
                issuer=self.client_email,
            )
        except jwt.PyJWTError as exc:
            self.problem(f"token assertion: {exc!r}")
            return Answer(400, body=b'{"error": "invalid_grant"}')
        if "https://www.googleapis.com/auth/firebase.messaging" not in claims.get("scope", "").split():
            self.problem(f"token scope {claims.get('scope')!r}")
        token = f"ya29.{uuid.uuid4().hex}"
        self.issued.append(token)
        body = {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        return Answer(200, {"Content-Type": "application/json"}, json.dumps(body).encode())


def fcm_error(status: int, grpc_status: str, error_code: str, message: str, field_: str = "") -> dict[str, Any]:
    """An FCM v1 error body as Google sends it."""
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}
    ]
    if field_:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field_, "description": message}],
            }
        )
    return {"error": {"code": status, "message": message, "status": grpc_status, "details": details}}


# --- HTTP/2 over TLS (APNs) ------------------------------------------------------------


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key: (cert, key) PEM files.
    The cert file doubles as the client's CA bundle."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "apns-cert.pem", directory / "apns-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class ApnsService(_Behaviour):
    """APNs' provider API: ``POST /3/device/{token}`` over HTTP/2 on TLS."""

    def __init__(self, *, tmp_path: Path, team_id: str, key_id: str, topic: str) -> None:
        super().__init__(Answer(200))
        self.team_id, self.key_id, self.topic = team_id, key_id, topic
        # The team's signing key (the .p8 file a developer downloads from Apple).
        self._signing_key = ec.generate_private_key(ec.SECP256R1())
        self.key_file = tmp_path / f"AuthKey_{key_id}.p8"
        self.key_file.write_bytes(
            self._signing_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.ca_file, server_key = self_signed_certificate(tmp_path)
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(self.ca_file, server_key)
        self._tls.set_alpn_protocols(["h2"])
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self.provider_tokens: list[str] = []
        self.connections = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for connection in list(self._connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(HANG_SECONDS)
            connection = self._tls.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            self.problem(f"TLS handshake failed: {exc!r}")
            raw.close()
            return
        self._connections.append(connection)
        self.connections += 1
        if connection.selected_alpn_protocol() != "h2":
            self.problem(f"ALPN chose {connection.selected_alpn_protocol()!r}, not h2")
            connection.close()
            return
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        h2c.initiate_connection()
        connection.sendall(h2c.data_to_send())
        streams: dict[int, dict[str, Any]] = {}
        # Short reads so that an idle kept-alive connection notices the stop.
        connection.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                data = connection.recv(65535)
            except TimeoutError:
                continue
            except (OSError, ssl.SSLError):
                return
            if not data:
                return
            if not self._on_events(h2c, streams, h2c.receive_data(data)):
                connection.close()
                return
            try:
                connection.sendall(h2c.data_to_send())
            except (OSError, ssl.SSLError):
                return

    def _on_events(self, h2c, streams: dict[int, dict[str, Any]], events) -> bool:
        """Answer the requests these events complete; False when the client hung up."""
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                streams[event.stream_id] = {"headers": dict(event.headers), "body": b""}
            elif isinstance(event, h2.events.DataReceived):
                streams[event.stream_id]["body"] += event.data
                h2c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                stream = streams.pop(event.stream_id)
                answer = self._handle(stream["headers"], stream["body"])
                if not answer.hang:
                    headers = [(":status", str(answer.status)), ("apns-id", str(uuid.uuid4()).upper())]
                    headers += list(answer.headers.items())
                    h2c.send_headers(event.stream_id, headers, end_stream=not answer.body)
                    if answer.body:
                        h2c.send_data(event.stream_id, answer.body, end_stream=True)
            elif isinstance(event, h2.events.ConnectionTerminated):
                return False
        return True

    def _handle(self, headers: dict[str, str], body: bytes) -> Answer:
        path = headers.get(":path", "")
        record = Recorded(path=path, headers=headers, body=body)
        self.requests.append(record)
        if headers.get(":method") != "POST" or not path.startswith("/3/device/"):
            self.problem(f"{headers.get(':method')} {path}")
            return Answer(405, body=b'{"reason": "MethodNotAllowed"}')
        device = path.removeprefix("/3/device/")
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme != "bearer":
            self.problem(f"authorization scheme {scheme!r}")
            return Answer(403, body=b'{"reason": "MissingProviderToken"}')
        try:
            header = jwt.get_unverified_header(token)
            record.claims = jwt.decode(token, self._signing_key.public_key(), algorithms=["ES256"])
        except jwt.PyJWTError as exc:
            self.problem(f"provider token: {exc!r}")
            return Answer(403, body=b'{"reason": "InvalidProviderToken"}')
        self.provider_tokens.append(token)
        if header.get("kid") != self.key_id or record.claims.get("iss") != self.team_id:
            self.problem(f"provider token kid/iss {header.get('kid')!r}/{record.claims.get('iss')!r}")
        if abs(time.time() - record.claims.get("iat", 0)) > 3600:
            self.problem(f"provider token iat {record.claims.get('iat')!r} not within the hour")
        if headers.get("apns-topic") != self.topic:
            self.problem(f"apns-topic {headers.get('apns-topic')!r}")
        if headers.get("apns-push-type") != "alert":
            self.problem(f"apns-push-type {headers.get('apns-push-type')!r}")
        if headers.get("apns-priority") not in ("5", "10"):
            self.problem(f"apns-priority {headers.get('apns-priority')!r}")
        if not headers.get("apns-expiration", "").isdigit():
            self.problem(f"apns-expiration {headers.get('apns-expiration')!r}")
        if len(body) > 4096:
            self.problem(f"{len(body)}-byte payload over APNs' 4096")
        try:
            record.payload = json.loads(body)
            if "alert" not in record.payload["aps"]:
                raise KeyError("aps.alert")  # an alert push has one
        except (ValueError, KeyError, TypeError) as exc:
            self.problem(f"payload: {exc!r}")
            return Answer(400, body=b'{"reason": "PayloadEmpty"}')
        answer = self.answer_for(device)
        record.status = answer.status
        return answer

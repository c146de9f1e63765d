"""Mobile push: FCM HTTP v1 for ``fcm`` tokens, APNs over HTTP/2 for ``apns`` ones.

``MobilePushProvider`` sends to each of the user's enabled ``MobileToken``
rows by its platform:

* FCM: ``POST {FCM_BASE_URL}/v1/projects/{FCM_PROJECT_ID}/messages:send`` with
  an OAuth2 access token obtained from the service account in
  ``FCM_SERVICE_ACCOUNT_FILE`` (google-auth; the token is kept until shortly
  before it expires, so one token request serves many sends).
* APNs: ``POST {APNS_BASE_URL}/3/device/{token}`` over HTTP/2 (httpx) with an
  ES256 provider token signed with the ``.p8`` key in ``APNS_KEY_FILE``
  (``kid`` ``APNS_KEY_ID``, ``iss`` ``APNS_TEAM_ID``), renewed every
  ``APNS_TOKEN_LIFETIME`` seconds as Apple asks (between 20 and 60 minutes).

A platform left unconfigured answers a permanent error for its tokens, never a
crash at import. Like every provider it writes no rows: the delivery service
disables the tokens whose error says ``target_gone``. The priority table,
payload fitting and per-target collection are ``notifications.providers.webpush``'s.
docs/operations.md ("Push providers") lists the settings and the error mapping.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import replace
from typing import Any

import httpx
import jwt
import requests
from django.conf import settings
from google.auth import exceptions as google_exceptions
from google.auth.transport.requests import Request as GoogleRequest
from google.oauth2 import service_account

from notifications.constants import Channel, MobilePlatform

from .base import Message, Provider, ProviderError, SendResult, Target, retry_after_seconds
from .webpush import PushPolicy, fit_payload, http_error, push_policy, send_each

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# Both services refuse a notification payload over 4 KB.
FCM_MAX_PAYLOAD = 4096
APNS_MAX_PAYLOAD = 4096
# FCM rejects these data keys (they are its own).
FCM_RESERVED_KEYS = {"from", "notification", "message_type"}
FCM_RESERVED_PREFIXES = ("google", "gcm")


def _string_data(message: Message) -> dict[str, str]:
    """``message.data`` as FCM wants it (string values), with the notification's
    id, priority and category; FCM's reserved keys are left out."""
    data: dict[str, str] = {}
    for raw_key, value in message.data.items():
        key = str(raw_key)
        if key in FCM_RESERVED_KEYS or key.lower().startswith(FCM_RESERVED_PREFIXES):
            continue
        data[key] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    data.update({"id": message.notification_id, "priority": message.priority, "category": message.category})
    return data


class _TimedRequest(GoogleRequest):
    """google-auth's requests transport with our timeout instead of its 120 s."""

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        return super().__call__(url, method, body, headers, timeout=settings.PUSH_HTTP_TIMEOUT, **kwargs)


class MobilePushProvider(Provider):
    """FCM and APNs, one request per token."""

    channel = Channel.MOBILE
    # Apple refuses a provider token older than an hour and one renewed more
    # often than every 20 minutes (TooManyProviderTokenUpdates).
    APNS_TOKEN_LIFETIME: float = 50 * 60

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fcm_credentials: service_account.Credentials | None = None
        self._fcm_source = ""
        self._session = requests.Session()
        self._apns_token = ""
        self._apns_token_at = 0.0
        self._apns_source: tuple = ()
        self._clients: dict[tuple, httpx.Client] = {}

    def targets(self, user) -> list[Target]:
        from notifications.models import MobileToken

        rows = MobileToken.objects.filter(user=user, disabled_at__isnull=True).order_by("id")
        return [Target(address=row.token, ref=row.pk, extra={"platform": row.platform}) for row in rows]

    def send(self, message: Message, targets: list[Target]) -> list[SendResult]:
        policy = push_policy(message.priority)

        def send_one(target: Target) -> SendResult:
            platform = target.extra.get("platform")
            if platform == MobilePlatform.FCM:
                return self._send_fcm(message, target, policy)
            if platform == MobilePlatform.APNS:
                return self._send_apns(message, target, policy)
            raise ProviderError(f"unknown mobile platform {platform!r}", retryable=False, target=target)

        return send_each(targets, send_one)

    # --- HTTP ---------------------------------------------------------------------

    def _client(self, ca_file: str = "") -> httpx.Client:
        """One pooled HTTP/2-capable client per CA setting, kept for the worker's
        life: APNs asks providers to keep their connections open."""
        timeout = settings.PUSH_HTTP_TIMEOUT
        key = (ca_file, timeout)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
                client = httpx.Client(http2=True, verify=verify, timeout=httpx.Timeout(timeout))
                self._clients[key] = client
            return client

    def _post(self, target: Target, url: str, *, content: bytes, headers: dict[str, str], ca_file: str = ""):
        try:
            return self._client(ca_file).post(url, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise ProviderError(f"timed out: {exc!r}", retryable=True, target=target) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(f"connection failed: {exc!r}", retryable=True, target=target) from exc

    # --- FCM ----------------------------------------------------------------------

    def _fcm_token(self, target: Target, *, renew: bool = False) -> str:
        path = getattr(settings, "FCM_SERVICE_ACCOUNT_FILE", "") or ""
        with self._lock:
            if self._fcm_credentials is None or self._fcm_source != path:
                try:
                    self._fcm_credentials = service_account.Credentials.from_service_account_file(
                        path, scopes=[FCM_SCOPE]
                    )
                except (OSError, ValueError) as exc:
                    raise ProviderError(
                        f"FCM_SERVICE_ACCOUNT_FILE is not a usable service account file: {exc}",
                        retryable=False,
                        target=target,
                    ) from exc
                self._fcm_source = path
            credentials = self._fcm_credentials
            if renew or not credentials.valid:
                try:
                    credentials.refresh(_TimedRequest(self._session))
                except google_exceptions.TransportError as exc:
                    raise ProviderError(f"FCM token request failed: {exc}", retryable=True, target=target) from exc
                except google_exceptions.RefreshError as exc:
                    raise ProviderError(
                        f"FCM token request refused: {exc}", retryable=exc.retryable, target=target
                    ) from exc
            return credentials.token

    def _send_fcm(self, message: Message, target: Target, policy: PushPolicy) -> SendResult:
        base = (getattr(settings, "FCM_BASE_URL", "") or "").rstrip("/")
        project = getattr(settings, "FCM_PROJECT_ID", "") or ""
        if not (base and project and getattr(settings, "FCM_SERVICE_ACCOUNT_FILE", "")):
            raise ProviderError(
                "FCM is not configured (set FCM_PROJECT_ID and FCM_SERVICE_ACCOUNT_FILE)",
                retryable=False,
                target=target,
            )

        def build(body: str, with_data: bool) -> dict[str, Any]:
            return {
                "notification": {"title": message.title, "body": body},
                "data": _string_data(message if with_data else replace(message, data={})),
            }

        content = json.loads(fit_payload(build, message.body, FCM_MAX_PAYLOAD))
        expiration = int(time.time()) + policy.ttl
        aps: dict[str, Any] = {"sound": "default"} if policy.high else {}
        body = {
            "message": {
                "token": target.address,
                **content,
                "android": {"priority": "high" if policy.high else "normal", "ttl": f"{policy.ttl}s"},
                "apns": {
                    "headers": {"apns-priority": "10" if policy.high else "5", "apns-expiration": str(expiration)},
                    "payload": {"aps": aps},
                },
            }
        }
        url = f"{base}/v1/projects/{project}/messages:send"
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        for renew in (False, True):
            token = self._fcm_token(target, renew=renew)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=utf-8"}
            response = self._post(target, url, content=payload, headers=headers)
            # A 401 means our access token was revoked or is stale: get a new one, once.
            if response.status_code != 401 or renew:
                break
        if response.status_code == 200:
            try:
                name = str(response.json().get("name", ""))
            except ValueError:
                name = ""
            return SendResult(target=target, provider_message_id=name[:200])
        raise self._fcm_error(response, target)

    @staticmethod
    def _fcm_error(response: httpx.Response, target: Target) -> ProviderError:
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        details = [d for d in error.get("details", []) if isinstance(d, dict)]
        codes = {d.get("errorCode") for d in details}
        fields = {v.get("field") for d in details for v in d.get("fieldViolations", []) if isinstance(v, dict)}
        text = str(error.get("message") or response.text)[:300]
        status = response.status_code
        # UNREGISTERED: the app was uninstalled or the token expired. An
        # INVALID_ARGUMENT about the token itself: it was never valid. Both are
        # for good. Any other 400 is our message's fault, not the token's.
        gone = "UNREGISTERED" in codes or (
            status == 400 and ("message.token" in fields or "registration token" in text.lower())
        )
        code = ",".join(sorted(c for c in codes if c)) or error.get("status", "")
        return http_error(
            status,
            f"{code} {text}".strip(),
            target=target,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            gone=gone,
        )

    # --- APNs ---------------------------------------------------------------------

    def _apns_provider_token(self, target: Target, *, renew: bool = False) -> str:
        key_file = getattr(settings, "APNS_KEY_FILE", "") or ""
        key_id = getattr(settings, "APNS_KEY_ID", "") or ""
        team_id = getattr(settings, "APNS_TEAM_ID", "") or ""
        source = (key_file, key_id, team_id)
        with self._lock:
            fresh = time.monotonic() - self._apns_token_at < self.APNS_TOKEN_LIFETIME
            if self._apns_token and fresh and self._apns_source == source and not renew:
                return self._apns_token
            try:
                with open(key_file, encoding="ascii") as handle:
                    key = handle.read()
                token = jwt.encode(
                    {"iss": team_id, "iat": int(time.time())}, key, algorithm="ES256", headers={"kid": key_id}
                )
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                raise ProviderError(
                    f"APNS_KEY_FILE is not a usable ES256 (.p8) key: {exc}", retryable=False, target=target
                ) from exc
            self._apns_token, self._apns_token_at, self._apns_source = token, time.monotonic(), source
            return token

    def _send_apns(self, message: Message, target: Target, policy: PushPolicy) -> SendResult:
        base = (getattr(settings, "APNS_BASE_URL", "") or "").rstrip("/")
        topic = getattr(settings, "APNS_TOPIC", "") or ""
        required = ("APNS_KEY_FILE", "APNS_KEY_ID", "APNS_TEAM_ID")
        if not (base and topic and all(getattr(settings, name, "") for name in required)):
            raise ProviderError(
                "APNs is not configured (set APNS_KEY_FILE, APNS_KEY_ID, APNS_TEAM_ID and APNS_TOPIC)",
                retryable=False,
                target=target,
            )

        def build(body: str, with_data: bool) -> dict[str, Any]:
            aps: dict[str, Any] = {"alert": {"title": message.title, "body": body}}
            if policy.high:
                aps["sound"] = "default"
            extra = {k: v for k, v in message.data.items() if k != "aps"} if with_data else {}
            return {
                **extra,
                "aps": aps,
                "id": message.notification_id,
                "priority": message.priority,
                "category": message.category,
            }

        payload = fit_payload(build, message.body, APNS_MAX_PAYLOAD)
        url = f"{base}/3/device/{target.address}"
        for renew in (False, True):
            headers = {
                "authorization": f"bearer {self._apns_provider_token(target, renew=renew)}",
                "apns-topic": topic,
                "apns-push-type": "alert",
                "apns-priority": "10" if policy.high else "5",
                "apns-expiration": str(int(time.time()) + policy.ttl),
                "content-type": "application/json",
            }
            response = self._post(
                target, url, content=payload, headers=headers, ca_file=getattr(settings, "APNS_CA_FILE", "") or ""
            )
            # Our provider token went stale early (a clock jump): sign a new one, once.
            if renew or response.status_code != 403 or _apns_reason(response) != "ExpiredProviderToken":
                break
        if response.status_code == 200:
            return SendResult(target=target, provider_message_id=response.headers.get("apns-id", "")[:200])
        reason = _apns_reason(response)
        # Unregistered (410) and BadDeviceToken: the token is dead or was never
        # one. DeviceTokenNotForTopic stays a plain permanent error: it is more
        # often our APNS_TOPIC that is wrong, and that would disable every token.
        gone = response.status_code == 410 or reason in ("BadDeviceToken", "Unregistered")
        raise http_error(
            response.status_code,
            reason or response.text[:300],
            target=target,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            gone=gone,
        )


def _apns_reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("reason", ""))
    except (ValueError, AttributeError):
        return ""

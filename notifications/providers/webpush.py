"""Web Push (RFC 8030/8291/8292): a browser's push subscription, through pywebpush.

``WebPushProvider`` encrypts the notification for each of the user's enabled
``WebPushSubscription`` rows (aes128gcm, with the subscription's p256dh and
auth keys), signs a VAPID token with ``WEBPUSH_VAPID_PRIVATE_KEY`` and posts
it to the subscription's endpoint with ``TTL`` and ``Urgency`` taken from the
priority (``PUSH_POLICY``). It reports per subscription what happened; it
never writes rows: the delivery service disables the subscriptions whose
error says ``target_gone``.

The pieces both push providers share live here too, and
``notifications.providers.mobile`` imports them: the priority table, the
payload fitting, Retry-After parsing and the per-target result collection
(``send_each``: a ``SendResult`` per target, with ``error`` on those that
refused, or one ``ProviderError`` when none took the message).

docs/operations.md ("Push providers") lists the settings, how to generate the
VAPID keys and what each answer of a push service does; docs/api.md
("Notifications") gives the priority table.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from py_vapid import Vapid, VapidException
from pywebpush import WebPushException, webpush

from notifications.constants import Channel, Priority

from .base import Message, Provider, ProviderError, SendResult, Target, retry_after_seconds


@dataclass(frozen=True)
class PushPolicy:
    """How a priority travels on a push channel."""

    urgency: str  # Web Push ``Urgency`` (RFC 8030 5.3)
    ttl: int  # seconds a push service keeps it for an offline device
    high: bool  # FCM android priority "high", APNs priority 10 and a sound


# Why these TTLs: a critical notification also goes to every other channel at
# once, so a push that arrives a quarter of an hour late only repeats what the
# user already saw elsewhere; a high one is still news within the hour; a
# normal one within a day; a low one is digest material and may wait for the
# device to come back within three days. Push services cap TTL at 28 days.
PUSH_POLICY: dict[str, PushPolicy] = {
    Priority.CRITICAL: PushPolicy(urgency="high", ttl=15 * 60, high=True),
    Priority.HIGH: PushPolicy(urgency="high", ttl=60 * 60, high=True),
    Priority.NORMAL: PushPolicy(urgency="normal", ttl=24 * 60 * 60, high=False),
    Priority.LOW: PushPolicy(urgency="very-low", ttl=3 * 24 * 60 * 60, high=False),
}

# RFC 8291 guarantees 4096 bytes of encrypted body; aes128gcm in one record
# adds an 86-byte header (salt, record size, the sender's 65-byte key), the
# padding delimiter and a 16-byte tag, which leaves this much for the JSON.
WEBPUSH_MAX_PLAINTEXT = 4096 - 86 - 1 - 16

ELLIPSIS = "…"


def push_policy(priority: str) -> PushPolicy:
    return PUSH_POLICY.get(priority, PUSH_POLICY[Priority.NORMAL])


def fit_payload(build: Callable[[str, bool], dict[str, Any]], body: str, limit: int) -> bytes:
    """The JSON of ``build(body, with_data)`` in at most ``limit`` UTF-8 bytes.

    The body is cut first (ending in an ellipsis); if the payload is still too
    big with an empty body, the free-form ``data`` goes (the app can fetch the
    notification by its id); if even that is too big, ``ProviderError``.
    """

    def encode(text: str, with_data: bool) -> bytes:
        return json.dumps(build(text, with_data), ensure_ascii=False, separators=(",", ":")).encode()

    for with_data in (True, False):
        whole = encode(body, with_data)
        if len(whole) <= limit:
            return whole
        if len(encode("", with_data)) > limit:
            continue
        # The longest prefix that fits, by bisection on characters.
        low, high = 0, len(body)
        while low < high:
            middle = (low + high + 1) // 2
            if len(encode(body[:middle] + ELLIPSIS, with_data)) <= limit:
                low = middle
            else:
                high = middle - 1
        return encode(body[:low] + ELLIPSIS if low else "", with_data)
    raise ProviderError(f"the notification does not fit in a {limit}-byte push payload", retryable=False)


def http_error(
    status: int, detail: str, *, target: Target, retry_after: float | None = None, gone: bool = False
) -> ProviderError:
    """The usual mapping of a push service's HTTP status: ``gone`` (the caller
    decides what means gone) → target_gone; 429 and 5xx → retryable (with
    Retry-After); any other 4xx → permanent."""
    message = f"HTTP {status}: {detail}".strip().rstrip(":")
    if gone:
        return ProviderError(message, retryable=False, target_gone=True, target=target)
    if status == 429 or status >= 500:
        return ProviderError(message, retryable=True, retry_after=retry_after, target=target)
    return ProviderError(message, retryable=False, target=target)


def send_each(targets: list[Target], send_one: Callable[[Target], SendResult]) -> list[SendResult]:
    """Call ``send_one`` for every target; raise only when none took the message.

    When some took it, the answer has a ``SendResult`` per target, in order, with
    ``error`` set on those that refused (the caller disables the gone ones). When
    none did, the error raised is the single target's own or, for several, one
    that is retryable if any target's was (after the longest Retry-After), says
    target_gone only if every target is gone, and lists each target's error in
    ``failures`` (set on every error this raises), so the gone ones can still be
    disabled.
    """
    if not targets:
        raise ProviderError("no target to send to", retryable=False)
    results: list[SendResult] = []
    failures: list[ProviderError] = []
    for target in targets:
        try:
            results.append(send_one(target))
        except ProviderError as exc:
            if exc.target is None:
                exc.target = target
            failures.append(exc)
            results.append(SendResult(target=target, error=exc))
    if len(failures) < len(targets):
        return results
    if len(failures) == 1:
        error = failures[0]
    else:
        retryable = [f for f in failures if f.retryable]
        waits = [f.retry_after for f in retryable if f.retry_after is not None]
        error = ProviderError(
            "; ".join(f"{_short(f.target)}: {f}" for f in failures),
            retryable=bool(retryable),
            retry_after=max(waits) if waits else None,
            target_gone=all(f.target_gone for f in failures),
        )
    error.failures = failures
    raise error


def _short(target: Target | None) -> str:
    if target is None:
        return "?"
    return f"#{target.ref}" if target.ref is not None else target.address[:40]


def load_vapid(value: str) -> Vapid:
    """A VAPID key from a setting: a PEM file's path, PEM text, or the base64url
    of the raw 32-byte key or of its DER (what ``vapid --gen`` and
    ``manage.py webpush_vapid_keys`` print)."""
    value = value.strip()
    if "-----BEGIN" in value:
        return Vapid.from_pem(value.encode())
    if os.path.isfile(value):
        with open(value, encoding="ascii") as handle:
            return Vapid.from_pem(handle.read().encode())
    return Vapid.from_string(value)


def vapid_application_server_key(vapid: Vapid) -> str:
    """The public key a page passes to ``pushManager.subscribe`` (base64url)."""
    raw = vapid.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def webpush_public_key() -> str:
    """The configured VAPID public key as ``applicationServerKey``, or "" when
    Web Push is not configured."""
    key = getattr(settings, "WEBPUSH_VAPID_PRIVATE_KEY", "")
    return vapid_application_server_key(load_vapid(key)) if key else ""


class WebPushProvider(Provider):
    """Web Push through pywebpush, one POST per subscription."""

    channel = Channel.WEBPUSH

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vapid: Vapid | None = None
        self._vapid_source = ""
        # One session per worker process: keeps connections to the push
        # services (a handful of hosts) alive between deliveries.
        self._session = requests.Session()

    def targets(self, user) -> list[Target]:
        from notifications.models import WebPushSubscription

        rows = WebPushSubscription.objects.filter(user=user, disabled_at__isnull=True).order_by("id")
        return [
            Target(address=row.endpoint, ref=row.pk, extra={"p256dh": row.p256dh, "auth": row.auth}) for row in rows
        ]

    def send(self, message: Message, targets: list[Target]) -> list[SendResult]:
        vapid, subject = self._credentials()
        policy = push_policy(message.priority)

        def build(body: str, with_data: bool) -> dict[str, Any]:
            return {
                "id": message.notification_id,
                "title": message.title,
                "body": body,
                "data": message.data if with_data else {},
                "priority": message.priority,
                "category": message.category,
            }

        payload = fit_payload(build, message.body, WEBPUSH_MAX_PLAINTEXT)
        return send_each(targets, lambda target: self._send_one(target, payload, policy, vapid, subject))

    def _credentials(self) -> tuple[Vapid, str]:
        key = getattr(settings, "WEBPUSH_VAPID_PRIVATE_KEY", "") or ""
        subject = getattr(settings, "WEBPUSH_VAPID_SUBJECT", "") or ""
        if not key or not subject:
            raise ProviderError(
                "Web Push is not configured (set WEBPUSH_VAPID_PRIVATE_KEY and WEBPUSH_VAPID_SUBJECT)",
                retryable=False,
            )
        with self._lock:
            if self._vapid is None or self._vapid_source != key:
                try:
                    self._vapid = load_vapid(key)
                except Exception as exc:  # any parse failure is the same misconfiguration
                    raise ProviderError(
                        f"WEBPUSH_VAPID_PRIVATE_KEY is not a usable key: {exc}", retryable=False
                    ) from exc
                self._vapid_source = key
            return self._vapid, subject

    def _send_one(self, target: Target, payload: bytes, policy: PushPolicy, vapid: Vapid, subject: str) -> SendResult:
        subscription = {
            "endpoint": target.address,
            "keys": {"p256dh": target.extra.get("p256dh", ""), "auth": target.extra.get("auth", "")},
        }
        try:
            response = webpush(
                subscription,
                data=payload,
                vapid_private_key=vapid,
                # A fresh dict each time: webpush() writes "aud" and "exp" into it.
                vapid_claims={"sub": subject},
                ttl=policy.ttl,
                headers={"Urgency": policy.urgency},
                timeout=settings.PUSH_HTTP_TIMEOUT,
                requests_session=self._session,
            )
        except WebPushException as exc:
            raise self._error(exc, target) from exc
        except VapidException as exc:
            # The claims did not pass py-vapid's checks: WEBPUSH_VAPID_SUBJECT is wrong.
            raise ProviderError(f"VAPID signing refused: {exc}", retryable=False, target=target) from exc
        except requests.Timeout as exc:
            raise ProviderError(f"timed out: {exc}", retryable=True, target=target) from exc
        except requests.RequestException as exc:
            raise ProviderError(f"connection failed: {exc}", retryable=True, target=target) from exc
        except (ValueError, TypeError) as exc:
            # Undecodable subscription keys: this subscription can never work.
            raise ProviderError(
                f"invalid subscription keys: {exc}", retryable=False, target_gone=True, target=target
            ) from exc
        return SendResult(target=target, provider_message_id=response.headers.get("Location", "")[:200])

    @staticmethod
    def _error(exc: WebPushException, target: Target) -> ProviderError:
        status = exc.status_code
        if status is None:
            # Raised before any request: the subscription itself is malformed.
            return ProviderError(
                f"invalid subscription: {exc.message}", retryable=False, target_gone=True, target=target
            )
        detail = (exc.response.text or exc.response.reason or "")[:300]
        return http_error(
            status,
            detail,
            target=target,
            retry_after=retry_after_seconds(exc.retry_after),
            gone=status in (404, 410),
        )

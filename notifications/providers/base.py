"""The one interface every channel's provider implements.

A provider turns a rendered ``Message`` into its service's protocol (SMTP, an
SMS HTTP API, Web Push, FCM, APNs, the channel layer) for the ``Target``s a
user has on that channel. Workers call it from
``notifications.services.delivery``; it knows nothing of rows, retries or
statuses. It answers with a ``SendResult`` per target, or raises
``ProviderError`` saying whether trying again can help (``retryable``, and
after how long: ``retry_after``, from a 429's Retry-After) and whether the
target is dead for good (``target_gone``: a 404/410 push subscription, an
unregistered token), which the caller disables.

Providers that take several messages in one call (``max_batch`` > 1) override
``send_batch``; the caller hands them up to ``min(max_batch,
MESSAGE_BATCH_SIZE)`` deliveries of one channel at once.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar


@dataclass(frozen=True)
class Message:
    """One notification rendered for one user on one channel."""

    delivery_id: int
    notification_id: str
    tenant_id: int
    user_id: int
    priority: str
    category: str
    title: str
    body: str
    html: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    # When the notification was sent (aware, UTC); None only in hand-built messages.
    created_at: datetime | None = None


@dataclass(frozen=True)
class Target:
    """Where a user is reached on a channel: an address (email, phone number, push
    endpoint, device token) and, for push, the row to disable if it is gone."""

    address: str
    ref: int | None = None  # the WebPushSubscription or MobileToken id
    extra: dict[str, Any] = field(default_factory=dict)  # keys of a push subscription, a platform


@dataclass(frozen=True)
class SendResult:
    target: Target
    provider_message_id: str = ""
    # The provider confirmed arrival (not only acceptance), e.g. the socket layer.
    delivered: bool = False
    # This target refused while others of the same message took it (a gone
    # subscription among live ones): the caller disables it if ``target_gone``.
    # None: the target took the message.
    error: ProviderError | None = None


class ProviderError(Exception):
    """No target took the message. ``failures``: each target's own error when there
    were several (one gone, one down), so the caller can still disable the gone
    ones; empty when this error is the only one."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        target_gone: bool = False,
        target: Target | None = None,
        failures: list[ProviderError] | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.target_gone = target_gone
        self.target = target
        self.failures = failures or []


class Provider(ABC):
    """A channel's sender. Stateless between calls; one instance per worker process."""

    channel: ClassVar[str]
    max_batch: ClassVar[int] = 1

    @abstractmethod
    def targets(self, user) -> list[Target]:
        """Where ``user`` can be reached on this channel now (empty: not at all)."""

    @abstractmethod
    def send(self, message: Message, targets: list[Target]) -> list[SendResult]:
        """Send ``message`` to each target. Raises ``ProviderError`` when none took it."""

    def send_batch(self, batch: list[tuple[Message, list[Target]]]) -> list[list[SendResult] | ProviderError]:
        """Several messages of this channel; by default one ``send`` each."""
        results: list[list[SendResult] | ProviderError] = []
        for message, targets in batch:
            try:
                results.append(self.send(message, targets))
            except ProviderError as exc:
                results.append(exc)
        return results


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110);
    None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    with contextlib.suppress(ValueError):  # not a number of seconds: an HTTP date, then
        return max(0.0, float(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())

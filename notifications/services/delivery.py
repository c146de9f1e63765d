"""Deliveries: from the outbox to the provider, and what became of each.

The send service writes ``Delivery`` rows (``queued``) in the notification's
transaction and calls ``deliveries_dispatch`` after the commit; the dispatch
publishes Celery tasks (``notifications.tasks.deliveries_send``) on the queue
of the priority's ``RoutingRule``, a batch of one channel per task; the task
runs ``deliveries_attempt``. ``deliveries_relay`` (beat, every minute) is the
outbox relay: it publishes again whatever no task took. Staff retry a
dead letter with ``delivery_retry``. ``digests_send_due`` (beat) sends the
low-priority digests. docs/operations.md, "Notifications", explains the design.

Exactly-once where it can be had, at-least-once where it cannot:

* A task claims a delivery by moving it ``queued`` → ``sending`` in its own
  committed transaction (row locked ``SKIP LOCKED``) before calling the
  provider, and only a ``queued``, due row is claimed. A task delivered twice
  (late acks, a redelivery after the visibility timeout, the relay's copy)
  finds the row ``sending`` or ``sent`` and does nothing: no double send.
* A worker killed between the provider call and the status write leaves the
  row ``sending``. Nobody can know whether the provider took the message, so
  after ``NOTIFICATION_SENDING_TIMEOUT_SECONDS`` the relay sends it again (the
  attempt counts): the user may get it twice, never zero times. That window is
  one provider call wide.

Retries: a retryable error puts the row back to ``queued`` with
``next_attempt_at`` after an exponential backoff with full jitter (or the
provider's Retry-After when longer) and publishes it with that countdown;
after ``NOTIFICATION_MAX_ATTEMPTS`` attempts, or on a permanent error, it is
``failed`` (the dead letter, in the admin). A failed push delivery (every
target failed or gone, or none left) falls back to the next channel of
``FALLBACK_ORDER`` the user allows and can be reached on. Targets a provider
reports gone (a 404/410 subscription, an unregistered token) are disabled.
"""

from __future__ import annotations

import logging
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record
from spotify_agent.errors import Conflict, NotFound

from ..constants import FALLBACK_ORDER, Channel, DeliveryStatus, Priority
from ..models import Delivery, Digest, MobileToken, NotificationRecipient, RoutingRule, WebPushSubscription
from ..providers import ProviderUnavailable, provider_for
from ..providers.base import Message, Provider, ProviderError, SendResult, Target

logger = logging.getLogger(__name__)

# Channels whose failure falls back to another channel (docs/api.md, "Routing").
PUSH_CHANNELS = frozenset({Channel.WEBPUSH, Channel.MOBILE})
# Celery message priority per notification priority. On the Redis transport 0
# is consumed first (kombu's default steps are 0, 3, 6 and 9).
CELERY_PRIORITY = {Priority.CRITICAL: 0, Priority.HIGH: 3, Priority.NORMAL: 6, Priority.LOW: 9}
# A countdown stays this far below the broker's visibility timeout (a longer
# one is refused by spotify_agent.celery); longer holds are the relay's.
COUNTDOWN_MARGIN_SECONDS = 60
# The relay runs every minute (CELERY_BEAT_SCHEDULE): it also publishes
# deliveries falling due before its next run that no countdown covers.
RELAY_LOOKAHEAD_SECONDS = 60
# Rows one relay run takes at most; the rest wait for the next minute, so one
# run stays short even after an outage left a large backlog.
RELAY_BATCH = 5000
# A task may run this early for a delivery's due time (clocks of workers and
# of the database differ a little; a countdown is rounded up anyway).
DUE_TOLERANCE = timedelta(seconds=2)
# Digests one beat run sends at most (the rest go on the next run).
DIGESTS_PER_RUN = 500
ERROR_MAX_LENGTH = 2000


def _queue_for_priorities() -> dict[str, str]:
    queues = dict(RoutingRule.objects.values_list("priority", "queue"))
    return {priority: queues.get(priority) or "notifications" for priority in Priority.values}


def _batch_size(channel: str) -> int:
    try:
        max_batch = provider_for(channel).max_batch
    except ProviderUnavailable:
        max_batch = 1
    return max(1, min(max_batch, settings.MESSAGE_BATCH_SIZE))


def _countdown_limit() -> int:
    return settings.CELERY_VISIBILITY_TIMEOUT - COUNTDOWN_MARGIN_SECONDS


def deliveries_dispatch(delivery_ids: Iterable[int]) -> int:
    """Publish a task for every ``queued`` delivery among ``delivery_ids`` (not
    those waiting for a digest): on its priority's queue, with its Celery
    priority, up to ``min(provider.max_batch, MESSAGE_BATCH_SIZE)`` deliveries
    of one channel per task. A delivery held until later (quiet hours, a retry)
    gets a countdown; one held longer than the broker allows is left to the
    relay. Call it after the commit that made the rows (it reads them). Never
    raises for a failed publish: the relay publishes what this could not.
    Returns how many tasks were published."""
    from ..tasks import deliveries_send as deliveries_send_task

    ids = sorted({int(pk) for pk in delivery_ids})
    if not ids:
        return 0
    now = timezone.now()
    rows = Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.QUEUED, digest__isnull=True).values_list(
        "pk", "channel", "next_attempt_at", "notification__priority"
    )
    queues = _queue_for_priorities()
    limit = _countdown_limit()
    groups: dict[tuple[str, str, str, int], list[int]] = defaultdict(list)
    for pk, channel, next_attempt_at, priority in rows:
        countdown = 0
        if next_attempt_at is not None and next_attempt_at > now:
            countdown = math.ceil((next_attempt_at - now).total_seconds())
            if countdown > limit:
                continue  # the relay publishes it when it falls due
        groups[(queues[priority], priority, channel, countdown)].append(pk)
    published = 0
    for (queue, priority, channel, countdown), pks in groups.items():
        size = _batch_size(channel)
        for start in range(0, len(pks), size):
            chunk = pks[start : start + size]
            try:
                deliveries_send_task.apply_async(
                    args=[chunk],
                    queue=queue,
                    priority=CELERY_PRIORITY.get(priority, 6),
                    countdown=countdown or None,
                )
                published += 1
            except Exception:
                logger.exception("publishing deliveries failed; the relay will publish them", extra={"ids": chunk})
    return published


def deliveries_dispatch_on_commit(delivery_ids: Iterable[int]) -> None:
    """``deliveries_dispatch`` once the current transaction commits (at once outside one)."""
    ids = list(delivery_ids)
    if ids:
        transaction.on_commit(lambda: deliveries_dispatch(ids), robust=True)


# --- One attempt ---------------------------------------------------------------------


def backoff_seconds(*, attempts: int, retry_after: float | None = None) -> float:
    """The wait before attempt ``attempts + 1``: full jitter, a random time between
    0 and min(cap, base * 2**(attempts-1)), at least a second; the provider's
    Retry-After when that is longer."""
    ceiling = min(
        settings.NOTIFICATION_RETRY_MAX_SECONDS,
        settings.NOTIFICATION_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1),
    )
    delay = max(1.0, random.uniform(0, ceiling))  # noqa: S311 (jitter, not a secret)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay


@dataclass
class _Outcome:
    """What to write for one delivery after its attempt."""

    results: list[SendResult] = field(default_factory=list)
    error: ProviderError | None = None


@dataclass
class AttemptReport:
    """What one ``deliveries_attempt`` did, by delivery id."""

    sent: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    fallbacks: list[int] = field(default_factory=list)


def _claim(ids: Sequence[int], now: datetime) -> list[int]:
    """Move the due ``queued`` rows among ``ids`` to ``sending``, committed; their ids."""
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(pk__in=ids, status=DeliveryStatus.QUEUED, digest__isnull=True)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + DUE_TOLERANCE))
            .only("pk", "attempts")
        )
        for row in rows:
            row.status = DeliveryStatus.SENDING
            row.sending_at = now
            row.attempts += 1
        Delivery.objects.bulk_update(rows, ["status", "sending_at", "attempts"])
    return [row.pk for row in rows]


class _Renderer:
    """Title, text and HTML of each delivery: the recipient's inbox row, or the
    notification's template rendered for the channel and the user's language
    when it has one (``notifications.templates``), one query per template key."""

    def __init__(self) -> None:
        self._candidates: dict[tuple[int, str], list] = {}
        self._tenant_locales: dict[int, str | None] = {}

    def render(self, delivery: Delivery, recipient: NotificationRecipient | None) -> tuple[str, str, str]:
        notification = delivery.notification
        title = recipient.title if recipient else notification.title
        text = recipient.content if recipient else notification.content
        html = ""
        if notification.template_key:
            try:
                from .. import templates
            except ImportError:
                return title, text, html
            try:
                key = (delivery.tenant_id, notification.template_key)
                if key not in self._candidates:
                    self._candidates[key] = templates.template_candidates(
                        tenant_id=delivery.tenant_id, key=notification.template_key
                    )
                if delivery.tenant_id not in self._tenant_locales:
                    from accounts.models import Tenant

                    self._tenant_locales[delivery.tenant_id] = (
                        Tenant.objects.filter(pk=delivery.tenant_id).values_list("locale", flat=True).first()
                    )
                row = templates.template_choose(
                    self._candidates[key],
                    tenant_id=delivery.tenant_id,
                    channel=delivery.channel,
                    locales=templates.locale_chain(delivery.user.locale, self._tenant_locales[delivery.tenant_id]),
                )
                if row is not None:
                    rendered = templates.render_row(row, notification.context or {})
                    title, text, html = rendered.subject or title, rendered.text or text, rendered.html
            except Exception:
                # The inbox row was rendered at send time: it still reads well.
                logger.exception("rendering a delivery's template failed; sending the inbox text")
        return title, text, html


def _message(delivery: Delivery, title: str, text: str, html: str) -> Message:
    notification = delivery.notification
    return Message(
        delivery_id=delivery.pk,
        notification_id=str(notification.pk),
        tenant_id=delivery.tenant_id,
        user_id=delivery.user_id,
        priority=notification.priority,
        category=notification.category,
        title=title,
        body=text,
        html=html,
        data=notification.data or {},
        created_at=notification.created_at,
    )


def _provider_call(provider: Provider, batch: list[tuple[Message, list[Target]]]) -> list:
    """``provider.send_batch`` that turns a provider's own bug into retryable errors
    (a bug fixed by a deploy must not have dead-lettered everything meanwhile)."""
    try:
        results = provider.send_batch(batch)
        if len(results) != len(batch):
            raise RuntimeError(f"{type(provider).__name__}.send_batch answered {len(results)} of {len(batch)}")
        return results
    except ProviderError as exc:
        return [exc for _ in batch]
    except Exception as exc:
        logger.exception("provider %s failed unexpectedly", type(provider).__name__)
        return [ProviderError(f"The provider failed: {exc!r}", retryable=True) for _ in batch]


def deliveries_attempt(delivery_ids: Iterable[int]) -> AttemptReport:
    """Send the due ``queued`` deliveries among ``delivery_ids`` (the task's body).

    Idempotent: a delivery already claimed, sent or failed is skipped (see the
    module docstring for the one at-least-once window). Claims in one committed
    transaction, calls the providers outside any transaction, records every
    outcome in one more; retries and fallbacks are published after that commit.
    """
    ids = sorted({int(pk) for pk in delivery_ids})
    report = AttemptReport()
    now = timezone.now()
    claimed = _claim(ids, now)
    report.skipped = [pk for pk in ids if pk not in set(claimed)]
    if not claimed:
        return report
    deliveries = list(Delivery.objects.filter(pk__in=claimed).select_related("notification", "user").order_by("pk"))
    recipients = {
        (row.notification_id, row.user_id): row
        for row in NotificationRecipient.objects.filter(
            notification_id__in={d.notification_id for d in deliveries}, user_id__in={d.user_id for d in deliveries}
        )
    }
    renderer = _Renderer()
    outcomes: dict[int, _Outcome] = {}
    by_channel: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        by_channel[delivery.channel].append(delivery)
    for channel, group in by_channel.items():
        try:
            provider = provider_for(channel)
        except ProviderUnavailable as exc:
            for delivery in group:
                outcomes[delivery.pk] = _Outcome(error=ProviderError(str(exc), retryable=False))
            continue
        batch: list[tuple[Delivery, Message, list[Target]]] = []
        for delivery in group:
            try:
                targets = provider.targets(delivery.user)
            except Exception as exc:
                logger.exception("finding %s targets failed", channel)
                outcomes[delivery.pk] = _Outcome(
                    error=ProviderError(f"Finding targets failed: {exc!r}", retryable=True)
                )
                continue
            if not targets:
                outcomes[delivery.pk] = _Outcome(
                    error=ProviderError(
                        f"The user has no {channel} target (none registered or all disabled).", retryable=False
                    )
                )
                continue
            recipient = recipients.get((delivery.notification_id, delivery.user_id))
            batch.append((delivery, _message(delivery, *renderer.render(delivery, recipient)), targets))
        size = max(1, provider.max_batch)
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            results = _provider_call(provider, [(message, targets) for _d, message, targets in chunk])
            for (delivery, *_sent), result in zip(chunk, results, strict=True):
                if isinstance(result, ProviderError):
                    outcomes[delivery.pk] = _Outcome(error=result)
                else:
                    outcomes[delivery.pk] = _Outcome(results=list(result))
    _record(deliveries, outcomes, report)
    return report


def _error_text(error: ProviderError) -> str:
    return str(error)[:ERROR_MAX_LENGTH]


def _gone_targets(outcome: _Outcome) -> list[tuple[Target, ProviderError]]:
    """Every target the provider reported gone, from per-target results and errors."""
    gone: list[tuple[Target, ProviderError]] = []
    for result in outcome.results:
        if result.error is not None and result.error.target_gone:
            gone.append((result.error.target or result.target, result.error))
    if outcome.error is not None:
        errors = outcome.error.failures or [outcome.error]
        gone += [(err.target, err) for err in errors if err.target_gone and err.target is not None]
    return gone


def targets_disable(*, channel: str, gone: Iterable[tuple[Target, ProviderError]], now: datetime | None = None) -> int:
    """Disable the push subscriptions or tokens a provider reported gone. Returns how many."""
    model = {Channel.WEBPUSH: WebPushSubscription, Channel.MOBILE: MobileToken}.get(channel)
    if model is None:
        return 0
    now = now or timezone.now()
    count = 0
    for target, error in gone:
        if target.ref is None:
            continue
        count += model.objects.filter(pk=target.ref, disabled_at__isnull=True).update(
            disabled_at=now, disabled_reason=str(error)[:200]
        )
    return count


def _record(deliveries: list[Delivery], outcomes: dict[int, _Outcome], report: AttemptReport) -> None:
    now = timezone.now()
    max_attempts = settings.NOTIFICATION_MAX_ATTEMPTS
    metrics_outcomes: list[tuple[str, str]] = []
    latencies: list[tuple[str, float]] = []
    to_dispatch: list[int] = []
    with transaction.atomic():
        # The rows as they are now: a client may have acked (delivered) or read
        # the notification while the provider call was under way, and that
        # status must not go back to "sent".
        current = {
            pk: (status, delivered_at)
            for pk, status, delivered_at in Delivery.objects.select_for_update()
            .filter(pk__in=[d.pk for d in deliveries])
            .values_list("pk", "status", "delivered_at")
        }
        for delivery in deliveries:
            outcome = outcomes.get(delivery.pk) or _Outcome(
                error=ProviderError("No outcome was recorded.", retryable=True)
            )
            gone = _gone_targets(outcome)
            if gone:
                targets_disable(channel=delivery.channel, gone=gone, now=now)
            taken = [result for result in outcome.results if result.error is None]
            fields = ["status", "last_error", "next_attempt_at"]
            if delivery.pk not in current:
                continue  # deleted meanwhile (its notification was)
            status_now, delivery.delivered_at = current[delivery.pk]
            if taken:
                fields += _mark_sent(delivery, outcome, status_now=status_now, now=now)
                report.sent.append(delivery.pk)
                metrics_outcomes.append((delivery.channel, "sent"))
                latencies.append((delivery.channel, (now - delivery.notification.created_at).total_seconds()))
            elif status_now != DeliveryStatus.SENDING:
                # No longer ours (the relay presumed this worker dead): its new owner decides.
                report.skipped.append(delivery.pk)
                continue
            else:
                error = outcome.error or next(
                    (r.error for r in outcome.results if r.error is not None),
                    ProviderError("The provider took no target.", retryable=True),
                )
                delivery.last_error = _error_text(error)
                if error.retryable and delivery.attempts < max_attempts:
                    delivery.status = DeliveryStatus.QUEUED
                    delivery.next_attempt_at = now + timedelta(
                        seconds=backoff_seconds(attempts=delivery.attempts, retry_after=error.retry_after)
                    )
                    report.retried.append(delivery.pk)
                    metrics_outcomes.append((delivery.channel, "retried"))
                    to_dispatch.append(delivery.pk)
                else:
                    if error.retryable:
                        delivery.last_error = f"Gave up after {delivery.attempts} attempts: {delivery.last_error}"[
                            :ERROR_MAX_LENGTH
                        ]
                    fallback = _dead_letter(delivery, now)
                    fields.append("failed_at")
                    report.failed.append(delivery.pk)
                    metrics_outcomes.append((delivery.channel, "failed"))
                    if fallback is not None:
                        report.fallbacks.append(fallback.pk)
                        metrics_outcomes.append((delivery.channel, "fallback"))
                        to_dispatch.append(fallback.pk)
            delivery.save(update_fields=fields)
        deliveries_dispatch_on_commit(to_dispatch)
    from ..metrics import deliveries_record

    deliveries_record(outcomes=metrics_outcomes, latencies=latencies)


def _mark_sent(delivery: Delivery, outcome: _Outcome, *, status_now: str, now: datetime) -> list[str]:
    """Set what a provider's acceptance says (the caller saves); the fields it set
    beyond status, last_error and next_attempt_at. A status an ack or a read
    moved past "sent" meanwhile stays."""
    taken = [result for result in outcome.results if result.error is None]
    delivery.status = DeliveryStatus.DELIVERED if all(r.delivered for r in taken) else DeliveryStatus.SENT
    if status_now in (DeliveryStatus.DELIVERED, DeliveryStatus.READ):
        delivery.status = status_now
    delivery.sent_at = now
    if delivery.status == DeliveryStatus.DELIVERED and delivery.delivered_at is None:
        delivery.delivered_at = now
    delivery.target = ", ".join(r.target.address for r in taken)[:500]
    delivery.provider_message_id = ",".join(r.provider_message_id for r in taken if r.provider_message_id)[:200]
    refused = [r.error for r in outcome.results if r.error is not None]
    delivery.last_error = "; ".join(_error_text(e) for e in refused)[:ERROR_MAX_LENGTH]
    delivery.next_attempt_at = None
    return ["sent_at", "delivered_at", "target", "provider_message_id"]


def _dead_letter(delivery: Delivery, now: datetime) -> Delivery | None:
    """Mark ``delivery`` failed (the caller saves it) and create its fallback, if any."""
    delivery.status = DeliveryStatus.FAILED
    delivery.failed_at = now
    delivery.next_attempt_at = None
    return delivery_fallback_create(delivery)


# --- Fallback -----------------------------------------------------------------------


def _channel_allowed(delivery: Delivery, channel: str) -> bool:
    """Whether the user allows ``channel`` for this notification and can be
    reached on it: ``notifications.routing`` decides (the one place that reads
    preferences), CRITICAL ignoring preferences as its rule says."""
    from .. import routing

    user = delivery.user
    rule = routing.rules_by_priority()[delivery.notification.priority]
    reach = routing.reaches_for_users(tenant_id=delivery.tenant_id, users=[user])[user.pk]
    if channel not in reach.reachable:
        return False
    if not rule.follow_preferences:
        return True
    return routing.channel_enabled(
        reach=reach, category=delivery.notification.category, channel=channel, priority=rule.priority
    )


def delivery_fallback_create(delivery: Delivery) -> Delivery | None:
    """For a failed push delivery, a new ``queued`` delivery of the same notification
    on the next channel of ``FALLBACK_ORDER`` that the user allows, can be reached
    on, and has no delivery of this notification on yet. None when there is none
    or the channel is not a push channel. The caller dispatches it after commit."""
    if delivery.channel not in PUSH_CHANNELS or delivery.channel not in FALLBACK_ORDER:
        return None
    taken = set(
        Delivery.objects.filter(notification_id=delivery.notification_id, user_id=delivery.user_id).values_list(
            "channel", flat=True
        )
    )
    later = FALLBACK_ORDER[FALLBACK_ORDER.index(delivery.channel) + 1 :]
    for channel in later:
        if channel in taken:
            continue
        try:
            provider_for(channel)
            allowed = _channel_allowed(delivery, channel)
        except ProviderUnavailable:
            continue
        if not allowed:
            continue
        return Delivery.objects.create(
            tenant_id=delivery.tenant_id,
            notification_id=delivery.notification_id,
            user_id=delivery.user_id,
            channel=channel,
            status=DeliveryStatus.QUEUED,
            fallback_of=delivery,
        )
    return None


# --- The relay ------------------------------------------------------------------------


@dataclass
class RelayReport:
    republished: list[int] = field(default_factory=list)
    resent: list[int] = field(default_factory=list)  # "sending" rows whose worker was lost
    failed: list[int] = field(default_factory=list)


def deliveries_relay(*, now: datetime | None = None) -> RelayReport:
    """Publish again what no task took (beat, every minute).

    * ``queued`` rows due more than ``NOTIFICATION_RELAY_GRACE_SECONDS`` ago:
      their after-commit publish was lost (the process died) or their task was.
      Their ``next_attempt_at`` is set to now, so the next run waits a grace
      period again before publishing them once more.
    * ``queued`` rows falling due before the next run whose wait was too long
      for a countdown (quiet hours, long backoffs): published with a countdown.
    * ``sending`` rows older than ``NOTIFICATION_SENDING_TIMEOUT_SECONDS``: their
      worker died mid-call. Sent again (at-least-once), or dead-lettered when
      out of attempts.

    A row published twice is harmless: the second task finds it claimed.
    """
    now = now or timezone.now()
    report = RelayReport()
    cutoff = now - timedelta(seconds=settings.NOTIFICATION_RELAY_GRACE_SECONDS)
    stuck_before = now - timedelta(seconds=settings.NOTIFICATION_SENDING_TIMEOUT_SECONDS)
    max_attempts = settings.NOTIFICATION_MAX_ATTEMPTS
    fallbacks: list[int] = []
    metrics_outcomes: list[tuple[str, str]] = []
    with transaction.atomic():
        stuck = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.SENDING, sending_at__lt=stuck_before)
            .order_by("sending_at")[:RELAY_BATCH]
        )
        for delivery in stuck:
            lost = f"The worker was lost during attempt {delivery.attempts}; the provider may have taken it."
            if delivery.attempts >= max_attempts:
                delivery.last_error = f"Gave up after {delivery.attempts} attempts: {lost}"
                fallback = _dead_letter(delivery, now)
                delivery.save(update_fields=["status", "failed_at", "next_attempt_at", "last_error"])
                report.failed.append(delivery.pk)
                metrics_outcomes.append((delivery.channel, "failed"))
                if fallback is not None:
                    fallbacks.append(fallback.pk)
            else:
                delivery.status = DeliveryStatus.QUEUED
                delivery.next_attempt_at = now
                delivery.last_error = lost
                delivery.save(update_fields=["status", "next_attempt_at", "last_error"])
                report.resent.append(delivery.pk)
        lost_rows = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.QUEUED, digest__isnull=True)
            .filter(
                Q(next_attempt_at__isnull=True, created_at__lt=cutoff)
                | Q(next_attempt_at__lt=cutoff)
                | Q(
                    next_attempt_at__gt=now,
                    next_attempt_at__lte=now + timedelta(seconds=RELAY_LOOKAHEAD_SECONDS),
                )
            )
            .order_by("pk")
            .values_list("pk", "next_attempt_at")[:RELAY_BATCH]
        )
        overdue = [pk for pk, due in lost_rows if due is None or due < cutoff]
        Delivery.objects.filter(pk__in=overdue).update(next_attempt_at=now)
        report.republished = [pk for pk, _due in lost_rows]
        deliveries_dispatch_on_commit([*report.resent, *report.republished, *fallbacks])
    if report.resent or report.republished:
        logger.info(
            "relay published deliveries again", extra={"resent": len(report.resent), "republished": len(overdue)}
        )
    from ..metrics import deliveries_record

    deliveries_record(outcomes=metrics_outcomes)
    return report


# --- Staff ----------------------------------------------------------------------------


def delivery_retry(*, delivery_id: int, actor: Actor, context: RequestContext = NO_CONTEXT) -> Delivery:
    """Put a dead-lettered (``failed``) delivery back in the queue with its attempts
    reset, audited (``notification.delivery.retried``), and publish it after the
    commit. ``NotFound`` for an unknown id; ``Conflict`` unless it is failed."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None:
            raise NotFound("No such delivery.")
        if delivery.status != DeliveryStatus.FAILED:
            raise Conflict("Only a failed delivery can be retried.", details={"status": delivery.status})
        previous_error = delivery.last_error
        delivery.status = DeliveryStatus.QUEUED
        delivery.attempts = 0
        delivery.next_attempt_at = None
        delivery.failed_at = None
        delivery.last_error = ""
        delivery.save(update_fields=["status", "attempts", "next_attempt_at", "failed_at", "last_error"])
        audit_record(
            action=AuditAction.NOTIFICATION_DELIVERY_RETRIED,
            actor=actor,
            tenant_id=delivery.tenant_id,
            target_type="notifications.delivery",
            target_id=delivery.pk,
            context=context,
            details={"channel": delivery.channel, "previous_error": previous_error[:500]},
        )
        deliveries_dispatch_on_commit([delivery.pk])
    return delivery


def device_disable(
    *,
    channel: str,
    device_id: int,
    actor: Actor,
    reason: str = "Disabled by staff.",
    context: RequestContext = NO_CONTEXT,
) -> bool:
    """Disable a web push subscription (``channel="webpush"``) or a mobile token
    (``"mobile"``) by hand, audited (``notification.device.disabled``). No more
    pushes go to it. Idempotent: False (and nothing audited) when it already was."""
    model = {Channel.WEBPUSH: WebPushSubscription, Channel.MOBILE: MobileToken}.get(channel)
    if model is None:
        raise NotFound("No such device kind.")
    with transaction.atomic():
        device = model.objects.select_for_update().filter(pk=device_id).first()
        if device is None:
            raise NotFound("No such device.")
        if device.disabled_at is not None:
            return False
        device.disabled_at = timezone.now()
        device.disabled_reason = reason[:200]
        device.save(update_fields=["disabled_at", "disabled_reason"])
        audit_record(
            action=AuditAction.NOTIFICATION_DEVICE_DISABLED,
            actor=actor,
            tenant_id=device.tenant_id,
            target_type=model._meta.label_lower,
            target_id=device.pk,
            context=context,
            details={"channel": channel, "user": device.user_id, "reason": device.disabled_reason},
        )
    return True


# --- Digests --------------------------------------------------------------------------


def _digest_message(digest: Digest, deliveries: list[Delivery], titles: dict[tuple, str]) -> Message:
    from ..templates import digest_title

    user = deliveries[0].user
    lines = [titles.get((d.notification_id, d.user_id)) or d.notification.title for d in deliveries]
    body = "\n".join(f"- {line}" for line in lines)
    from django.utils.html import format_html, format_html_join

    html = format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((line,) for line in lines)))
    first = deliveries[0].notification
    return Message(
        delivery_id=deliveries[0].pk,
        notification_id=str(first.pk),
        tenant_id=digest.tenant_id,
        user_id=digest.user_id,
        priority=Priority.LOW,
        category="digest",
        title=digest_title(count=len(deliveries), locale=user.locale),
        body=body,
        html=str(html),
        data={"digest": digest.pk, "notifications": [str(d.notification_id) for d in deliveries]},
        created_at=first.created_at,
    )


def digest_send(*, digest_id: int, now: datetime | None = None) -> str:
    """Send one due digest as one message to its user on its channel, and mark its
    queued deliveries with the outcome (sent, retried, failed).

    Holds the digest's row lock during the provider call, so two beat runs never
    send it twice; a worker that dies mid-call rolls back and the next run sends
    it again (at-least-once). Returns the outcome ("sent", "retried", "failed",
    "empty", "waiting" for a retry not yet due, or "skipped")."""
    now = now or timezone.now()
    with transaction.atomic():
        digest = (
            Digest.objects.select_for_update(skip_locked=True)
            .filter(pk=digest_id, sent_at__isnull=True, window_end__lte=now)
            .first()
        )
        if digest is None:
            return "skipped"
        deliveries = list(
            digest.deliveries.select_for_update()
            .filter(status=DeliveryStatus.QUEUED)
            .select_related("notification", "user")
            .order_by("notification__created_at", "pk")
        )
        if not deliveries:
            digest.sent_at = now
            digest.save(update_fields=["sent_at"])
            return "empty"
        if any(d.next_attempt_at and d.next_attempt_at > now + DUE_TOLERANCE for d in deliveries):
            return "waiting"
        titles = dict(
            ((row.notification_id, row.user_id), row.title)
            for row in NotificationRecipient.objects.filter(
                notification_id__in=[d.notification_id for d in deliveries], user_id=digest.user_id
            )
        )
        outcome = _Outcome()
        try:
            provider = provider_for(digest.channel)
            targets = provider.targets(deliveries[0].user)
            if not targets:
                raise ProviderError(f"The user has no {digest.channel} target.", retryable=False)
            result = _provider_call(provider, [(_digest_message(digest, deliveries, titles), targets)])[0]
            if isinstance(result, ProviderError):
                outcome.error = result
            else:
                outcome.results = list(result)
        except ProviderUnavailable as exc:
            outcome.error = ProviderError(str(exc), retryable=False)
        except ProviderError as exc:
            outcome.error = exc
        taken = [r for r in outcome.results if r.error is None]
        max_attempts = settings.NOTIFICATION_MAX_ATTEMPTS
        attempts = max(d.attempts for d in deliveries) + 1
        if taken:
            status, result_name = DeliveryStatus.SENT, "sent"
        elif outcome.error and outcome.error.retryable and attempts < max_attempts:
            status, result_name = DeliveryStatus.QUEUED, "retried"
        else:
            status, result_name = DeliveryStatus.FAILED, "failed"
        error = "" if taken else _error_text(outcome.error or ProviderError("No target took it.", retryable=False))
        next_attempt = (
            now + timedelta(seconds=backoff_seconds(attempts=attempts, retry_after=outcome.error.retry_after))
            if result_name == "retried"
            else None
        )
        Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
            status=status,
            attempts=attempts,
            last_error=error,
            sending_at=now,
            sent_at=now if taken else None,
            failed_at=now if status == DeliveryStatus.FAILED else None,
            next_attempt_at=next_attempt,
            target=", ".join(r.target.address for r in taken)[:500],
            provider_message_id=",".join(r.provider_message_id for r in taken if r.provider_message_id)[:200],
        )
        if result_name != "retried":
            digest.sent_at = now
            digest.save(update_fields=["sent_at"])
    from ..metrics import deliveries_record

    deliveries_record(
        outcomes=[(digest.channel, result_name)] * len(deliveries),
        latencies=[(digest.channel, (now - d.notification.created_at).total_seconds()) for d in deliveries]
        if taken
        else [],
    )
    return result_name


def digests_send_due(*, now: datetime | None = None) -> dict[str, int]:
    """Send every digest whose window has closed (beat, every minute), up to
    ``DIGESTS_PER_RUN``. Returns the count per outcome."""
    now = now or timezone.now()
    ids = list(
        Digest.objects.filter(sent_at__isnull=True, window_end__lte=now)
        .order_by("window_end")
        .values_list("pk", flat=True)[:DIGESTS_PER_RUN]
    )
    counts: dict[str, int] = defaultdict(int)
    for digest_id in ids:
        try:
            counts[digest_send(digest_id=digest_id, now=now)] += 1
        except Exception:
            logger.exception("sending a digest failed", extra={"digest": digest_id})
            counts["error"] += 1
    return dict(counts)

"""Celery entry points of notifications: thin adapters over
``notifications.services.delivery`` (docs/operations.md, "Notifications").

``deliveries_send`` takes delivery ids and sends the due ones; it is
published by ``deliveries_dispatch`` on the priority's queue (``notifications``
or ``notifications_critical``). Late acks with reject-on-worker-lost: a task
whose worker dies is delivered again, and the service's claim makes that a
no-op for whatever was already claimed. Only database hiccups are retried
here; a provider's failures are the service's retries (per delivery, with
backoff and Retry-After). ``deliveries_relay`` and ``digests_send_due`` run
from beat every minute.
"""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from .services import delivery


@shared_task(
    name="notifications.tasks.deliveries_send",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=5,
)
def deliveries_send(delivery_ids: list[int]) -> dict[str, int]:
    report = delivery.deliveries_attempt(delivery_ids)
    return {
        "sent": len(report.sent),
        "retried": len(report.retried),
        "failed": len(report.failed),
        "skipped": len(report.skipped),
    }


@shared_task(name="notifications.tasks.deliveries_relay", acks_late=True, reject_on_worker_lost=True)
def deliveries_relay() -> dict[str, int]:
    report = delivery.deliveries_relay()
    return {"republished": len(report.republished), "resent": len(report.resent), "failed": len(report.failed)}


@shared_task(name="notifications.tasks.digests_send_due", acks_late=True, reject_on_worker_lost=True)
def digests_send_due() -> dict[str, int]:
    return delivery.digests_send_due()

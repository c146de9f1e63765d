"""Deliveries through real Celery workers on the real Redis broker, to local
SMTP and SMS servers: a send goes out once per channel; a lost publish is
relayed; a worker killed with SIGKILL in the middle of a provider call loses
nothing and sends nothing twice.

These tests start their own workers (they kill them), consuming a queue of
their own (every ``RoutingRule.queue`` points at it), so the suite's shared
worker never takes their tasks, and theirs never take the suite's.
"""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from notifications.constants import Channel, DeliveryStatus, Priority
from notifications.models import Delivery, Notification, NotificationRecipient, NotificationSettings
from notifications.services.delivery import deliveries_dispatch, deliveries_relay
from notifications.services.sending import send_notification
from tests.factories import TenantFactory, UserFactory
from tests.notifications.workers import Worker, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def statuses(ids) -> dict[int, str]:
    return dict(Delivery.objects.filter(pk__in=list(ids)).values_list("pk", "status"))


def test_a_critical_send_reaches_smtp_and_sms_through_a_real_worker(tmp_path, queue, services):
    smtp, sms, env = services
    tenant = TenantFactory()
    user = UserFactory(tenant=tenant, email="ana@example.com")
    NotificationSettings.objects.create(tenant=tenant, user=user, phone="+33612345678")
    worker = Worker(tmp_path, queue=queue, env=env, name="deliver").start()
    try:
        outcome = send_notification(
            tenant_id=tenant.pk,
            title="Server maintenance",
            content="Tonight at 22:00",
            priority=Priority.CRITICAL,
            category="maintenance",
            recipients={"users": [user.pk]},
        )
        rows = Delivery.objects.filter(notification_id=outcome.notification.pk)
        assert set(rows.values_list("channel", flat=True)) >= {Channel.EMAIL, Channel.SMS, Channel.WEBSOCKET}
        wait_until(
            lambda: set(rows.values_list("status", flat=True)) == {DeliveryStatus.SENT},
            what=f"every delivery sent: {list(rows.values_list('channel', 'status', 'last_error'))}",
        )
    finally:
        worker.stop()

    [mail] = smtp.messages
    assert mail["Subject"] == "Server maintenance" and mail["To"] == "ana@example.com"
    [text] = sms.accepted
    assert text.form()["To"] == "+33612345678" and text.form()["Body"] == "Server maintenance\nTonight at 22:00"
    assert rows.get(channel=Channel.SMS).provider_message_id.startswith("SM")


def test_the_relay_sends_a_delivery_whose_publish_was_lost(tmp_path, queue, services, settings):
    smtp, _sms, env = services
    settings.NOTIFICATION_RELAY_GRACE_SECONDS = 10
    tenant = TenantFactory()
    user = UserFactory(tenant=tenant, email="ana@example.com")
    notification = Notification.objects.create(
        tenant=tenant, category="news", title="Lost", content="Found", audience={"users": [user.pk]}
    )
    NotificationRecipient.objects.create(tenant=tenant, notification=notification, user=user, title="Lost", content="x")
    # Committed, but the process died before its after-commit publish.
    row = Delivery.objects.create(tenant=tenant, notification=notification, user=user, channel=Channel.EMAIL)
    Delivery.objects.filter(pk=row.pk).update(created_at=timezone.now() - timezone.timedelta(minutes=1))
    worker = Worker(tmp_path, queue=queue, env=env, name="relay").start()
    try:
        assert deliveries_relay().republished == [row.pk]
        wait_until(lambda: statuses([row.pk]) == {row.pk: DeliveryStatus.SENT}, what="the relayed delivery")
    finally:
        worker.stop()
    assert [m["Subject"] for m in smtp.messages] == ["Lost"]


def test_a_worker_killed_mid_call_loses_nothing_and_sends_nothing_twice(tmp_path, queue, services, settings):
    """kill -9 of the whole worker while the SMS service holds its request.

    The service never answered that request (it drops it once the client is
    gone): it did not take the message. The delivery stays ``sending``; the
    other deliveries go through a new worker; the relay, once the sending
    timeout has passed, sends the interrupted one again. The service accepts
    each message exactly once and every delivery ends ``sent``. (Had the
    service taken the message before the kill, the resend would duplicate it:
    the at-least-once window documented in notifications.services.delivery.)
    """
    _smtp, sms, env = services
    tenant = TenantFactory()
    users = [UserFactory(tenant=tenant) for _ in range(3)]
    phones = [f"+3361234567{i}" for i in range(3)]
    ids = []
    for user, phone in zip(users, phones, strict=True):
        NotificationSettings.objects.create(tenant=tenant, user=user, phone=phone)
        notification = Notification.objects.create(
            tenant=tenant, category="news", title="Hello", content=phone, audience={"users": [user.pk]}
        )
        NotificationRecipient.objects.create(
            tenant=tenant, notification=notification, user=user, title="Hello", content=phone
        )
        ids.append(Delivery.objects.create(tenant=tenant, notification=notification, user=user, channel="sms").pk)
    sms.hang(1)
    assert deliveries_dispatch(ids) == 3  # SMS: one delivery per task

    first = Worker(tmp_path, queue=queue, env=env, name="doomed").start()
    try:
        [held] = sms.wait_for_requests(1, timeout=20)
        time.sleep(0.2)  # the worker is blocked in the provider call
        first.kill()
    finally:
        first.stop()
    sms.release()
    wait_until(lambda: len(sms.dropped) == 1, what="the held request to be dropped")
    interrupted = Delivery.objects.get(status=DeliveryStatus.SENDING, pk__in=ids)
    assert held.form()["To"] == interrupted.notification.content

    second = Worker(tmp_path, queue=queue, env=env, name="survivor").start()
    try:
        others = [pk for pk in ids if pk != interrupted.pk]
        wait_until(lambda: set(statuses(others).values()) == {DeliveryStatus.SENT}, what="the other deliveries")
        assert statuses([interrupted.pk]) == {interrupted.pk: DeliveryStatus.SENDING}  # nobody resent it early
        settings.NOTIFICATION_SENDING_TIMEOUT_SECONDS = 0  # the timeout has passed
        assert deliveries_relay().resent == [interrupted.pk]
        wait_until(lambda: set(statuses(ids).values()) == {DeliveryStatus.SENT}, what="every delivery sent")
    finally:
        second.stop()

    accepted = sorted(request.form()["To"] for request in sms.accepted)
    assert accepted == sorted(phones)  # each message taken exactly once
    assert len(sms.dropped) == 1
    interrupted.refresh_from_db()
    assert interrupted.attempts == 2 and interrupted.provider_message_id.startswith("SM")


def test_a_websocket_delivery_reaches_the_users_socket_and_its_ack_marks_it_delivered(
    tmp_path, queue, services, live_server_url
):
    import asyncio

    from channels.db import database_sync_to_async

    from tests.listening.support import client_for, next_frame

    _smtp, _sms, env = services
    tenant = TenantFactory()
    user = UserFactory(tenant=tenant)
    worker = Worker(tmp_path, queue=queue, env=env, name="socket").start()

    async def scenario():
        async with client_for(live_server_url, user) as client:
            await asyncio.sleep(0.2)  # the socket has joined the user's group
            outcome = await database_sync_to_async(send_notification)(
                tenant_id=tenant.pk,
                title="Live now",
                content="Ana started a session",
                priority=Priority.HIGH,
                category="listening",
                data={"session": 7},
                recipients={"users": [user.pk]},
            )
            frame = await next_frame(client, "notification", timeout=20)
            notification_id = str(outcome.notification.pk)
            await client.request("notification.ack", content={"notification": notification_id})
            return frame, notification_id

    try:
        frame, notification_id = asyncio.run(scenario())
    finally:
        worker.stop()

    content = frame["content"]
    assert content["id"] == notification_id
    assert (content["title"], content["content"], content["priority"]) == ("Live now", "Ana started a session", "high")
    assert content["category"] == "listening" and content["data"] == {"session": 7} and content["created_at"]
    row = Delivery.objects.get(notification_id=notification_id, channel=Channel.WEBSOCKET)
    assert row.status == DeliveryStatus.DELIVERED and row.sent_at and row.delivered_at

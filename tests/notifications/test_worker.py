"""Deliveries through real Celery workers on the real Redis broker, to local
SMTP and SMS servers: a send goes out once per channel; a lost publish is
relayed; a worker killed with SIGKILL in the middle of a provider call loses
nothing and sends nothing twice.

These tests start their own workers (they kill them), consuming a queue of
their own (every ``RoutingRule.queue`` points at it), so the suite's shared
worker never takes their tasks, and theirs never take the suite's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from notifications.constants import Channel, DeliveryStatus, Priority
from notifications.models import Delivery, Notification, NotificationRecipient, NotificationSettings, RoutingRule
from notifications.services.delivery import deliveries_dispatch, deliveries_relay
from notifications.services.sending import send_notification
from spotify_agent.processes import stop_process
from tests.conftest import ROOT, subprocess_env
from tests.factories import TenantFactory, UserFactory
from tests.notifications.servers import SmtpServer, TwilioSms, routing_rules_seed

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


class Worker:
    """A Celery worker process (prefork, its own process group) on one queue."""

    def __init__(self, log_dir: Path, *, queue: str, env: dict[str, str], name: str, concurrency: int = 1) -> None:
        self.hostname = f"{name}-{uuid.uuid4().hex[:6]}@localhost"
        self.log = log_dir / f"{name}.log"
        self.queue, self.env, self.concurrency = queue, env, concurrency
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "spotify_agent",
                    "worker",
                    "-Q",
                    self.queue,
                    "-c",
                    str(self.concurrency),
                    "-P",
                    "prefork",
                    "-n",
                    self.hostname,
                    "--without-gossip",
                    "--without-mingle",
                    "-l",
                    "INFO",
                ],
                cwd=ROOT,
                env=subprocess_env(**self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, for kill -9 of the whole worker
            )
        from spotify_agent.celery import app

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited:\n{self.log.read_text()[-4000:]}")
            if app.control.ping(destination=[self.hostname], timeout=0.5):
                return self
        self.stop()
        raise RuntimeError(f"celery worker did not answer ping:\n{self.log.read_text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL the main process and its pool children at once."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # pool children left behind, if any
        except ProcessLookupError:
            pass


@pytest.fixture
def queue():
    name = f"test-notify-worker-{uuid.uuid4().hex[:8]}"
    routing_rules_seed()
    RoutingRule.objects.update(queue=name)
    yield name
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    client.delete(name, *[f"{name}\x06\x16{step}" for step in (3, 6, 9)])
    client.close()


@pytest.fixture
def services(settings):
    """The local SMTP and SMS servers, and the settings pointing this process at them."""
    with SmtpServer() as smtp, TwilioSms() as sms:
        env = {**smtp.env(), **sms.env(), "SMS_TIMEOUT": "2", "EMAIL_TIMEOUT": "2"}
        for name, value in env.items():
            setattr(settings, name, int(value) if name in {"EMAIL_PORT", "EMAIL_TIMEOUT"} else value)
        settings.SMS_TIMEOUT = 2.0
        yield smtp, sms, env


def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


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

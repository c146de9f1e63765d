"""The delivery service (notifications.services.delivery) against real local
providers: claims and idempotency, retries with backoff and Retry-After, dead
letters, fallback, disabled targets, the dispatch's queues, priorities and
batches (read back from the real Redis broker), the relay, staff retry and
digests."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from audit.constants import AuditAction
from audit.models import AuditEvent
from audit.services import Actor
from notifications.constants import Channel, DeliveryStatus, Priority
from notifications.metrics import DeliveryCollector
from notifications.models import (
    Delivery,
    Digest,
    Notification,
    NotificationPreference,
    NotificationRecipient,
    NotificationSettings,
    RoutingRule,
    WebPushSubscription,
)
from notifications.providers import PROVIDERS, providers_reset
from notifications.services.delivery import (
    backoff_seconds,
    deliveries_attempt,
    deliveries_dispatch,
    deliveries_relay,
    delivery_retry,
    digests_send_due,
)
from spotify_agent.errors import Conflict, NotFound
from tests.factories import UserFactory
from tests.notifications.servers import SmtpServer, TwilioSms, routing_rules_seed

PHONE = "+33612345678"


# --- Rows -----------------------------------------------------------------------------------


def notify(tenant, user, *, priority=Priority.NORMAL, title="Inbox title", content="Inbox text", **extra):
    notification = Notification.objects.create(
        tenant=tenant,
        priority=priority,
        category=extra.pop("category", "social-follow"),
        title="Sender's title",
        content="Sender's text",
        data=extra.pop("data", {"k": 1}),
        audience={"users": [user.pk]},
        recipient_count=1,
        **extra,
    )
    NotificationRecipient.objects.create(
        tenant=tenant, notification=notification, user=user, title=title, content=content
    )
    return notification


def delivery(notification, user, channel=Channel.SMS, **fields) -> Delivery:
    return Delivery.objects.create(
        tenant_id=notification.tenant_id, notification=notification, user=user, channel=channel, **fields
    )


def reload(row):
    row.refresh_from_db()
    return row


@pytest.fixture
def phone_user(user):
    NotificationSettings.objects.create(tenant=user.membership.tenant, user=user, phone=PHONE)
    return user


@pytest.fixture
def twilio(settings):
    with TwilioSms() as server:
        for name, value in server.env().items():
            setattr(settings, name, value)
        settings.SMS_MESSAGING_SERVICE_SID = ""
        settings.SMS_TIMEOUT = 0.5
        yield server


@pytest.fixture
def smtp(settings):
    with SmtpServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        yield server


@pytest.fixture(autouse=True)
def _routing_rules(db):
    routing_rules_seed()


@pytest.fixture(autouse=True)
def _retry_settings(settings):
    settings.NOTIFICATION_RETRY_BASE_SECONDS = 10
    settings.NOTIFICATION_RETRY_MAX_SECONDS = 60
    settings.NOTIFICATION_MAX_ATTEMPTS = 3
    providers_reset()
    yield
    providers_reset()


# --- The broker, read back ------------------------------------------------------------------------


@pytest.fixture
def queue(db):
    """Every priority's queue renamed to one no worker consumes; its messages read back from Redis."""
    if not django_settings.REDIS_URL:
        pytest.skip("needs the real Redis broker")
    name = f"test-notifications-{uuid.uuid4().hex[:8]}"
    RoutingRule.objects.update(queue=name)
    yield name
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    client.delete(name, *[f"{name}\x06\x16{step}" for step in (3, 6, 9)])
    client.close()


def published(queue: str) -> list[dict]:
    """The tasks waiting in ``queue``, highest priority first: ids, priority, eta."""
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    found = []
    for step in (0, 3, 6, 9):
        key = queue if step == 0 else f"{queue}\x06\x16{step}"
        for raw in reversed(client.lrange(key, 0, -1)):
            item = json.loads(raw)
            args, _kwargs, _embed = json.loads(base64.b64decode(item["body"]))
            found.append(
                {
                    "task": item["headers"]["task"],
                    "ids": args[0],
                    "priority": item["properties"]["priority"],
                    "eta": item["headers"].get("eta"),
                }
            )
    client.close()
    return found


# --- One attempt ---------------------------------------------------------------------------


def test_attempt_sends_the_inbox_text_and_records_the_outcome(phone_user, tenant, twilio):
    row = delivery(notify(tenant, phone_user), phone_user)

    report = deliveries_attempt([row.pk])

    assert report.sent == [row.pk]
    row = reload(row)
    assert row.status == DeliveryStatus.SENT and row.attempts == 1
    assert row.sent_at and row.sending_at and row.failed_at is None and row.last_error == ""
    assert row.target == PHONE
    [request] = twilio.accepted
    assert request.form()["Body"] == "Inbox title\nInbox text"
    assert row.provider_message_id.startswith("SM")


def test_attempt_is_idempotent_a_second_task_sends_nothing(phone_user, tenant, twilio):
    row = delivery(notify(tenant, phone_user), phone_user)

    deliveries_attempt([row.pk])
    again = deliveries_attempt([row.pk])

    assert again.skipped == [row.pk] and again.sent == []
    assert len(twilio.requests) == 1
    assert reload(row).attempts == 1


@pytest.mark.django_db(transaction=True)
def test_a_status_moved_past_sent_during_the_call_is_kept(phone_user, tenant, settings):
    """A client's ack (or a read) lands while the provider call is under way:
    recording the call's outcome must not turn "delivered" back into "sent"."""
    from django.db import connection

    row = delivery(notify(tenant, phone_user), phone_user)
    acked_at = timezone.now()

    class AckingTwilio(TwilioSms):
        def _messages(self, request):
            Delivery.objects.filter(pk=row.pk).update(status=DeliveryStatus.DELIVERED, delivered_at=acked_at)
            connection.close()  # this server thread's own connection
            return super()._messages(request)

    with AckingTwilio() as server:
        for name, value in server.env().items():
            setattr(settings, name, value)
        settings.SMS_MESSAGING_SERVICE_SID = ""
        deliveries_attempt([row.pk])

    row = reload(row)
    assert row.status == DeliveryStatus.DELIVERED and row.delivered_at == acked_at
    assert row.sent_at and row.provider_message_id.startswith("SM")


@pytest.mark.parametrize(
    "fields",
    [
        {"status": DeliveryStatus.SENDING},
        {"status": DeliveryStatus.FAILED},
        {"next_attempt_at": "future"},
    ],
    ids=["sending-elsewhere", "dead-lettered", "held"],
)
def test_attempt_skips_what_is_not_queued_and_due(phone_user, tenant, twilio, fields):
    if fields.get("next_attempt_at") == "future":
        fields = {"next_attempt_at": timezone.now() + timedelta(minutes=5)}
    row = delivery(notify(tenant, phone_user), phone_user, **fields)

    assert deliveries_attempt([row.pk]).skipped == [row.pk]
    assert twilio.requests == []


def test_retryable_error_requeues_with_jittered_backoff_and_publishes(
    phone_user, tenant, twilio, queue, django_capture_on_commit_callbacks
):
    twilio.fail(1, 503, {"code": 20503, "message": "Service unavailable"})
    row = delivery(notify(tenant, phone_user, priority=Priority.HIGH), phone_user)
    before = timezone.now()

    with django_capture_on_commit_callbacks(execute=True):
        report = deliveries_attempt([row.pk])

    assert report.retried == [row.pk]
    row = reload(row)
    assert row.status == DeliveryStatus.QUEUED and row.attempts == 1
    assert "503" in row.last_error
    # Full jitter: between 1 s and the base (attempt 1) of 10 s.
    assert before + timedelta(seconds=1) <= row.next_attempt_at <= timezone.now() + timedelta(seconds=10)
    [task] = published(queue)
    assert task["task"] == "notifications.tasks.deliveries_send" and task["ids"] == [row.pk]
    assert task["priority"] == 3 and task["eta"]  # HIGH, with a countdown to the next attempt


def test_retry_after_longer_than_the_backoff_wins(phone_user, tenant, twilio):
    twilio.throttle(1, retry_after=120)
    row = delivery(notify(tenant, phone_user), phone_user)

    deliveries_attempt([row.pk])

    wait = (reload(row).next_attempt_at - timezone.now()).total_seconds()
    assert 115 <= wait <= 120


def test_out_of_attempts_dead_letters(phone_user, tenant, twilio):
    twilio.fail(3, 500)
    row = delivery(notify(tenant, phone_user), phone_user)

    for _ in range(3):
        Delivery.objects.filter(pk=row.pk).update(next_attempt_at=None)
        deliveries_attempt([row.pk])

    row = reload(row)
    assert row.status == DeliveryStatus.FAILED and row.attempts == 3 and row.failed_at
    assert row.last_error.startswith("Gave up after 3 attempts") and "500" in row.last_error
    assert len(twilio.requests) == 3


def test_permanent_error_dead_letters_at_once(user, tenant, twilio):
    NotificationSettings.objects.create(tenant=tenant, user=user, phone="0612")  # not E.164: Twilio's 21211
    row = delivery(notify(tenant, user), user)

    report = deliveries_attempt([row.pk])

    assert report.failed == [row.pk]
    row = reload(row)
    assert row.status == DeliveryStatus.FAILED and row.attempts == 1 and "21211" in row.last_error


def test_no_target_fails_clearly(user, tenant, twilio):
    row = delivery(notify(tenant, user), user)  # no phone number

    deliveries_attempt([row.pk])

    row = reload(row)
    assert row.status == DeliveryStatus.FAILED and "no sms target" in row.last_error


def test_a_missing_provider_fails_only_its_channel(phone_user, tenant, twilio, monkeypatch, smtp):
    monkeypatch.setitem(PROVIDERS, Channel.SMS, "notifications.providers.absent:SmsProvider")
    providers_reset()
    notification = notify(tenant, phone_user)
    sms, email = delivery(notification, phone_user), delivery(notification, phone_user, Channel.EMAIL)

    deliveries_attempt([sms.pk, email.pk])

    assert reload(sms).status == DeliveryStatus.FAILED and "cannot be imported" in sms.last_error
    assert reload(email).status == DeliveryStatus.SENT and len(smtp.messages) == 1


def test_backoff_grows_to_the_cap_and_honours_retry_after(settings):
    settings.NOTIFICATION_RETRY_BASE_SECONDS, settings.NOTIFICATION_RETRY_MAX_SECONDS = 10, 60
    assert all(1 <= backoff_seconds(attempts=1) <= 10 for _ in range(50))
    assert max(backoff_seconds(attempts=3) for _ in range(200)) > 20  # up to 40
    assert all(backoff_seconds(attempts=10) <= 60 for _ in range(50))
    assert backoff_seconds(attempts=1, retry_after=300) == 300


# --- Fallback and gone targets -----------------------------------------------------------------


def test_push_without_target_falls_back_to_the_next_channel_the_user_allows(user, tenant, smtp):
    NotificationPreference.objects.create(tenant=tenant, user=user, category="*", channel=Channel.EMAIL, enabled=True)
    notification = notify(tenant, user, priority=Priority.HIGH)
    push = delivery(notification, user, Channel.WEBPUSH)

    report = deliveries_attempt([push.pk])

    assert report.failed == [push.pk]
    push = reload(push)
    assert push.status == DeliveryStatus.FAILED and "no webpush target" in push.last_error
    # Mobile is next but the user has no token; email is allowed and reachable.
    fallback = Delivery.objects.get(fallback_of=push)
    assert (fallback.channel, fallback.status, fallback.notification_id) == (
        Channel.EMAIL,
        DeliveryStatus.QUEUED,
        notification.pk,
    )
    assert report.fallbacks == [fallback.pk]

    deliveries_attempt([fallback.pk])
    assert reload(fallback).status == DeliveryStatus.SENT and smtp.messages[0]["Subject"] == "Inbox title"


def test_no_fallback_to_a_channel_the_user_did_not_allow(user, tenant):
    # HIGH does not email by default and the user did not opt in.
    push = delivery(notify(tenant, user, priority=Priority.HIGH), user, Channel.WEBPUSH)

    deliveries_attempt([push.pk])

    assert reload(push).status == DeliveryStatus.FAILED
    assert not Delivery.objects.filter(fallback_of=push).exists()


def test_critical_falls_back_whatever_the_preferences(user, tenant):
    NotificationPreference.objects.create(tenant=tenant, user=user, category="*", channel=Channel.EMAIL, enabled=False)
    push = delivery(notify(tenant, user, priority=Priority.CRITICAL), user, Channel.MOBILE)

    deliveries_attempt([push.pk])

    assert Delivery.objects.get(fallback_of=push).channel == Channel.EMAIL


def test_no_fallback_onto_a_channel_the_notification_already_took(user, tenant):
    NotificationPreference.objects.create(tenant=tenant, user=user, category="*", channel=Channel.EMAIL, enabled=True)
    notification = notify(tenant, user, priority=Priority.HIGH)
    delivery(notification, user, Channel.EMAIL, status=DeliveryStatus.SENT)
    push = delivery(notification, user, Channel.WEBPUSH)

    deliveries_attempt([push.pk])

    assert not Delivery.objects.filter(fallback_of=push).exists()


def test_gone_subscription_is_disabled_and_the_push_falls_back(user, tenant, settings):
    import base64 as b64

    from cryptography.hazmat.primitives.asymmetric import ec

    from notifications.providers.webpush import load_vapid, vapid_application_server_key
    from tests.notifications.push_servers import WebPushService

    raw = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value.to_bytes(32, "big")
    settings.WEBPUSH_VAPID_PRIVATE_KEY = b64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    settings.WEBPUSH_VAPID_SUBJECT = "mailto:ops@example.com"
    settings.PUSH_HTTP_TIMEOUT = 2.0
    providers_reset()
    public = vapid_application_server_key(load_vapid(settings.WEBPUSH_VAPID_PRIVATE_KEY))
    service = WebPushService(vapid_public_key=public, subject="mailto:ops@example.com").start()
    try:
        gone, live = service.subscribe("gone"), service.subscribe("live")
        service.behave("gone", 410)
        service.behave("live", 410)
        rows = [
            WebPushSubscription.objects.create(
                tenant=tenant, user=user, endpoint=s.endpoint, p256dh=s.keys["p256dh"], auth=s.keys["auth"]
            )
            for s in (gone, live)
        ]
        NotificationPreference.objects.create(
            tenant=tenant, user=user, category="*", channel=Channel.EMAIL, enabled=True
        )
        push = delivery(notify(tenant, user, priority=Priority.HIGH), user, Channel.WEBPUSH)

        deliveries_attempt([push.pk])
    finally:
        service.stop()

    assert reload(push).status == DeliveryStatus.FAILED
    for row in rows:
        row.refresh_from_db()
        assert row.disabled_at is not None and "410" in row.disabled_reason
    assert Delivery.objects.get(fallback_of=push).channel == Channel.EMAIL


# --- Dispatch ------------------------------------------------------------------------------------


def test_dispatch_batches_one_channel_per_task_on_the_rules_queue_by_priority(user, tenant, queue, settings):
    settings.MESSAGE_BATCH_SIZE = 2
    others = [UserFactory(tenant=tenant) for _ in range(4)]
    critical = notify(tenant, user, priority=Priority.CRITICAL)
    low = notify(tenant, user, priority=Priority.LOW)
    emails = [delivery(critical, u, Channel.EMAIL) for u in [user, *others]]
    sms = delivery(critical, user, Channel.SMS)
    low_ws = delivery(low, user, Channel.WEBSOCKET)

    assert deliveries_dispatch([d.pk for d in [*emails, sms, low_ws]]) == 5

    tasks = published(queue)
    assert [t["priority"] for t in tasks] == [0, 0, 0, 0, 9]  # CRITICAL first, LOW last
    email_batches = [t["ids"] for t in tasks if set(t["ids"]) <= {d.pk for d in emails}]
    assert sorted(len(b) for b in email_batches) == [1, 2, 2]  # MESSAGE_BATCH_SIZE per task
    assert [sms.pk] in [t["ids"] for t in tasks]  # SMS: one per call
    assert tasks[-1]["ids"] == [low_ws.pk]
    assert all(t["eta"] is None for t in tasks)


def test_dispatch_holds_with_a_countdown_and_leaves_long_holds_and_digests_to_others(user, tenant, queue):
    notification = notify(tenant, user)
    soon = delivery(notification, user, Channel.EMAIL, next_attempt_at=timezone.now() + timedelta(minutes=10))
    later = delivery(notification, user, Channel.SMS, next_attempt_at=timezone.now() + timedelta(hours=5))
    now = timezone.now()
    digest = Digest.objects.create(
        tenant=tenant, user=user, channel=Channel.WEBPUSH, window_start=now, window_end=now + timedelta(hours=1)
    )
    in_digest = delivery(notification, user, Channel.WEBPUSH, digest=digest)
    sent = delivery(notification, user, Channel.WEBSOCKET, status=DeliveryStatus.SENT)

    deliveries_dispatch([soon.pk, later.pk, in_digest.pk, sent.pk])

    [task] = published(queue)
    assert task["ids"] == [soon.pk] and task["eta"]


# --- Relay ---------------------------------------------------------------------------------------


def test_relay_publishes_a_lost_delivery_once_per_grace_period(
    user, tenant, queue, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATION_RELAY_GRACE_SECONDS = 60
    notification = notify(tenant, user)
    lost = delivery(notification, user, Channel.EMAIL)
    fresh = delivery(notification, user, Channel.WEBSOCKET)
    Delivery.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(minutes=5))

    with django_capture_on_commit_callbacks(execute=True):
        report = deliveries_relay()
    with django_capture_on_commit_callbacks(execute=True):
        deliveries_relay()  # at once again: within the grace period, not published twice

    assert report.republished == [lost.pk]
    assert [t["ids"] for t in published(queue)] == [[lost.pk]]
    assert reload(lost).next_attempt_at is not None and reload(fresh).next_attempt_at is None


def test_relay_sends_again_a_delivery_whose_worker_died_mid_call(
    user, tenant, queue, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATION_SENDING_TIMEOUT_SECONDS = 60
    notification = notify(tenant, user)
    old = timezone.now() - timedelta(minutes=5)
    stuck = delivery(notification, user, Channel.EMAIL, status=DeliveryStatus.SENDING, sending_at=old, attempts=1)
    busy = delivery(notification, user, Channel.SMS, status=DeliveryStatus.SENDING, sending_at=timezone.now())
    spent = delivery(notification, user, Channel.WEBSOCKET, status=DeliveryStatus.SENDING, sending_at=old, attempts=3)

    with django_capture_on_commit_callbacks(execute=True):
        report = deliveries_relay()

    assert report.resent == [stuck.pk] and report.failed == [spent.pk]
    stuck = reload(stuck)
    assert stuck.status == DeliveryStatus.QUEUED and "worker was lost" in stuck.last_error
    assert reload(busy).status == DeliveryStatus.SENDING
    assert reload(spent).status == DeliveryStatus.FAILED and reload(spent).failed_at
    assert [t["ids"] for t in published(queue)] == [[stuck.pk]]


def test_relay_publishes_a_long_hold_falling_due_before_its_next_run(
    user, tenant, queue, django_capture_on_commit_callbacks
):
    due_soon = delivery(
        notify(tenant, user), user, Channel.EMAIL, next_attempt_at=timezone.now() + timedelta(seconds=30)
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert deliveries_relay().republished == [due_soon.pk]
    [task] = published(queue)
    assert task["eta"]


# --- Staff retry ---------------------------------------------------------------------------------


def test_staff_retry_requeues_a_dead_letter_audited_and_published(
    user, tenant, queue, django_capture_on_commit_callbacks
):
    staff = UserFactory(tenant=None, is_staff=True)
    dead = delivery(
        notify(tenant, user),
        user,
        Channel.EMAIL,
        status=DeliveryStatus.FAILED,
        attempts=3,
        failed_at=timezone.now(),
        last_error="SMTP 550",
    )

    with django_capture_on_commit_callbacks(execute=True):
        delivery_retry(delivery_id=dead.pk, actor=Actor.user(staff))

    dead = reload(dead)
    assert (dead.status, dead.attempts, dead.failed_at, dead.last_error) == (DeliveryStatus.QUEUED, 0, None, "")
    event = AuditEvent.objects.get(action=AuditAction.NOTIFICATION_DELIVERY_RETRIED)
    assert event.target_id == str(dead.pk) and event.tenant_id == tenant.pk
    assert event.details["previous_error"] == "SMTP 550"
    assert [t["ids"] for t in published(queue)] == [[dead.pk]]


def test_staff_retry_refuses_what_is_not_dead(user, tenant):
    sent = delivery(notify(tenant, user), user, Channel.EMAIL, status=DeliveryStatus.SENT)

    with pytest.raises(Conflict):
        delivery_retry(delivery_id=sent.pk, actor=Actor.system("tests"))
    with pytest.raises(NotFound):
        delivery_retry(delivery_id=sent.pk + 1000, actor=Actor.system("tests"))


# --- Digests -------------------------------------------------------------------------------------


def test_due_digest_goes_as_one_message_and_marks_its_deliveries_sent(user, tenant, smtp):
    now = timezone.now()
    digest = Digest.objects.create(
        tenant=tenant,
        user=user,
        channel=Channel.EMAIL,
        window_start=now - timedelta(hours=1),
        window_end=now - timedelta(seconds=1),
    )
    rows = [
        delivery(notify(tenant, user, priority=Priority.LOW, title=f"Title {i}"), user, Channel.EMAIL, digest=digest)
        for i in range(3)
    ]
    open_digest = Digest.objects.create(
        tenant=tenant, user=user, channel=Channel.SMS, window_start=now, window_end=now + timedelta(hours=1)
    )

    assert digests_send_due() == {"sent": 1}
    assert digests_send_due() == {}  # sent once

    [mail] = smtp.messages
    assert mail["Subject"] == "3 new notifications"
    text = mail.get_body(("plain",)).get_content()
    assert all(f"- Title {i}" in text for i in range(3))
    assert "<li>Title 0</li>" in mail.get_body(("html",)).get_content()
    assert {reload(r).status for r in rows} == {DeliveryStatus.SENT}
    assert reload(digest).sent_at is not None and reload(open_digest).sent_at is None


# --- Metrics -------------------------------------------------------------------------------------


def test_outcomes_and_latency_are_counted_for_the_scrape(phone_user, tenant, twilio):
    twilio.fail(1, 500)
    notification = notify(tenant, phone_user)
    row = delivery(notification, phone_user)
    deliveries_attempt([row.pk])
    Delivery.objects.filter(pk=row.pk).update(next_attempt_at=None)
    deliveries_attempt([row.pk])
    delivery(notification, phone_user, Channel.EMAIL, status=DeliveryStatus.FAILED)

    families = {family.name: family for family in DeliveryCollector().collect()}

    counts = {
        (s.labels["channel"], s.labels["outcome"]): s.value
        for s in families["notifications_deliveries"].samples
        if s.name.endswith("_total")
    }
    assert counts[("sms", "retried")] == 1 and counts[("sms", "sent")] == 1 and counts[("email", "sent")] == 0
    latency = {
        s.labels.get("le"): s.value
        for s in families["notifications_delivery_latency_seconds"].samples
        if s.labels["channel"] == "sms" and s.name.endswith("_bucket")
    }
    assert latency["+Inf"] == 1 and latency["0.5"] <= 1
    dead = {s.labels["channel"]: s.value for s in families["notifications_deliveries_dead"].samples}
    assert dead["email"] == 1 and dead["sms"] == 0


# --- Admin ---------------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, db):
    client.force_login(UserFactory(username="root", tenant=None, is_staff=True, is_superuser=True))
    return client


def test_admin_retry_action_requeues_failed_deliveries_and_skips_others(
    staff_client, user, tenant, queue, django_capture_on_commit_callbacks
):
    from django.urls import reverse

    notification = notify(tenant, user)
    dead = delivery(notification, user, Channel.EMAIL, status=DeliveryStatus.FAILED, attempts=3, last_error="x")
    sent = delivery(notification, user, Channel.SMS, status=DeliveryStatus.SENT)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:notifications_delivery_changelist"),
            {"action": "retry_deliveries", "_selected_action": [dead.pk, sent.pk]},
            follow=True,
        )

    assert response.status_code == 200
    assert "1 delivery queued again (1 skipped: not failed)." in response.content.decode()
    assert reload(dead).status == DeliveryStatus.QUEUED and reload(dead).attempts == 0
    assert reload(sent).status == DeliveryStatus.SENT
    assert AuditEvent.objects.filter(action=AuditAction.NOTIFICATION_DELIVERY_RETRIED, target_id=str(dead.pk)).exists()
    assert [t["ids"] for t in published(queue)] == [[dead.pk]]


def test_admin_disables_a_mobile_token_audited(staff_client, user, tenant):
    from django.urls import reverse

    from notifications.models import MobileToken

    token = MobileToken.objects.create(tenant=tenant, user=user, platform="fcm", token="t-1")

    for _ in range(2):  # the second time there is nothing left to do
        staff_client.post(
            reverse("admin:notifications_mobiletoken_changelist"),
            {"action": "disable_devices", "_selected_action": [token.pk]},
        )

    token.refresh_from_db()
    assert token.disabled_at is not None and token.disabled_reason == "Disabled by staff."
    assert AuditEvent.objects.filter(action=AuditAction.NOTIFICATION_DEVICE_DISABLED).count() == 1

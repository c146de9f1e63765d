"""The email and SMS providers against real local servers (aiosmtpd, an HTTP
server playing Twilio), and the WebSocket provider against the real Redis
channel layer: what goes on the wire, and how each failure is classified."""

from __future__ import annotations

import time
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from notifications.constants import Priority
from notifications.models import NotificationSettings
from notifications.providers.base import Message, ProviderError, Target
from notifications.providers.email import EmailProvider
from notifications.providers.sms import BODY_MAX_LENGTH, SmsProvider, retry_after_seconds
from notifications.providers.websocket import WebSocketProvider
from tests.factories import UserFactory
from tests.notifications.servers import SilentTcpServer, SmtpServer, TwilioSms


def message(*, delivery_id=1, title="New follower", body="Bob follows you", html="", **extra) -> Message:
    return Message(
        delivery_id=delivery_id,
        notification_id=str(uuid.uuid4()),
        tenant_id=1,
        user_id=1,
        priority=extra.pop("priority", Priority.NORMAL),
        category="social.follow",
        title=title,
        body=body,
        html=html,
        data=extra.pop("data", {}),
        created_at=timezone.now(),
    )


# --- Email ------------------------------------------------------------------------------


@pytest.fixture
def smtp(settings):
    with SmtpServer() as server:
        for name, value in server.env().items():
            setattr(settings, name, int(value) if name == "EMAIL_PORT" else value)
        settings.DEFAULT_FROM_EMAIL = "notify@example.com"
        settings.EMAIL_TIMEOUT = 2
        yield server


def test_email_sends_text_and_html_parts_from_the_configured_sender(smtp):
    results = EmailProvider().send(message(html="<p>Bob <b>follows</b> you</p>"), [Target(address="alice@example.com")])

    assert [r.target.address for r in results] == ["alice@example.com"]
    [sent] = smtp.messages
    assert sent["Subject"] == "New follower"
    assert sent["From"] == "notify@example.com" and sent["To"] == "alice@example.com"
    assert sent["X-Notification-Id"]
    assert sent.get_body(("plain",)).get_content().strip() == "Bob follows you"
    assert sent.get_body(("html",)).get_content().strip() == "<p>Bob <b>follows</b> you</p>"


def test_email_batch_goes_over_one_connection(smtp):
    batch = [(message(delivery_id=i, title=f"T{i}"), [Target(address=f"u{i}@example.com")]) for i in range(5)]

    results = EmailProvider().send_batch(batch)

    assert all(isinstance(r, list) and len(r) == 1 for r in results)
    assert sorted(m["Subject"] for m in smtp.messages) == [f"T{i}" for i in range(5)]
    assert smtp.handler.sessions == 1


def test_email_5xx_refusal_is_permanent_and_the_batch_goes_on(smtp):
    smtp.refuse(1, "550 5.1.1 No such user here")
    batch = [(message(delivery_id=i), [Target(address=f"u{i}@example.com")]) for i in range(2)]

    first, second = EmailProvider().send_batch(batch)

    assert isinstance(first, ProviderError) and not first.retryable and "550" in str(first)
    assert isinstance(second, list) and second[0].target.address == "u1@example.com"


def test_email_4xx_refusal_is_retryable(smtp):
    smtp.refuse(1, "451 4.7.1 Greylisted, try again later")

    with pytest.raises(ProviderError) as caught:
        EmailProvider().send(message(), [Target(address="alice@example.com")])

    assert caught.value.retryable and "451" in str(caught.value)


def test_email_refused_connection_is_retryable(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    with SmtpServer() as server:
        port = server.port  # stopped on exit: nothing listens there any more
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port

    results = EmailProvider().send_batch([(message(), [Target(address="a@example.com")])] * 2)

    assert all(isinstance(r, ProviderError) and r.retryable for r in results)


def test_email_server_that_never_answers_times_out_retryable(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_TIMEOUT = 1
    with SilentTcpServer() as silent:
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", silent.port
        started = time.monotonic()
        results = EmailProvider().send_batch([(message(), [Target(address="a@example.com")])] * 3)
        elapsed = time.monotonic() - started

    assert all(isinstance(r, ProviderError) and r.retryable for r in results)
    assert elapsed < 3  # one timeout for the whole batch, not one per message


def test_email_targets_are_the_users_address(db):
    assert EmailProvider().targets(UserFactory(email="ana@example.com")) == [Target(address="ana@example.com")]
    assert EmailProvider().targets(UserFactory(email="")) == []


# --- SMS --------------------------------------------------------------------------------


@pytest.fixture
def twilio(settings):
    with TwilioSms() as server:
        for name, value in server.env().items():
            setattr(settings, name, value)
        settings.SMS_MESSAGING_SERVICE_SID = ""
        settings.SMS_TIMEOUT = 0.5
        yield server


def test_sms_posts_twilios_form_with_basic_auth_and_keeps_the_sid(twilio):
    [result] = SmsProvider().send(message(), [Target(address="+33612345678")])

    [request] = twilio.accepted
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.basic_auth() == (twilio.account_sid, twilio.auth_token)
    assert request.form() == {"To": "+33612345678", "From": "+15005550006", "Body": "New follower\nBob follows you"}
    assert result.provider_message_id.startswith("SM") and len(result.provider_message_id) == 34


def test_sms_uses_the_messaging_service_when_configured(twilio, settings):
    settings.SMS_MESSAGING_SERVICE_SID = "MG" + "2" * 32

    SmsProvider().send(message(), [Target(address="+33612345678")])

    form = twilio.accepted[0].form()
    assert form["MessagingServiceSid"] == "MG" + "2" * 32 and "From" not in form


def test_sms_body_is_cut_to_twilios_limit(twilio):
    SmsProvider().send(message(body="x" * 5000), [Target(address="+33612345678")])

    body = twilio.accepted[0].form()["Body"]
    assert len(body) == BODY_MAX_LENGTH and body.endswith("…")


def test_sms_invalid_number_is_permanent_with_twilios_code(twilio):
    with pytest.raises(ProviderError) as caught:
        SmsProvider().send(message(), [Target(address="0612")])

    assert not caught.value.retryable
    assert "400" in str(caught.value) and "21211" in str(caught.value)


def test_sms_429_is_retryable_after_retry_after(twilio):
    twilio.throttle(1, retry_after=7)

    with pytest.raises(ProviderError) as caught:
        SmsProvider().send(message(), [Target(address="+33612345678")])

    assert caught.value.retryable and caught.value.retry_after == 7


@pytest.mark.parametrize("status", [500, 503])
def test_sms_5xx_is_retryable(twilio, status):
    twilio.fail(1, status, {"code": 20500, "message": "Internal error"})

    with pytest.raises(ProviderError) as caught:
        SmsProvider().send(message(), [Target(address="+33612345678")])

    assert caught.value.retryable and str(status) in str(caught.value)


def test_sms_wrong_credentials_are_permanent(twilio, settings):
    settings.SMS_AUTH_TOKEN = "wrong"

    with pytest.raises(ProviderError) as caught:
        SmsProvider().send(message(), [Target(address="+33612345678")])

    assert not caught.value.retryable and "401" in str(caught.value)


def test_sms_service_that_hangs_times_out_retryable(twilio):
    twilio.hang(1)
    started = time.monotonic()

    with pytest.raises(ProviderError) as caught:
        SmsProvider().send(message(), [Target(address="+33612345678")])

    twilio.release()
    assert caught.value.retryable
    assert time.monotonic() - started < 2
    assert twilio.accepted == []


def test_sms_unreachable_service_is_retryable(settings):
    settings.SMS_ACCOUNT_SID, settings.SMS_AUTH_TOKEN = "AC" + "1" * 32, "t"
    with TwilioSms() as server:
        settings.SMS_API_BASE_URL = server.url

    with pytest.raises(ProviderError) as caught:
        SmsProvider().send(message(), [Target(address="+33612345678")])

    assert caught.value.retryable


def test_sms_targets_need_a_phone_and_a_configured_account(user, settings):
    settings.SMS_ACCOUNT_SID = ""
    NotificationSettings.objects.create(tenant=user.membership.tenant, user=user, phone="+33612345678")
    assert SmsProvider().targets(user) == []

    settings.SMS_ACCOUNT_SID = "AC" + "1" * 32
    assert SmsProvider().targets(user) == [Target(address="+33612345678")]
    assert SmsProvider().targets(UserFactory()) == []


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("12") == 12
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = timezone.now() + timezone.timedelta(seconds=90)
    assert 85 <= retry_after_seconds(later.strftime("%a, %d %b %Y %H:%M:%S GMT")) <= 90


# --- WebSocket (the channel layer) ---------------------------------------------------------


@pytest.mark.redis
def test_websocket_sends_the_notification_event_to_the_users_group(user):
    layer = get_channel_layer()
    [target] = WebSocketProvider().targets(user)
    sent = message(title="Hi", body="there", data={"k": 1}, priority=Priority.HIGH)

    async def scenario():
        channel = await layer.new_channel()
        await layer.group_add(target.address, channel)
        try:
            results = await _in_thread(lambda: WebSocketProvider().send(sent, [target]))
            event = await layer.receive(channel)
        finally:
            await layer.group_discard(target.address, channel)
        return results, event

    results, event = async_to_sync(scenario)()

    assert target.address == f"t{user.membership.tenant_id}.user.{user.pk}"
    assert [r.delivered for r in results] == [False]  # sent, delivered only on the client's ack
    assert event["type"] == "notification"
    content = event["content"]
    assert content["id"] == sent.notification_id
    assert (content["title"], content["content"], content["priority"]) == ("Hi", "there", "high")
    assert content["category"] == "social.follow" and content["data"] == {"k": 1}
    assert content["created_at"].endswith("Z")


async def _in_thread(call):
    from asgiref.sync import sync_to_async

    return await sync_to_async(call, thread_sensitive=False)()


def test_websocket_has_no_target_for_a_user_without_tenant(db):
    assert WebSocketProvider().targets(UserFactory(tenant=None)) == []

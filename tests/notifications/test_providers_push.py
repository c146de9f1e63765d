"""The Web Push and mobile push providers against local push services
(tests/notifications/push_servers.py): payloads checked end to end (decrypted,
signatures verified), each error mapping, several targets, token caching."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from notifications.constants import MobilePlatform, Priority
from notifications.models import MobileToken, WebPushSubscription
from notifications.providers.base import Message, ProviderError, Target, retry_after_seconds
from notifications.providers.mobile import MobilePushProvider
from notifications.providers.webpush import (
    PUSH_POLICY,
    WEBPUSH_MAX_PLAINTEXT,
    WebPushProvider,
    load_vapid,
    vapid_application_server_key,
)
from tests.notifications.push_servers import ApnsService, FcmService, WebPushService, fcm_error

SUBJECT = "mailto:ops@example.com"


def message(priority: str = Priority.HIGH, *, title="New follower", body="Bob follows you", data=None) -> Message:
    return Message(
        delivery_id=1,
        notification_id=str(uuid.uuid4()),
        tenant_id=1,
        user_id=1,
        priority=priority,
        category="social",
        title=title,
        body=body,
        data={"user": 7, "url": "/u/bob"} if data is None else data,
    )


# --- Web Push ------------------------------------------------------------------------


@pytest.fixture
def vapid_key() -> str:
    raw = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value.to_bytes(32, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def push_service(settings, vapid_key):
    settings.WEBPUSH_VAPID_PRIVATE_KEY = vapid_key
    settings.WEBPUSH_VAPID_SUBJECT = SUBJECT
    settings.PUSH_HTTP_TIMEOUT = 2.0
    public = vapid_application_server_key(load_vapid(vapid_key))
    service = WebPushService(vapid_public_key=public, subject=SUBJECT).start()
    yield service
    service.stop()


def webpush_target(subscriber, ref=1) -> Target:
    return Target(address=subscriber.endpoint, ref=ref, extra=subscriber.keys)


def test_webpush_encrypts_signs_and_sets_ttl_and_urgency(push_service):
    phone = push_service.subscribe("phone")
    sent = message(Priority.CRITICAL)

    (result,) = WebPushProvider().send(sent, [webpush_target(phone)])

    assert push_service.problems == []
    (request,) = push_service.requests
    assert request.payload == {
        "id": sent.notification_id,
        "title": "New follower",
        "body": "Bob follows you",
        "data": {"user": 7, "url": "/u/bob"},
        "priority": "critical",
        "category": "social",
    }
    assert request.headers["urgency"] == "high"
    assert request.headers["ttl"] == str(15 * 60)
    assert request.headers["content-encoding"] == "aes128gcm"
    assert request.claims["aud"] == push_service.url
    assert request.claims["sub"] == SUBJECT
    assert result.error is None
    assert result.target.ref == 1
    assert result.provider_message_id.startswith(f"{push_service.url}/message/")


@pytest.mark.parametrize(
    ("priority", "urgency", "ttl"),
    [(Priority.HIGH, "high", 3600), (Priority.NORMAL, "normal", 86400), (Priority.LOW, "very-low", 3 * 86400)],
)
def test_webpush_urgency_and_ttl_follow_the_priority(push_service, priority, urgency, ttl):
    phone = push_service.subscribe("phone")
    WebPushProvider().send(message(priority), [webpush_target(phone)])
    (request,) = push_service.requests
    assert (request.headers["urgency"], int(request.headers["ttl"])) == (urgency, ttl)
    assert PUSH_POLICY[priority].ttl == ttl


def test_webpush_cuts_a_long_body_to_fit_4kb(push_service):
    phone = push_service.subscribe("phone")
    long_body = "é" * 5000  # two bytes each in UTF-8

    WebPushProvider().send(message(body=long_body), [webpush_target(phone)])

    assert push_service.problems == []
    (request,) = push_service.requests
    body = request.payload["body"]
    assert body.endswith("…") and long_body.startswith(body[:-1])
    assert len(json.dumps(request.payload, ensure_ascii=False, separators=(",", ":")).encode()) <= WEBPUSH_MAX_PLAINTEXT
    assert len(request.body) <= 4096
    # Cut no more than needed: a few characters more would not have fitted.
    assert len(body.encode()) > WEBPUSH_MAX_PLAINTEXT - 300
    assert request.payload["data"] == {"user": 7, "url": "/u/bob"}


def test_webpush_drops_oversized_data_rather_than_fail(push_service):
    phone = push_service.subscribe("phone")
    WebPushProvider().send(message(data={"blob": "x" * 5000}), [webpush_target(phone)])
    (request,) = push_service.requests
    assert request.payload["data"] == {}
    assert request.payload["body"] == "Bob follows you"


@pytest.mark.parametrize("status", [404, 410])
def test_webpush_gone_subscription_is_target_gone(push_service, status):
    phone = push_service.subscribe("phone")
    push_service.behave("phone", status)

    with pytest.raises(ProviderError) as raised:
        WebPushProvider().send(message(), [webpush_target(phone, ref=42)])

    assert raised.value.target_gone and not raised.value.retryable
    assert raised.value.target.ref == 42
    assert str(status) in str(raised.value)


def test_webpush_429_is_retryable_after_retry_after(push_service):
    phone = push_service.subscribe("phone")
    push_service.behave("phone", 429, headers={"Retry-After": "120"})

    with pytest.raises(ProviderError) as raised:
        WebPushProvider().send(message(), [webpush_target(phone)])

    assert raised.value.retryable and not raised.value.target_gone
    assert raised.value.retry_after == 120


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (400, False), (413, False)])
def test_webpush_5xx_is_retryable_other_4xx_permanent(push_service, status, retryable):
    phone = push_service.subscribe("phone")
    push_service.behave("phone", status, body=b"nope")

    with pytest.raises(ProviderError) as raised:
        WebPushProvider().send(message(), [webpush_target(phone)])

    assert raised.value.retryable is retryable
    assert not raised.value.target_gone
    assert raised.value.retry_after is None


def test_webpush_timeout_is_retryable(push_service, settings):
    settings.PUSH_HTTP_TIMEOUT = 0.3
    phone = push_service.subscribe("phone")
    push_service.behave("phone", hang=True)

    started = time.monotonic()
    with pytest.raises(ProviderError) as raised:
        WebPushProvider().send(message(), [webpush_target(phone)])

    assert raised.value.retryable and "timed out" in str(raised.value)
    assert time.monotonic() - started < 3


def test_webpush_one_gone_one_takes_it(push_service):
    old, new = push_service.subscribe("old"), push_service.subscribe("new")
    push_service.behave("old", 410)

    results = WebPushProvider().send(message(), [webpush_target(old, ref=1), webpush_target(new, ref=2)])

    assert [r.target.ref for r in results] == [1, 2]
    assert results[0].error.target_gone and results[0].error.target.ref == 1
    assert results[1].error is None and results[1].provider_message_id
    assert {r.path for r in push_service.requests} == {"/push/old", "/push/new"}


def test_webpush_all_fail_raises_retryable_with_each_failure(push_service):
    gone, busy = push_service.subscribe("gone"), push_service.subscribe("busy")
    push_service.behave("gone", 410)
    push_service.behave("busy", 503, headers={"Retry-After": "30"})

    with pytest.raises(ProviderError) as raised:
        WebPushProvider().send(message(), [webpush_target(gone, ref=1), webpush_target(busy, ref=2)])

    error = raised.value
    assert error.retryable and error.retry_after == 30 and not error.target_gone
    assert [(f.target.ref, f.target_gone, f.retryable) for f in error.failures] == [(1, True, False), (2, False, True)]


def test_webpush_malformed_subscription_keys_are_target_gone(push_service):
    phone = push_service.subscribe("phone")
    broken = Target(address=phone.endpoint, ref=5, extra={"p256dh": "not-a-key", "auth": phone.keys["auth"]})

    with pytest.raises(ProviderError) as raised:
        WebPushProvider().send(message(), [broken])

    assert raised.value.target_gone and raised.value.target.ref == 5
    assert push_service.requests == []


def test_webpush_unconfigured_is_a_clear_permanent_error(settings):
    settings.WEBPUSH_VAPID_PRIVATE_KEY = ""
    with pytest.raises(ProviderError, match="Web Push is not configured") as raised:
        WebPushProvider().send(message(), [Target(address="http://127.0.0.1:9/x", ref=1)])
    assert not raised.value.retryable and not raised.value.target_gone


def test_webpush_subject_that_is_not_a_contact_is_a_permanent_error(push_service, settings):
    settings.WEBPUSH_VAPID_SUBJECT = "ops team"
    phone = push_service.subscribe("phone")
    with pytest.raises(ProviderError, match="VAPID") as raised:
        WebPushProvider().send(message(), [webpush_target(phone)])
    assert not raised.value.retryable and not raised.value.target_gone
    assert push_service.requests == []


def test_webpush_targets_are_the_users_enabled_subscriptions(user, tenant):
    from django.utils import timezone

    live = WebPushSubscription.objects.create(
        tenant=tenant, user=user, endpoint="https://push.example.com/a", p256dh="P", auth="A"
    )
    WebPushSubscription.objects.create(
        tenant=tenant,
        user=user,
        endpoint="https://push.example.com/b",
        p256dh="P",
        auth="A",
        disabled_at=timezone.now(),
    )

    assert WebPushProvider().targets(user) == [
        Target(address="https://push.example.com/a", ref=live.pk, extra={"p256dh": "P", "auth": "A"})
    ]


def test_retry_after_accepts_seconds_and_http_dates():
    from email.utils import format_datetime

    from django.utils import timezone

    assert retry_after_seconds("17") == 17
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = format_datetime(timezone.now() + timezone.timedelta(seconds=90), usegmt=True)
    assert 85 <= retry_after_seconds(later) <= 90


# --- FCM -----------------------------------------------------------------------------


@pytest.fixture
def fcm(settings, tmp_path):
    service = FcmService(project_id="music-app", tmp_path=tmp_path).start()
    settings.FCM_BASE_URL = service.url
    settings.FCM_PROJECT_ID = "music-app"
    settings.FCM_SERVICE_ACCOUNT_FILE = str(service.service_account_file)
    settings.PUSH_HTTP_TIMEOUT = 2.0
    yield service
    service.stop()


def fcm_target(token="fcm-token-1", ref=1) -> Target:
    return Target(address=token, ref=ref, extra={"platform": MobilePlatform.FCM})


def test_fcm_sends_a_v1_message_with_a_service_account_token(fcm):
    sent = message(Priority.HIGH, data={"user": 7, "url": "/u/bob", "from": "reserved"})

    (result,) = MobilePushProvider().send(sent, [fcm_target()])

    assert fcm.problems == []
    (request,) = fcm.requests
    assert request.headers["authorization"] == f"Bearer {fcm.issued[0]}"
    body = request.payload["message"]
    assert body["token"] == "fcm-token-1"
    assert body["notification"] == {"title": "New follower", "body": "Bob follows you"}
    # String values only; FCM's reserved keys left out; the notification's own fields added.
    assert body["data"] == {
        "user": "7",
        "url": "/u/bob",
        "id": sent.notification_id,
        "priority": "high",
        "category": "social",
    }
    assert body["android"] == {"priority": "high", "ttl": "3600s"}
    assert body["apns"]["headers"]["apns-priority"] == "10"
    assert result.provider_message_id.startswith("projects/music-app/messages/")


def test_fcm_normal_priority_is_normal_on_android(fcm):
    MobilePushProvider().send(message(Priority.NORMAL), [fcm_target()])
    body = fcm.requests[0].payload["message"]
    assert body["android"] == {"priority": "normal", "ttl": "86400s"}
    assert body["apns"]["headers"]["apns-priority"] == "5"


def test_fcm_access_token_is_requested_once_for_many_sends(fcm):
    provider = MobilePushProvider()
    for _ in range(3):
        provider.send(message(), [fcm_target()])
    assert fcm.token_requests == 1
    assert len(fcm.requests) == 3 and fcm.problems == []


def test_fcm_revoked_access_token_is_renewed_once(fcm):
    provider = MobilePushProvider()
    provider.send(message(), [fcm_target()])
    fcm.revoke_tokens()

    (result,) = provider.send(message(), [fcm_target()])

    assert result.error is None
    assert fcm.token_requests == 2
    assert [r.status for r in fcm.requests] == [200, 0, 200]  # the 401 is the second


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, fcm_error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")),
        (
            400,
            fcm_error(
                400,
                "INVALID_ARGUMENT",
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                "message.token",
            ),
        ),
    ],
)
def test_fcm_unregistered_or_invalid_token_is_target_gone(fcm, status, error):
    fcm.behave("dead", status, body=error)
    with pytest.raises(ProviderError) as raised:
        MobilePushProvider().send(message(), [fcm_target("dead", ref=9)])
    assert raised.value.target_gone and not raised.value.retryable
    assert raised.value.target.ref == 9


def test_fcm_invalid_message_is_permanent_not_gone(fcm):
    fcm.behave(
        "fcm-token-1",
        400,
        body=fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid data payload", "message.data"),
    )
    with pytest.raises(ProviderError) as raised:
        MobilePushProvider().send(message(), [fcm_target()])
    assert not raised.value.retryable and not raised.value.target_gone


@pytest.mark.parametrize("status", [429, 503])
def test_fcm_throttled_is_retryable_after_retry_after(fcm, status):
    fcm.behave(
        "fcm-token-1",
        status,
        headers={"Retry-After": "45"},
        body=fcm_error(status, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "slow down"),
    )
    with pytest.raises(ProviderError) as raised:
        MobilePushProvider().send(message(), [fcm_target()])
    assert raised.value.retryable and raised.value.retry_after == 45


def test_fcm_server_error_and_timeout_are_retryable(fcm, settings):
    fcm.behave("fcm-token-1", 500, body=fcm_error(500, "INTERNAL", "INTERNAL", "oops"))
    with pytest.raises(ProviderError) as raised:
        MobilePushProvider().send(message(), [fcm_target()])
    assert raised.value.retryable and raised.value.retry_after is None

    settings.PUSH_HTTP_TIMEOUT = 0.3
    fcm.behave("slow", hang=True)
    with pytest.raises(ProviderError) as raised:
        MobilePushProvider().send(message(), [fcm_target("slow")])
    assert raised.value.retryable and "timed out" in str(raised.value)


def test_fcm_unconfigured_is_a_clear_permanent_error(settings):
    settings.FCM_PROJECT_ID = ""
    with pytest.raises(ProviderError, match="FCM is not configured") as raised:
        MobilePushProvider().send(message(), [fcm_target()])
    assert not raised.value.retryable and not raised.value.target_gone


def test_fcm_cuts_a_long_body_to_fit_4kb(fcm):
    MobilePushProvider().send(message(body="x" * 6000), [fcm_target()])
    content = fcm.requests[0].payload["message"]
    kept = {"notification": content["notification"], "data": content["data"]}
    assert len(json.dumps(kept, ensure_ascii=False, separators=(",", ":")).encode()) <= 4096
    assert content["notification"]["body"].endswith("…")


# --- APNs ----------------------------------------------------------------------------


@pytest.fixture
def apns(settings, tmp_path):
    service = ApnsService(tmp_path=tmp_path, team_id="TEAM123456", key_id="KEY1234567", topic="com.example.music")
    service.start()
    settings.APNS_BASE_URL = service.url
    settings.APNS_KEY_FILE = str(service.key_file)
    settings.APNS_KEY_ID = "KEY1234567"
    settings.APNS_TEAM_ID = "TEAM123456"
    settings.APNS_TOPIC = "com.example.music"
    settings.APNS_CA_FILE = str(service.ca_file)
    settings.PUSH_HTTP_TIMEOUT = 2.0
    yield service
    service.stop()


def apns_target(token="a1b2c3", ref=1) -> Target:
    return Target(address=token, ref=ref, extra={"platform": MobilePlatform.APNS})


def test_apns_sends_over_http2_with_a_provider_token(apns):
    sent = message(Priority.CRITICAL, data={"user": 7, "aps": "not ours to set"})

    (result,) = MobilePushProvider().send(sent, [apns_target()])

    assert apns.problems == []
    (request,) = apns.requests
    assert request.path == "/3/device/a1b2c3"
    assert request.headers["apns-topic"] == "com.example.music"
    assert request.headers["apns-push-type"] == "alert"
    assert request.headers["apns-priority"] == "10"
    assert 0 < int(request.headers["apns-expiration"]) - time.time() <= 15 * 60
    assert request.claims["iss"] == "TEAM123456"
    assert request.payload == {
        "user": 7,
        "aps": {"alert": {"title": "New follower", "body": "Bob follows you"}, "sound": "default"},
        "id": sent.notification_id,
        "priority": "critical",
        "category": "social",
    }
    assert result.error is None and len(result.provider_message_id) == 36


def test_apns_normal_priority_is_5_and_silent(apns):
    MobilePushProvider().send(message(Priority.NORMAL), [apns_target()])
    (request,) = apns.requests
    assert request.headers["apns-priority"] == "5"
    assert "sound" not in request.payload["aps"]


def test_apns_provider_token_is_reused_then_renewed_after_its_lifetime(apns):
    provider = MobilePushProvider()
    provider.send(message(), [apns_target()])
    provider.send(message(), [apns_target()])
    assert apns.provider_tokens[0] == apns.provider_tokens[1]

    provider.APNS_TOKEN_LIFETIME = 0.2
    time.sleep(0.3)
    provider.send(message(), [apns_target()])

    assert apns.provider_tokens[2] != apns.provider_tokens[1]
    assert apns.problems == []
    # One HTTP/2 connection for all of it.
    assert apns.connections == 1


def test_apns_expired_provider_token_is_renewed_once(apns):
    provider = MobilePushProvider()
    apns.behave("a1b2c3", 403, body={"reason": "ExpiredProviderToken"}, times=1)

    (result,) = provider.send(message(), [apns_target()])

    assert result.error is None
    assert [r.status for r in apns.requests] == [403, 200]
    assert apns.provider_tokens[0] != apns.provider_tokens[1]


@pytest.mark.parametrize(("status", "reason"), [(410, "Unregistered"), (400, "BadDeviceToken"), (410, "ExpiredToken")])
def test_apns_dead_token_is_target_gone(apns, status, reason):
    apns.behave("dead", status, body={"reason": reason})
    with pytest.raises(ProviderError) as raised:
        MobilePushProvider().send(message(), [apns_target("dead", ref=3)])
    assert raised.value.target_gone and raised.value.target.ref == 3
    assert reason in str(raised.value)


@pytest.mark.parametrize(
    ("status", "reason", "retryable"),
    [
        (429, "TooManyRequests", True),
        (500, "InternalServerError", True),
        (503, "ServiceUnavailable", True),
        (400, "DeviceTokenNotForTopic", False),
        (413, "PayloadTooLarge", False),
    ],
)
def test_apns_error_mapping(apns, status, reason, retryable):
    apns.behave("a1b2c3", status, body={"reason": reason})
    with pytest.raises(ProviderError) as raised:
        MobilePushProvider().send(message(), [apns_target()])
    assert raised.value.retryable is retryable
    assert not raised.value.target_gone


def test_apns_timeout_is_retryable(apns, settings):
    settings.PUSH_HTTP_TIMEOUT = 0.3
    apns.behave("a1b2c3", hang=True)
    with pytest.raises(ProviderError) as raised:
        MobilePushProvider().send(message(), [apns_target()])
    assert raised.value.retryable and "timed out" in str(raised.value)


def test_apns_refuses_a_server_it_cannot_verify(apns, settings):
    settings.APNS_CA_FILE = ""  # the system's CAs do not know the local certificate
    with pytest.raises(ProviderError) as raised:
        MobilePushProvider().send(message(), [apns_target()])
    assert apns.requests == []
    assert raised.value.retryable


def test_apns_unconfigured_is_a_clear_permanent_error(settings):
    settings.APNS_KEY_FILE = ""
    with pytest.raises(ProviderError, match="APNs is not configured") as raised:
        MobilePushProvider().send(message(), [apns_target()])
    assert not raised.value.retryable and not raised.value.target_gone


# --- Both platforms --------------------------------------------------------------------


def test_mobile_one_gone_one_takes_it_across_platforms(fcm, apns):
    apns.behave("dead", 410, body={"reason": "Unregistered"})

    results = MobilePushProvider().send(message(), [apns_target("dead", ref=1), fcm_target(ref=2)])

    assert [r.target.ref for r in results] == [1, 2]
    assert results[0].error.target_gone
    assert results[1].error is None and results[1].provider_message_id
    assert apns.problems == [] and fcm.problems == []


def test_mobile_unconfigured_platform_fails_only_its_tokens(fcm, settings):
    settings.APNS_KEY_FILE = ""
    results = MobilePushProvider().send(message(), [apns_target(ref=1), fcm_target(ref=2)])
    assert "APNs is not configured" in str(results[0].error)
    assert results[1].error is None


def test_mobile_targets_are_the_users_enabled_tokens(user, tenant):
    from django.utils import timezone

    fcm_row = MobileToken.objects.create(tenant=tenant, user=user, platform=MobilePlatform.FCM, token="f1")
    apns_row = MobileToken.objects.create(tenant=tenant, user=user, platform=MobilePlatform.APNS, token="a1")
    MobileToken.objects.create(
        tenant=tenant, user=user, platform=MobilePlatform.FCM, token="f2", disabled_at=timezone.now()
    )

    assert MobilePushProvider().targets(user) == [
        Target(address="f1", ref=fcm_row.pk, extra={"platform": "fcm"}),
        Target(address="a1", ref=apns_row.pk, extra={"platform": "apns"}),
    ]

"""Preferences, settings and devices: validation, idempotency, bounds, ownership."""

from __future__ import annotations

from datetime import time

import pytest

from notifications.models import MobileToken, NotificationPreference, WebPushSubscription
from notifications.services import preferences as prefs
from spotify_agent.errors import Conflict, Invalid, NotFound

from .conftest import APNS_TOKEN, AUTH, P256DH, principal_of

pytestmark = pytest.mark.django_db


def field_of(exc) -> str:
    return next(iter(exc.details["fields"]))


def test_preference_set_is_an_idempotent_upsert(user):
    me = principal_of(user)
    prefs.preference_set(actor=me, category="*", channel="email", enabled=True)
    prefs.preference_set(actor=me, category="*", channel="email", enabled=False)
    prefs.preference_set(actor=me, category="billing", channel="email", enabled=True)
    assert [(p.category, p.channel, p.enabled) for p in prefs.preferences_for_user(actor=me)] == [
        ("*", "email", False),
        ("billing", "email", True),
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"category": "Bad Slug"}, "category"),
        ({"category": ""}, "category"),
        ({"channel": "pigeon"}, "channel"),
        ({"enabled": "yes"}, "enabled"),
    ],
)
def test_preference_values_are_checked(user, kwargs, field):
    values = {"category": "*", "channel": "email", "enabled": True, **kwargs}
    with pytest.raises(Invalid) as caught:
        prefs.preference_set(actor=principal_of(user), **values)
    assert field_of(caught.value) == field


def test_preferences_are_bounded(user, monkeypatch):
    monkeypatch.setattr(prefs, "MAX_PREFERENCES_PER_USER", 2)
    me = principal_of(user)
    prefs.preference_set(actor=me, category="a", channel="email", enabled=True)
    prefs.preference_set(actor=me, category="b", channel="email", enabled=True)
    prefs.preference_set(actor=me, category="b", channel="email", enabled=False)  # an update fits
    with pytest.raises(Conflict):
        prefs.preference_set(actor=me, category="c", channel="email", enabled=True)


def test_replacing_preferences_removes_the_unlisted(user, bob):
    me = principal_of(user)
    prefs.preference_set(actor=me, category="old", channel="sms", enabled=True)
    prefs.preference_set(actor=principal_of(bob), category="old", channel="sms", enabled=True)
    rows = prefs.preferences_replace(
        actor=me,
        preferences=[
            {"category": "*", "channel": "email", "enabled": True},
            {"category": "news", "channel": "webpush", "enabled": False},
        ],
    )
    assert [(p.category, p.channel, p.enabled) for p in rows] == [("*", "email", True), ("news", "webpush", False)]
    assert NotificationPreference.objects.filter(user=bob).count() == 1

    with pytest.raises(Invalid) as caught:
        prefs.preferences_replace(
            actor=me, preferences=[{"category": "*", "channel": "email", "enabled": True}, {"category": "*"}]
        )
    assert field_of(caught.value) == "preferences[1].channel"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"quiet_start": time(22)}, "quiet_end"),
        ({"quiet_end": time(7)}, "quiet_start"),
        ({"quiet_start": time(7), "quiet_end": time(7)}, "quiet_end"),
        ({"phone": "0612345678"}, "phone"),
        ({"phone": "+0612345678"}, "phone"),
        ({"phone": "+3361234567890123"}, "phone"),
        ({"digest_minutes": 14}, "digest_minutes"),
        ({"digest_minutes": 1441}, "digest_minutes"),
        ({"digest_minutes": True}, "digest_minutes"),
    ],
)
def test_settings_values_are_checked(user, kwargs, field):
    with pytest.raises(Invalid) as caught:
        prefs.notification_settings_set(actor=principal_of(user), **kwargs)
    assert field_of(caught.value) == field


def test_settings_are_replaced(user):
    me = principal_of(user)
    assert prefs.notification_settings_get(actor=me).digest_minutes == 60
    prefs.notification_settings_set(
        actor=me, quiet_start=time(22), quiet_end=time(7), phone="+33612345678", digest_minutes=15
    )
    row = prefs.notification_settings_set(actor=me, phone="+33612345678")
    assert (row.quiet_start, row.quiet_end, row.phone, row.digest_minutes) == (None, None, "+33612345678", 60)


def test_a_webpush_subscription_is_idempotent_and_moves_to_whoever_subscribes(user, bob):
    endpoint = "https://push.example.com/send/abc"
    first = prefs.webpush_subscribe(actor=principal_of(user), endpoint=endpoint, p256dh=P256DH, auth=AUTH)
    WebPushSubscription.objects.update(disabled_at="2026-01-01T00:00:00Z", disabled_reason="410")
    again = prefs.webpush_subscribe(actor=principal_of(bob), endpoint=endpoint, p256dh=P256DH, auth=AUTH)

    assert first.created and not again.created and first.device.pk == again.device.pk
    row = WebPushSubscription.objects.get()
    assert row.user_id == bob.pk and row.disabled_at is None and row.disabled_reason == ""

    with pytest.raises(NotFound):
        prefs.webpush_unsubscribe(actor=principal_of(user), endpoint=endpoint)
    prefs.webpush_unsubscribe(actor=principal_of(bob), endpoint=endpoint)
    assert not WebPushSubscription.objects.exists()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"endpoint": "http://push.example.com/x"}, "endpoint"),
        ({"endpoint": "https://"}, "endpoint"),
        ({"endpoint": "https://x/" + "a" * 1000}, "endpoint"),
        ({"p256dh": "short"}, "p256dh"),
        ({"p256dh": "!!" + P256DH[2:]}, "p256dh"),
        ({"auth": P256DH}, "auth"),
    ],
)
def test_webpush_values_are_checked(user, kwargs, field):
    values = {"endpoint": "https://push.example.com/x", "p256dh": P256DH, "auth": AUTH, **kwargs}
    with pytest.raises(Invalid) as caught:
        prefs.webpush_subscribe(actor=principal_of(user), **values)
    assert field_of(caught.value) == field


def test_devices_per_user_are_bounded_keeping_the_newest(user, monkeypatch):
    monkeypatch.setattr(prefs, "MAX_WEBPUSH_PER_USER", 2)
    me = principal_of(user)
    for n in range(3):
        prefs.webpush_subscribe(actor=me, endpoint=f"https://push.example.com/{n}", p256dh=P256DH, auth=AUTH)
    assert sorted(WebPushSubscription.objects.values_list("endpoint", flat=True)) == [
        "https://push.example.com/1",
        "https://push.example.com/2",
    ]


def test_mobile_tokens(user, bob):
    me = principal_of(user)
    first = prefs.mobile_token_register(actor=me, platform="apns", token=APNS_TOKEN.upper())
    again = prefs.mobile_token_register(actor=me, platform="apns", token=APNS_TOKEN)
    assert first.created and not again.created
    fcm = prefs.mobile_token_register(actor=principal_of(bob), platform="fcm", token="fcm-token:" + "x" * 140)
    assert fcm.created and MobileToken.objects.count() == 2

    for kwargs, field in (
        ({"platform": "webos", "token": APNS_TOKEN}, "platform"),
        ({"platform": "apns", "token": "zz" * 32}, "token"),
        ({"platform": "fcm", "token": "short"}, "token"),
    ):
        with pytest.raises(Invalid) as caught:
            prefs.mobile_token_register(actor=me, **kwargs)
        assert field_of(caught.value) == field

    with pytest.raises(NotFound):
        prefs.mobile_token_unregister(actor=me, platform="fcm", token="fcm-token:" + "x" * 140)
    prefs.mobile_token_unregister(actor=me, platform="apns", token=APNS_TOKEN)
    assert MobileToken.objects.count() == 1

"""The notifications REST API: every endpoint once, who may call it, its errors."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.constants import ApiScope
from chat.models import Room
from notifications.constants import DeliveryStatus
from notifications.models import Delivery, MobileToken, Notification, WebPushSubscription

from .conftest import APNS_TOKEN, AUTH, P256DH, api_key, issue_client, logged_in

pytestmark = pytest.mark.django_db

SEND = "/api/v1/notifications/"
INBOX = "/api/v1/me/notifications/"


def error_of(response) -> dict:
    body = json.loads(response.content)
    assert set(body) == {"error"}, body
    return body["error"]


def body(user_ids, **extra):
    return {"title": "Hello", "content": "World", "category": "news", "recipients": {"users": user_ids}, **extra}


# --- Sending ---------------------------------------------------------------------------------


def test_a_tenant_admin_sends_and_a_repeat_answers_200(tenant_admin, user):
    client = logged_in(tenant_admin)
    response = client.post(SEND, body([user.pk], idempotency_key="k-1"), format="json")
    assert response.status_code == 201, response.content
    sent = response.json()
    assert sent["recipients"] == {"users": [user.pk]} and sent["recipient_count"] == 1

    again = client.post(SEND, body([user.pk], idempotency_key="k-1"), format="json")
    assert again.status_code == 200 and again.json() == sent


def test_the_idempotency_key_header_works_too(tenant_admin, user):
    client = logged_in(tenant_admin)
    first = client.post(SEND, body([user.pk]), format="json", HTTP_IDEMPOTENCY_KEY="h-1")
    again = client.post(SEND, body([user.pk]), format="json", HTTP_IDEMPOTENCY_KEY="h-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert Notification.objects.count() == 1


def test_an_api_client_needs_the_send_scope(tenant, user):
    _c, good = issue_client(tenant, ApiScope.NOTIFICATIONS_SEND, name="good")
    _c, bad = issue_client(tenant, ApiScope.NOTIFICATIONS_READ, name="bad")
    assert api_key(good).post(SEND, body([user.pk]), format="json").status_code == 201
    response = api_key(bad).post(SEND, body([user.pk]), format="json")
    assert response.status_code == 403 and error_of(response)["code"] == "forbidden"


def test_members_may_not_send_and_anonymous_is_401(user):
    assert logged_in(user).post(SEND, body([user.pk]), format="json").status_code == 403
    assert APIClient().post(SEND, body([user.pk]), format="json").status_code == 401


def test_send_errors_name_the_field_and_hide_other_tenants(tenant_admin, other_user, other_tenant):
    client = logged_in(tenant_admin)
    response = client.post(SEND, body([other_user.pk]), format="json")
    assert response.status_code == 400
    assert error_of(response)["details"]["fields"] == {
        "recipients.users": [f"These ids are not users of your tenant: {other_user.pk}."]
    }
    assert error_of(response)["details"]["unknown"] == [other_user.pk]

    response = client.post(SEND, {**body([1]), "priority": "urgent"}, format="json")
    assert response.status_code == 400 and "priority" in error_of(response)["details"]["fields"]

    room = Room.objects.create(tenant=other_tenant, name="theirs")
    response = client.post(SEND, {**body([1]), "recipients": {"room": room.pk}}, format="json")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"


def test_a_full_backlog_is_429_backlog_full(tenant_admin, user, settings):
    settings.NOTIFICATION_QUEUE_SIZE = 1
    client = logged_in(tenant_admin)
    assert client.post(SEND, body([user.pk]), format="json").status_code == 201
    response = client.post(SEND, body([user.pk]), format="json")
    assert response.status_code == 429
    error = error_of(response)
    assert error["code"] == "backlog_full"
    assert error["details"] == {"retry_after": 30, "pending": 1, "limit": 1}
    assert response["Retry-After"] == "30"


# --- Status ----------------------------------------------------------------------------------


def test_status_per_recipient_and_channel(tenant, tenant_admin, user, other_tenant):
    sent = logged_in(tenant_admin).post(SEND, body([user.pk]), format="json").json()
    Delivery.objects.update(status=DeliveryStatus.SENT, sent_at=timezone.now(), attempts=1)
    _c, reader = issue_client(tenant, ApiScope.NOTIFICATIONS_READ, name="reader")

    for client in (logged_in(tenant_admin), api_key(reader)):
        response = client.get(f"{SEND}{sent['id']}/")
        assert response.status_code == 200, response.content
        status = response.json()
        assert status["deliveries_by_status"] == {"websocket": {"sent": 1}}
        [recipient] = status["recipients_status"]
        assert recipient["user"] == user.pk and recipient["read_at"] is None
        [delivery] = recipient["deliveries"]
        assert (delivery["channel"], delivery["status"], delivery["attempts"]) == ("websocket", "sent", 1)
        assert status["recipients_truncated"] is False

    assert logged_in(user).get(f"{SEND}{sent['id']}/").status_code == 403
    _c, other_key = issue_client(other_tenant, ApiScope.NOTIFICATIONS_READ, name="other")
    assert api_key(other_key).get(f"{SEND}{sent['id']}/").status_code == 404
    assert logged_in(tenant_admin).get(f"{SEND}00000000-0000-0000-0000-000000000000/").status_code == 404


# --- The inbox -------------------------------------------------------------------------------


def test_the_inbox_endpoints(tenant_admin, user):
    admin = logged_in(tenant_admin)
    ids = [admin.post(SEND, body([user.pk], title=f"n{i}"), format="json").json()["id"] for i in range(3)]
    me = logged_in(user)

    page = me.get(INBOX, {"page_size": 2}).json()
    assert [item["id"] for item in page["results"]] == [ids[2], ids[1]]
    assert page["results"][0]["title"] == "n2" and page["results"][0]["read_at"] is None
    assert [item["id"] for item in me.get(page["next"]).json()["results"]] == [ids[0]]
    assert me.get(f"{INBOX}unread-count/").json() == {"unread": 3}

    assert me.post(f"{INBOX}{ids[0]}/read/").json() == {"notification": ids[0], "unread": 2}
    assert [item["id"] for item in me.get(INBOX, {"unread": "true"}).json()["results"]] == [ids[2], ids[1]]
    assert me.post(f"{INBOX}read-all/").json() == {"read": 2, "unread": 0}

    # Not the admin's: not found.
    assert admin.post(f"{INBOX}{ids[0]}/read/").status_code == 404


def test_api_clients_have_no_me_endpoints(sender_client):
    client = api_key(sender_client[1])
    for url in (INBOX, f"{INBOX}unread-count/", "/api/v1/me/notification-settings/"):
        assert client.get(url).status_code == 403


# --- Preferences, settings, devices ----------------------------------------------------------


def test_preferences_endpoint(user):
    me = logged_in(user)
    initial = me.get("/api/v1/me/notification-preferences/").json()
    assert initial["preferences"] == [] and initial["defaults"]["email"] == ["low"]

    wanted = [{"category": "*", "channel": "email", "enabled": True}]
    response = me.put("/api/v1/me/notification-preferences/", {"preferences": wanted}, format="json")
    assert response.status_code == 200 and response.json()["preferences"] == wanted

    response = me.put(
        "/api/v1/me/notification-preferences/",
        {"preferences": [{"category": "*", "channel": "fax", "enabled": True}]},
        format="json",
    )
    assert response.status_code == 400
    assert list(error_of(response)["details"]["fields"]) == ["preferences[0].channel"]


def test_settings_endpoint(user):
    me = logged_in(user)
    assert me.get("/api/v1/me/notification-settings/").json() == {
        "quiet_start": None,
        "quiet_end": None,
        "phone": "",
        "digest_minutes": 60,
        "timezone": "UTC",
        "locale": "en",
    }
    response = me.put(
        "/api/v1/me/notification-settings/",
        {"quiet_start": "22:00", "quiet_end": "07:00", "phone": "+33612345678", "digest_minutes": 30},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["quiet_start"] == "22:00" and response.json()["digest_minutes"] == 30

    response = me.put("/api/v1/me/notification-settings/", {"phone": "123"}, format="json")
    assert response.status_code == 400 and list(error_of(response)["details"]["fields"]) == ["phone"]
    response = me.put("/api/v1/me/notification-settings/", {"quiet_start": "25:00"}, format="json")
    assert response.status_code == 400 and "quiet_start" in error_of(response)["details"]["fields"]


def test_push_subscriptions_endpoint(user, bob):
    url = "/api/v1/me/push-subscriptions/"
    subscription = {"endpoint": "https://push.example.com/x", "keys": {"p256dh": P256DH, "auth": AUTH}}
    me = logged_in(user)
    assert me.post(url, subscription, format="json").status_code == 201
    assert me.post(url, subscription, format="json").status_code == 200
    response = me.post(url, {**subscription, "endpoint": "http://push.example.com/x"}, format="json")
    assert response.status_code == 400 and list(error_of(response)["details"]["fields"]) == ["endpoint"]

    assert logged_in(bob).delete(url, {"endpoint": subscription["endpoint"]}, format="json").status_code == 404
    assert me.delete(url, {"endpoint": subscription["endpoint"]}, format="json").status_code == 204
    assert not WebPushSubscription.objects.exists()


def test_mobile_tokens_endpoint(user):
    url = "/api/v1/me/mobile-tokens/"
    me = logged_in(user)
    token = {"platform": "apns", "token": APNS_TOKEN}
    assert me.post(url, token, format="json").status_code == 201
    assert me.post(url, token, format="json").status_code == 200
    assert me.post(url, {"platform": "apns", "token": "nope"}, format="json").status_code == 400
    assert me.delete(url, token, format="json").status_code == 204
    assert me.delete(url, token, format="json").status_code == 404
    assert not MobileToken.objects.exists()


def test_the_schema_lists_the_endpoints(user):
    schema = logged_in(user).get("/api/schema/").content.decode()
    for path in (
        "/api/v1/notifications/",
        "/api/v1/notifications/{notification_id}/",
        "/api/v1/me/notifications/",
        "/api/v1/me/notifications/{notification_id}/read/",
        "/api/v1/me/notification-preferences/",
        "/api/v1/me/push-subscriptions/",
        "/api/v1/me/mobile-tokens/",
    ):
        assert path in schema

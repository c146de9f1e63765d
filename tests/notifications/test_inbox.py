"""The inbox: listing, unread counts, reading (which marks arrived deliveries
read) and acking (which marks the WebSocket delivery delivered), scoped to the
user; and the notification.* WebSocket handlers."""

from __future__ import annotations

import pytest
from django.utils import timezone

from notifications.constants import DeliveryStatus
from notifications.handlers import handle_notification_ack, handle_notification_read, handle_notification_unread
from notifications.models import Delivery
from notifications.selectors import notifications_for_user, unread_count
from notifications.services.inbox import notification_ack, notification_read, notifications_read_all
from notifications.services.sending import send_notification
from realtime.protocol import ClientMessage, ProtocolError
from spotify_agent.errors import Forbidden, NotFound

from .conftest import issue_client, key_principal, principal_of

pytestmark = pytest.mark.django_db


def notify(tenant, users, title="Hi"):
    return send_notification(
        tenant_id=tenant.pk, title=title, category="news", recipients={"users": [u.pk for u in users]}
    ).notification


def test_the_inbox_is_newest_first_and_counts_unread(tenant, user, bob):
    first, second = notify(tenant, [user], "one"), notify(tenant, [user, bob], "two")
    me = principal_of(user)

    assert [r.notification_id for r in notifications_for_user(actor=me)] == [second.pk, first.pk]
    assert unread_count(actor=me) == 2
    assert unread_count(actor=principal_of(bob)) == 1


def test_reading_marks_the_row_and_arrived_deliveries_read(tenant, user):
    notification = notify(tenant, [user])
    Delivery.objects.update(status=DeliveryStatus.SENT, sent_at=timezone.now())
    me = principal_of(user)

    result = notification_read(actor=me, notification_id=str(notification.pk))
    assert (result.marked, result.unread) == (1, 0)
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.READ and delivery.read_at is not None
    assert notification_read(actor=me, notification_id=notification.pk).marked == 0  # idempotent


def test_reading_leaves_undelivered_deliveries_alone(tenant, user):
    notification = notify(tenant, [user])
    notification_read(actor=principal_of(user), notification_id=notification.pk)
    assert Delivery.objects.get().status == DeliveryStatus.QUEUED


def test_read_all(tenant, user, bob):
    notify(tenant, [user])
    notify(tenant, [user, bob])
    Delivery.objects.update(status=DeliveryStatus.DELIVERED)

    result = notifications_read_all(actor=principal_of(user))
    assert (result.marked, result.unread) == (2, 0)
    assert set(Delivery.objects.filter(user=user).values_list("status", flat=True)) == {"read"}
    assert Delivery.objects.get(user=bob).status == "delivered"
    assert unread_count(actor=principal_of(bob)) == 1


def test_ack_delivers_without_reading(tenant, user):
    notification = notify(tenant, [user])
    result = notification_ack(actor=principal_of(user), notification_id=notification.pk)

    assert result.status == "delivered"
    delivery = Delivery.objects.get(channel="websocket")
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.delivered_at is not None
    assert unread_count(actor=principal_of(user)) == 1
    notification_read(actor=principal_of(user), notification_id=notification.pk)
    assert notification_ack(actor=principal_of(user), notification_id=notification.pk).status == "read"


def test_another_users_or_tenants_notification_is_not_found(tenant, user, bob, other_user, other_tenant):
    mine = notify(tenant, [user])
    theirs = notify(other_tenant, [other_user])
    for actor, notification_id in (
        (principal_of(bob), mine.pk),
        (principal_of(user), theirs.pk),
        (principal_of(user), "not-a-uuid"),
    ):
        for service in (notification_read, notification_ack):
            with pytest.raises(NotFound):
                service(actor=actor, notification_id=notification_id)


def test_api_clients_have_no_inbox(tenant):
    _client, key = issue_client(tenant)
    with pytest.raises(Forbidden):
        unread_count(actor=key_principal(key))


# --- WebSocket handlers ------------------------------------------------------------------------


class Socket:
    """What a handler uses of its connection: the authenticated principal."""

    def __init__(self, principal):
        self.principal = principal


def frame(type_: str, content: dict) -> ClientMessage:
    return ClientMessage(type=type_, id="c-1", room=None, content=content, raw={})


@pytest.mark.django_db(transaction=True)
async def test_the_notification_family(tenant, user):
    from channels.db import database_sync_to_async

    notification = await database_sync_to_async(notify)(tenant, [user])
    conn = Socket(await database_sync_to_async(principal_of)(user))
    nid = str(notification.pk)

    reply = await handle_notification_ack(conn, frame("notification.ack", {"notification": nid}))
    assert reply.content == {"notification": nid, "status": "delivered"}
    assert (await handle_notification_unread(conn, frame("notification.unread", {}))).content == {"unread": 1}
    reply = await handle_notification_read(conn, frame("notification.read", {"notification": nid}))
    assert reply.content == {"notification": nid, "unread": 0}
    reply = await handle_notification_read(conn, frame("notification.read", {"all": True}))
    assert reply.content == {"read": 0, "unread": 0}

    with pytest.raises(ProtocolError) as caught:
        await handle_notification_ack(conn, frame("notification.ack", {"notification": 12}))
    assert caught.value.code == "invalid" and "notification" in caught.value.details["fields"]
    with pytest.raises(ProtocolError) as caught:
        await handle_notification_read(conn, frame("notification.read", {"all": 1}))
    assert caught.value.details["fields"] == {"all": ["all must be true."]}
    with pytest.raises(ProtocolError) as caught:
        await handle_notification_ack(
            conn, frame("notification.ack", {"notification": "00000000-0000-0000-0000-000000000000"})
        )
    assert caught.value.code == "not_found"

"""A partner's notification, end to end: an API client POSTs it to a real daphne
process; a real Celery worker on the Redis broker delivers it to the user's open
WebSocket (which acks it), to a local SMTP server and to a local SMS service;
the partner reads each delivery's status over REST, and staff see it in the
admin."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request

import pytest
from django.urls import reverse

from accounts.constants import ApiScope
from notifications.constants import Channel, DeliveryStatus
from notifications.models import Delivery, NotificationSettings
from tests.conftest import daphne_server
from tests.factories import TenantFactory, UserFactory
from tests.listening.support import client_for, next_frame

from .conftest import issue_client
from .workers import Worker, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def call(url: str, key: str, *, method: str = "GET", body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Api-Key {key}", "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_a_partners_post_reaches_the_user_on_the_socket_by_email_and_by_sms(tmp_path, queue, services, client):
    smtp, sms, env = services
    tenant = TenantFactory()
    user = UserFactory(tenant=tenant, email="ana@example.com")
    NotificationSettings.objects.create(tenant=tenant, user=user, phone="+15550001111")
    _client, key = issue_client(tenant, ApiScope.NOTIFICATIONS_SEND, ApiScope.NOTIFICATIONS_READ)
    worker = Worker(tmp_path, queue=queue, env=env, name="e2e").start()

    with daphne_server(tmp_path, **env) as base:

        async def scenario() -> tuple[dict, str]:
            async with client_for(base, user) as socket:
                await asyncio.sleep(0.2)  # the socket has joined the user's group
                status, sent = await asyncio.to_thread(
                    call,
                    f"{base}/api/v1/notifications/",
                    key,
                    method="POST",
                    body={
                        "title": "Your mix is ready",
                        "content": "Friday Mix has 20 new tracks.",
                        "priority": "critical",
                        "category": "playlists",
                        "recipients": {"users": [user.pk]},
                        "idempotency_key": "friday-mix-ready",
                    },
                )
                assert status == 201, sent
                frame = await next_frame(socket, "notification", timeout=20)
                await socket.request("notification.ack", content={"notification": sent["id"]})
                return frame, sent["id"]

        try:
            frame, notification_id = asyncio.run(scenario())
            assert frame["content"]["title"] == "Your mix is ready"
            wanted = {Channel.WEBSOCKET: DeliveryStatus.DELIVERED, Channel.EMAIL: DeliveryStatus.SENT}
            wanted[Channel.SMS] = DeliveryStatus.SENT

            def settled() -> bool:
                rows = dict(Delivery.objects.filter(notification_id=notification_id).values_list("channel", "status"))
                return rows == wanted

            wait_until(settled, what="every delivery settled")
            # The partner reads the same over REST.
            status, report = call(f"{base}/api/v1/notifications/{notification_id}/", key)
        finally:
            worker.stop()

    assert status == 200
    [recipient] = report["recipients_status"]
    assert {d["channel"]: d["status"] for d in recipient["deliveries"]} == wanted
    [mail] = smtp.messages
    assert mail["To"] == "ana@example.com" and mail["Subject"] == "Your mix is ready"
    [text] = sms.accepted
    assert text.form()["To"] == "+15550001111" and "Friday Mix has 20 new tracks." in text.form()["Body"]

    # Staff see each delivery's status in the admin.
    staff = UserFactory(username="root", tenant=None, is_staff=True, is_superuser=True)
    client.force_login(staff)
    page = client.get(reverse("admin:notifications_delivery_changelist"), {"q": notification_id}).content.decode()
    shown = dict(
        re.findall(r'<td class="field-channel">([^<]*)</td>.*?<td class="field-status">([^<]*)</td>', page, re.S)
    )
    assert shown == {Channel(channel).label: DeliveryStatus(state).label for channel, state in wanted.items()}

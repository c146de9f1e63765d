"""Delivery analytics: counts, rates and latency percentiles per channel and
priority over a range, for the caller's tenant over REST and for any tenant in
the admin; PostgreSQL's percentiles agree with the Python ones the embedded
default uses."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.constants import ApiScope
from notifications.constants import Channel, DeliveryStatus, Priority
from notifications.models import Delivery, Notification
from notifications.selectors import (
    ANALYTICS_MAX_DAYS,
    _latencies,
    _latency_percentiles,
    analytics_range,
    analytics_rows,
)
from spotify_agent.errors import Invalid
from tests.factories import UserFactory

from .conftest import api_key, issue_client, logged_in

pytestmark = pytest.mark.django_db

ANALYTICS = "/api/v1/notifications/analytics/"


def deliveries(tenant, user, *, priority, channel, latencies_ms, status=DeliveryStatus.SENT, ago=timedelta(hours=1)):
    """Deliveries created ``ago`` and sent after each of ``latencies_ms`` (None: not sent)."""
    notification = Notification.objects.create(
        tenant=tenant, priority=priority, category="news", title="t", audience={"users": [user.pk]}
    )
    created = timezone.now() - ago
    rows = []
    for index, latency in enumerate(latencies_ms):
        # One notification per row: a delivery is unique per notification, user and channel.
        note = (
            notification
            if index == 0
            else Notification.objects.create(
                tenant=tenant, priority=priority, category="news", title="t", audience={"users": [user.pk]}
            )
        )
        row = Delivery.objects.create(tenant=tenant, notification=note, user=user, channel=channel, status=status)
        sent_at = None if latency is None else created + timedelta(milliseconds=latency)
        Delivery.objects.filter(pk=row.pk).update(created_at=created, sent_at=sent_at)
        rows.append(row)
    return rows


@pytest.fixture
def traffic(tenant, user, other_user):
    deliveries(tenant, user, priority=Priority.HIGH, channel=Channel.EMAIL, latencies_ms=[100, 200, 300, 400, 1000])
    failed = deliveries(
        tenant, user, priority=Priority.HIGH, channel=Channel.EMAIL, latencies_ms=[None], status=DeliveryStatus.FAILED
    )
    read = deliveries(tenant, user, priority=Priority.CRITICAL, channel=Channel.WEBSOCKET, latencies_ms=[50, 70])
    Delivery.objects.filter(pk=read[0].pk).update(
        status=DeliveryStatus.READ, delivered_at=timezone.now(), read_at=timezone.now()
    )
    # Outside the default range, and another tenant's: neither counts.
    deliveries(tenant, user, priority=Priority.HIGH, channel=Channel.EMAIL, latencies_ms=[5], ago=timedelta(days=2))
    deliveries(
        other_user.membership.tenant, other_user, priority=Priority.HIGH, channel=Channel.EMAIL, latencies_ms=[9]
    )
    return failed


def test_rows_count_rate_and_time_each_channel_and_priority(tenant, traffic):
    rows = {
        (row["channel"], row["priority"]): row for row in analytics_rows(tenant_id=tenant.pk, window=analytics_range())
    }
    assert set(rows) == {("email", "high"), ("websocket", "critical")}
    email = rows[("email", "high")]
    assert (email["total"], email["sent"], email["failed"], email["read"]) == (6, 5, 1, 0)
    assert email["sent_rate"] == round(5 / 6, 4) and email["failed_rate"] == round(1 / 6, 4)
    # percentile_cont over 100, 200, 300, 400, 1000 ms.
    assert email["latency_ms"] == {"p50": 300.0, "p90": 760.0, "p99": 976.0}
    websocket = rows[("websocket", "critical")]
    assert (websocket["delivered"], websocket["read"], websocket["read_rate"]) == (1, 1, 0.5)
    assert websocket["latency_ms"]["p50"] == 60.0


def test_postgresql_and_the_python_fallback_agree(tenant, user):
    deliveries(tenant, user, priority=Priority.NORMAL, channel=Channel.SMS, latencies_ms=[17, 3, 250, 41, 8, 99, 1200])
    in_database = _latencies(Delivery.objects.filter(tenant=tenant))[("sms", "normal")]
    assert in_database == _latency_percentiles([17, 3, 250, 41, 8, 99, 1200])


def test_the_range_is_checked():
    now = timezone.now()
    assert analytics_range(now=now).until == now and analytics_range(now=now).since == now - timedelta(hours=24)
    for since, until, field in [
        ("yesterday", None, "since"),
        (None, "2026-13-01T00:00:00Z", "until"),
        ((now + timedelta(hours=1)).isoformat(), now.isoformat(), "since"),
        ((now - timedelta(days=ANALYTICS_MAX_DAYS + 1)).isoformat(), now.isoformat(), "since"),
    ]:
        with pytest.raises(Invalid) as caught:
            analytics_range(since, until)
        assert field in caught.value.details["fields"]


def test_rest_for_tenant_admins_and_readers_only(tenant, tenant_admin, user, traffic):
    answer = logged_in(tenant_admin).get(ANALYTICS)
    assert answer.status_code == 200, answer.content
    body = json.loads(answer.content)
    assert {(row["channel"], row["priority"]) for row in body["rows"]} == {("email", "high"), ("websocket", "critical")}

    _client, key = issue_client(tenant, ApiScope.NOTIFICATIONS_READ)
    assert api_key(key).get(ANALYTICS).status_code == 200
    _sender, send_only = issue_client(tenant, ApiScope.NOTIFICATIONS_SEND, name="sender")
    assert api_key(send_only).get(ANALYTICS).status_code == 403
    assert logged_in(user).get(ANALYTICS).status_code == 403  # a member

    week = logged_in(tenant_admin).get(ANALYTICS, {"since": (timezone.now() - timedelta(days=3)).isoformat()})
    email = next(row for row in json.loads(week.content)["rows"] if row["channel"] == "email")
    assert email["total"] == 7  # the one from two days ago too
    bad = logged_in(tenant_admin).get(ANALYTICS, {"since": "soon"})
    assert bad.status_code == 400 and "since" in json.loads(bad.content)["error"]["details"]["fields"]


def analytics_table(response) -> list[list[str]]:
    """The analytics table's body rows, as cell texts."""
    html = response.content.decode()
    body = html[html.index('<table id="analytics">') :]
    body = body[body.index("<tbody>") : body.index("</tbody>")]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_the_admin_page_shows_one_tenant_or_all(client, tenant, other_user, traffic):
    staff = UserFactory(username="root", tenant=None, is_staff=True, is_superuser=True)
    client.force_login(staff)
    url = reverse("admin:notifications_delivery_analytics")
    everyone = client.get(url)
    assert "every tenant" in everyone.content.decode()
    # email/high: six of this tenant's and one of the other's.
    assert [row[:3] for row in analytics_table(everyone)] == [["email", "high", "7"], ["websocket", "critical", "2"]]
    mine = client.get(url, {"tenant": tenant.pk})
    assert [row[:3] for row in analytics_table(mine)] == [["email", "high", "6"], ["websocket", "critical", "2"]]
    assert analytics_table(mine)[0][3:7] == ["5 (0.83)", "0 (0)", "0 (0)", "1 (0.17)"]
    wrong = client.get(url, {"since": "2026-01-01 00:00", "until": "2025-01-01 00:00"}).content.decode()
    assert "since must be before until." in wrong and 'id="analytics"' not in wrong
    assert "Analytics" in client.get(reverse("admin:notifications_delivery_changelist")).content.decode()

"""send_notification: validation, authorization, audiences, idempotency (with a
race), the backlog bound, templates' fallback chain, bulk audiences, audit."""

from __future__ import annotations

import threading
from datetime import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import translation

from accounts.constants import ApiScope, Role
from accounts.models import Membership
from audit.models import AuditEvent
from chat.models import Room, RoomMember
from notifications.constants import DeliveryStatus
from notifications.models import Delivery, Digest, Notification, NotificationRecipient, NotificationSettings
from notifications.models import NotificationTemplate as Template
from notifications.services.sending import BacklogFull, send_notification
from notifications.templates import digest_title, template_render, templates_load
from spotify_agent.errors import Forbidden, Invalid, NotFound
from tests.factories import TenantFactory, UserFactory

from .conftest import issue_client, key_principal, principal_of

pytestmark = pytest.mark.django_db


def send(actor=None, *, tenant, **kwargs):
    values = {"title": "Hello", "content": "World", "category": "news", "recipients": {"tenant": True}}
    values.update(kwargs)
    return send_notification(actor=actor, tenant_id=tenant.pk, **values)


def field_of(exc: Invalid) -> str:
    return next(iter(exc.details["fields"]))


# --- Validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": None, "content": None}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": 5}, "title"),
        ({"content": "x" * 4001}, "content"),
        ({"priority": "urgent"}, "priority"),
        ({"category": ""}, "category"),
        ({"category": "Not A Slug"}, "category"),
        ({"category": "*"}, "category"),
        ({"data": []}, "data"),
        ({"data": {"x": "y" * 3000}}, "data"),
        ({"data": {"x": float("nan")}}, "data"),
        ({"data": {1: "int key"}}, "data"),
        ({"recipients": {}}, "recipients"),
        ({"recipients": {"users": [1], "room": 1}}, "recipients"),
        ({"recipients": {"everyone": True}}, "recipients"),
        ({"recipients": {"users": []}}, "recipients.users"),
        ({"recipients": {"users": ["1"]}}, "recipients.users"),
        ({"recipients": {"users": [True]}}, "recipients.users"),
        ({"recipients": {"users": list(range(1, 1002))}}, "recipients.users"),
        ({"recipients": {"room": "1"}}, "recipients.room"),
        ({"recipients": {"tenant": 1}}, "recipients.tenant"),
        ({"idempotency_key": "k" * 201}, "idempotency_key"),
        ({"idempotency_key": "a\nb"}, "idempotency_key"),
        ({"template_key": "greeting"}, "title"),  # both pairs
        ({"title": None, "content": None, "template_key": "Bad Key"}, "template_key"),
        ({"title": None, "content": None, "template_key": "greeting", "context": [1]}, "context"),
        ({"context": {"a": 1}}, "context"),  # context without a template
        ({"title": None, "content": None, "template_key": "no.such.template"}, "template_key"),
    ],
)
def test_each_bad_field_is_named(tenant, admin_principal, kwargs, field):
    with pytest.raises(Invalid) as caught:
        send(admin_principal, tenant=tenant, **kwargs)
    assert field_of(caught.value) == field
    assert not Notification.objects.exists()


def test_members_and_clients_without_the_scope_may_not_send(tenant, member_principal):
    with pytest.raises(Forbidden):
        send(member_principal, tenant=tenant)
    _client, key = issue_client(tenant, ApiScope.NOTIFICATIONS_READ)
    with pytest.raises(Forbidden):
        send(key_principal(key), tenant=tenant)
    UserFactory(username="mod", tenant=tenant, role=Role.MODERATOR)


def test_an_actor_may_not_send_to_another_tenant(tenant, other_tenant, admin_principal):
    with pytest.raises(Forbidden):
        send(admin_principal, tenant=other_tenant)


# --- Audiences ------------------------------------------------------------------------------


def test_users_by_id_get_an_inbox_row_and_routed_deliveries(tenant, admin_principal, user, bob):
    outcome = send(admin_principal, tenant=tenant, recipients={"users": [user.pk, bob.pk, user.pk]})

    assert outcome.created
    notification = outcome.notification
    assert notification.recipient_count == 2
    assert notification.sent_by_user_id == admin_principal.user_id
    rows = NotificationRecipient.objects.filter(notification=notification)
    assert {(r.user_id, r.title, r.content, r.read_at) for r in rows} == {
        (user.pk, "Hello", "World", None),
        (bob.pk, "Hello", "World", None),
    }
    # Normal priority, no devices: in-app only (email is off by default for normal).
    assert sorted(Delivery.objects.values_list("user_id", "channel", "status")) == sorted(
        [(user.pk, "websocket", "queued"), (bob.pk, "websocket", "queued")]
    )


def test_unknown_and_foreign_user_ids_are_named_alike(tenant, admin_principal, user, other_user):
    with pytest.raises(Invalid) as caught:
        send(admin_principal, tenant=tenant, recipients={"users": [user.pk, other_user.pk, 999999]})
    assert field_of(caught.value) == "recipients.users"
    assert caught.value.details["unknown"] == [other_user.pk, 999999]


def test_a_room_reaches_its_members_and_another_tenants_room_is_not_found(tenant, other_tenant, admin_principal, bob):
    member = UserFactory(tenant=tenant)
    room = Room.objects.create(tenant=tenant, name="lobby")
    RoomMember.objects.create(tenant=tenant, room=room, user=member)
    RoomMember.objects.create(tenant=tenant, room=room, user=bob)
    foreign = Room.objects.create(tenant=other_tenant, name="theirs")

    outcome = send(admin_principal, tenant=tenant, recipients={"room": room.pk})
    assert set(NotificationRecipient.objects.values_list("user_id", flat=True)) == {member.pk, bob.pk}
    assert outcome.notification.audience == {"room": room.pk}

    for room_id in (foreign.pk, 987654):
        with pytest.raises(NotFound):
            send(admin_principal, tenant=tenant, recipients={"room": room_id})


def test_the_tenant_reaches_its_active_users_only(tenant, other_tenant, admin_principal, user, other_user):
    sleeper = UserFactory(tenant=tenant, is_active=False)
    outcome = send(admin_principal, tenant=tenant)
    users = set(NotificationRecipient.objects.values_list("user_id", flat=True))
    assert user.pk in users and admin_principal.user_id in users
    assert sleeper.pk not in users and other_user.pk not in users
    assert outcome.notification.recipient_count == len(users)


def test_routing_applies_quiet_hours_and_digests(tenant, admin_principal, user):
    NotificationSettings.objects.create(tenant=tenant, user=user, quiet_start=time(0), quiet_end=time(23, 59))
    send(admin_principal, tenant=tenant, recipients={"users": [user.pk]}, priority="low")
    email = Delivery.objects.get(channel="email")
    assert email.digest is not None and email.next_attempt_at is not None
    assert Digest.objects.get().user_id == user.pk
    assert Delivery.objects.get(channel="websocket").next_attempt_at is None


def test_the_dispatch_waits_for_the_commit(tenant, user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        send(tenant=tenant, recipients={"users": [user.pk]})  # the app's own: no audit callback
    assert len(callbacks) == 1
    assert callbacks[0].__qualname__.startswith("send_notification")


# --- Idempotency -----------------------------------------------------------------------------


def test_a_repeat_with_the_same_key_creates_nothing(tenant, admin_principal, user):
    first = send(admin_principal, tenant=tenant, idempotency_key="order-1", recipients={"users": [user.pk]})
    again = send(admin_principal, tenant=tenant, idempotency_key="order-1", title="Other", recipients={"tenant": True})

    assert first.created and not again.created
    assert again.notification.pk == first.notification.pk
    assert Notification.objects.count() == 1 and NotificationRecipient.objects.count() == 1


def test_the_same_key_in_another_tenant_is_another_notification(tenant, other_tenant, admin_principal, other_user):
    send(admin_principal, tenant=tenant, idempotency_key="k")
    outcome = send(tenant=other_tenant, idempotency_key="k")
    assert outcome.created and Notification.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sends_with_one_key_make_one_notification(tenant, admin_principal, user):
    barrier = threading.Barrier(2)
    outcomes, errors = [], []

    def worker():
        try:
            barrier.wait()
            outcomes.append(
                send(admin_principal, tenant=tenant, idempotency_key="race", recipients={"users": [user.pk]})
            )
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert not errors
    assert sorted(o.created for o in outcomes) == [False, True]
    assert len({o.notification.pk for o in outcomes}) == 1
    assert Notification.objects.count() == 1
    assert NotificationRecipient.objects.count() == 1


# --- Backlog ---------------------------------------------------------------------------------


def test_a_send_past_the_backlog_is_refused_and_creates_nothing(tenant, admin_principal, user, bob, settings):
    settings.NOTIFICATION_QUEUE_SIZE = 3
    send(admin_principal, tenant=tenant, recipients={"users": [user.pk, bob.pk]})  # 2 pending

    with pytest.raises(BacklogFull) as caught:
        send(admin_principal, tenant=tenant, recipients={"users": [user.pk, bob.pk]})  # 2 more: 4 > 3
    assert caught.value.http_status == 429 and caught.value.code == "backlog_full"
    assert caught.value.details == {"retry_after": 30, "pending": 2, "limit": 3}
    assert Notification.objects.count() == 1

    send(admin_principal, tenant=tenant, recipients={"users": [user.pk]})  # exactly 3 fits
    Delivery.objects.update(status=DeliveryStatus.SENT)  # drained
    send(admin_principal, tenant=tenant, recipients={"users": [user.pk, bob.pk]})
    assert Notification.objects.count() == 3


def test_another_tenants_backlog_does_not_count(tenant, other_tenant, admin_principal, user, settings):
    settings.NOTIFICATION_QUEUE_SIZE = 1
    send(tenant=other_tenant)
    send(tenant=other_tenant)
    assert send(admin_principal, tenant=tenant, recipients={"users": [user.pk]}).created


# --- Templates ------------------------------------------------------------------------------


@pytest.fixture
def templates(tenant):
    templates_load()
    return tenant


def template_send(tenant, users, **kwargs):
    return send(
        tenant=tenant,
        title=None,
        content=None,
        template_key="playlist.track_added",
        context={"actor": "Ana", "track": "Intro <b>", "playlist": "Road trip"},
        recipients={"users": [u.pk for u in users]},
        **kwargs,
    )


def test_each_recipient_reads_the_template_in_their_language(templates, tenant):
    english = UserFactory(tenant=tenant, locale="en")
    french = UserFactory(tenant=tenant, locale="fr-CA")
    german = UserFactory(tenant=tenant, locale="de")  # no German: the tenant's locale, then English
    template_send(tenant, [english, french, german])

    rows = {r.user_id: r for r in NotificationRecipient.objects.all()}
    assert rows[english.pk].title == "New track in Road trip"
    assert rows[english.pk].content == "Ana added Intro <b> to Road trip."  # text is not escaped
    assert rows[french.pk].title == "Nouveau titre dans Road trip"
    assert rows[german.pk].title == "New track in Road trip"

    tenant.locale = "fr"
    tenant.save()
    NotificationRecipient.objects.all().delete()
    template_send(tenant, [german])
    assert NotificationRecipient.objects.get().title == "Nouveau titre dans Road trip"


def test_a_tenants_template_overrides_the_platforms_and_stays_its_own(templates, tenant, other_tenant, other_user):
    Template.objects.create(
        tenant=tenant, key="playlist.track_added", locale="en", subject="{{ actor }} strikes again", body_text="!"
    )
    english = UserFactory(tenant=tenant)
    template_send(tenant, [english])
    assert NotificationRecipient.objects.get(user=english).title == "Ana strikes again"

    template_send(other_tenant, [other_user])
    assert NotificationRecipient.objects.get(user=other_user).title == "New track in Road trip"


def test_html_is_escaped_and_a_channel_row_comes_first(templates, tenant):
    rendered = template_render(
        tenant_id=tenant.pk,
        key="playlist.track_added",
        channel="email",
        locale="en",
        context={"actor": "<script>", "track": "T", "playlist": "P"},
    )
    assert "&lt;script&gt;" in rendered.html and "<script>" in rendered.text

    Template.objects.create(key="playlist.track_added", channel="email", locale="en", subject="Mail", body_text="m")
    assert template_render(
        tenant_id=tenant.pk, key="playlist.track_added", channel="email", locale="en", context={}
    ).subject == ("Mail")
    assert template_render(
        tenant_id=tenant.pk, key="playlist.track_added", channel="webpush", locale="en", context={}
    ).subject.startswith("New track")


def test_a_template_cannot_include_files(tenant):
    Template.objects.create(key="sneaky", locale="en", subject="x", body_text='{% include "admin/base.html" %}')
    with pytest.raises(Invalid):
        template_render(tenant_id=tenant.pk, key="sneaky", channel="", locale="en", context={})


def test_loading_templates_is_idempotent(db):
    first = templates_load()
    again = templates_load()
    assert first.created >= 2 and again.created == 0 and again.updated == 0
    assert Template.objects.filter(key="playlist.track_added", tenant=None).count() == first.created


def test_the_projects_own_wording_is_translated():
    assert digest_title(count=1, locale="fr") == "1 nouvelle notification"
    assert digest_title(count=3, locale="en") == "3 new notifications"
    with translation.override("fr"), pytest.raises(Invalid) as caught:
        send_notification(tenant_id=1, title="x", category="Bad", recipients={"tenant": True})
    assert caught.value.message.startswith("category est un slug")


# --- Bulk and audit -------------------------------------------------------------------------


def test_a_tenant_of_thousands_takes_a_handful_of_queries(admin_principal, tenant):
    User = get_user_model()
    users = User.objects.bulk_create(
        [User(username=f"bulk{i}", email=f"bulk{i}@example.com", locale="fr" if i % 2 else "en") for i in range(3000)]
    )
    Membership.objects.bulk_create([Membership(user=u, tenant=tenant) for u in users])

    with CaptureQueriesContext(connection) as captured:
        outcome = send(admin_principal, tenant=tenant, priority="low")

    assert outcome.notification.recipient_count == 3001
    assert NotificationRecipient.objects.filter(notification=outcome.notification).count() == 3001
    # websocket for all + an email digest for those with an address.
    assert Delivery.objects.filter(channel="websocket").count() == 3001
    assert Delivery.objects.filter(channel="email", digest__isnull=False).count() == 3001
    # Per 2000 users: the users, four reads of their devices and preferences,
    # digests (two inserts and a read), inbox rows, deliveries (two inserts);
    # plus a fixed dozen (notification, rule, backlog, audit, savepoints).
    assert len(captured) <= 45, "\n".join(q["sql"][:120] for q in captured.captured_queries)


def test_sends_by_people_and_clients_are_audited_not_the_apps_own(tenant, admin_principal, sender_client, user):
    send(admin_principal, tenant=tenant, recipients={"users": [user.pk]})
    send(key_principal(sender_client[1]), tenant=tenant, recipients={"users": [user.pk]})
    send(tenant=tenant, recipients={"users": [user.pk]})

    events = AuditEvent.objects.filter(action="notification.sent").order_by("pk")
    assert [e.actor_type for e in events] == ["user", "api_client"]
    assert events[0].details["audience"] == {"users": 1}
    assert events[0].details["recipients"] == 1


def test_a_user_of_another_tenant_never_receives(tenant, admin_principal):
    other = TenantFactory(slug="initech")
    outsider = UserFactory(tenant=other)
    send(admin_principal, tenant=tenant)
    assert not NotificationRecipient.objects.filter(user=outsider).exists()
    assert principal_of(outsider).tenant_id == other.pk

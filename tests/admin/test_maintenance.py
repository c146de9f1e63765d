"""Maintenance notices: the service reaches the tenant's (or everyone's) group on
the real channel layer after commit and is audited; the admin action and the
"everyone" view ask for the notice and call it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError

from audit.constants import AuditAction
from audit.models import AuditEvent
from audit.services import Actor
from monitoring.services import maintenance_broadcast
from realtime.groups import everyone_group, tenant_group
from tests.chat.conftest import Listener
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/accounts/tenant/"
EVERYONE = "/admin/accounts/tenant/maintenance/"
STARTS = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
ENDS = datetime(2026, 12, 1, 22, 30, tzinfo=UTC)


@pytest.fixture
def listen():
    """``listen(group, ...)``: a Listener on the project's channel layer subscribed to the groups."""
    listeners: list[Listener] = []

    def make(*groups: str) -> Listener:
        listener = Listener()
        for group in groups:
            listener.subscribe(group)
        listeners.append(listener)
        return listener

    yield make
    for listener in listeners:
        listener.close()


def broadcasts() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditAction.SYSTEM_MAINTENANCE_BROADCAST).order_by("id"))


def test_a_tenant_notice_reaches_that_tenant_only_after_commit(
    tenant, other_tenant, listen, django_capture_on_commit_callbacks
):
    acme = listen(tenant_group(tenant_id=tenant.pk))
    globex = listen(tenant_group(tenant_id=other_tenant.pk))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        maintenance_broadcast(
            tenant_id=tenant.pk, message=" Upgrade tonight ", starts_at=STARTS, ends_at=ENDS, actor=Actor.system("ops")
        )
    assert acme.drain(timeout=0.1) == []
    for callback in callbacks:
        callback()

    (event,) = acme.drain()
    assert event == {
        "type": "system.maintenance",
        "content": {
            "message": "Upgrade tonight",
            "starts_at": "2026-12-01T22:00:00.000Z",
            "ends_at": "2026-12-01T22:30:00.000Z",
        },
    }
    assert globex.drain(timeout=0.1) == []
    (record,) = broadcasts()
    assert (record.tenant_id, record.actor_label, record.target_type, record.target_id) == (
        tenant.pk,
        "ops",
        "accounts.tenant",
        str(tenant.pk),
    )
    assert record.details == {"audience": "tenant", **event["content"]}


def test_an_everyone_notice_goes_to_the_everyone_group_and_the_global_chain(listen, django_capture_on_commit_callbacks):
    everyone = listen(everyone_group())

    with django_capture_on_commit_callbacks(execute=True):
        maintenance_broadcast(tenant_id=None, message="Database upgrade", actor=Actor.system("ops"))

    (event,) = everyone.drain()
    assert event["content"] == {"message": "Database upgrade", "starts_at": None, "ends_at": None}
    (record,) = broadcasts()
    assert record.tenant_id is None
    assert record.details["audience"] == "everyone"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"message": "   "}, "message"),
        ({"message": "x" * 501}, "message"),
        ({"message": "ok", "starts_at": ENDS, "ends_at": STARTS}, "ends_at"),
        # A naive time: which zone it meant is unknown.
        ({"message": "ok", "starts_at": datetime(2026, 12, 1, 22, 0)}, "starts_at"),
    ],
)
def test_an_invalid_notice_sends_and_records_nothing(kwargs, field, tenant, listen, django_capture_on_commit_callbacks):
    acme = listen(tenant_group(tenant_id=tenant.pk))

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ValidationError) as caught:
        maintenance_broadcast(tenant_id=tenant.pk, actor=Actor.system("ops"), **kwargs)

    assert set(caught.value.message_dict) == {field}
    assert acme.drain(timeout=0.1) == []
    assert broadcasts() == []


# --- Admin --------------------------------------------------------------------------


def test_the_tenant_action_asks_for_the_notice_then_broadcasts_to_each_selected_tenant(
    superuser_client, tenant, other_tenant, listen, django_capture_on_commit_callbacks
):
    third = listen(tenant_group(tenant_id=tenant.pk), tenant_group(tenant_id=other_tenant.pk))
    selection = {"action": "broadcast_maintenance", "_selected_action": [tenant.pk, other_tenant.pk]}

    page = superuser_client.post(CHANGELIST, selection)
    assert page.status_code == 200
    assert page.templates[0].name == "admin/accounts/tenant/maintenance_broadcast.html"
    assert "acme" in page.content.decode() and "globex" in page.content.decode()

    invalid = superuser_client.post(CHANGELIST, {**selection, "apply": "1", "message": ""})
    assert invalid.status_code == 200 and "message" in invalid.context["form"].errors

    with django_capture_on_commit_callbacks(execute=True):
        done = superuser_client.post(
            CHANGELIST,
            {**selection, "apply": "1", "message": "Back soon", "starts_at": "2026-12-01T22:00", "ends_at": ""},
        )

    assert done.status_code == 302
    received = third.drain()
    assert [event["content"]["message"] for event in received] == ["Back soon", "Back soon"]
    assert received[0]["content"]["starts_at"] == "2026-12-01T22:00:00.000Z"
    records = broadcasts()
    assert sorted(record.tenant_id for record in records) == sorted([tenant.pk, other_tenant.pk])
    assert {(record.actor_type, record.actor_label) for record in records} == {("user", "root-admin")}


def test_the_everyone_view_is_linked_from_the_changelist_and_broadcasts(
    superuser_client, listen, django_capture_on_commit_callbacks
):
    everyone = listen(everyone_group())
    assert EVERYONE in superuser_client.get(CHANGELIST).content.decode()
    assert superuser_client.get(EVERYONE).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(EVERYONE, {"message": "Platform upgrade at 22:00 UTC"})

    assert response.status_code == 302 and response["Location"] == CHANGELIST
    (event,) = everyone.drain()
    assert event["content"]["message"] == "Platform upgrade at 22:00 UTC"
    (record,) = broadcasts()
    assert record.tenant_id is None


def test_staff_without_the_tenant_permission_cannot_broadcast(client, listen):
    everyone = listen(everyone_group())
    client.force_login(UserFactory(username="helpdesk", tenant=None, is_staff=True))

    assert client.get(EVERYONE).status_code == 403
    assert client.post(EVERYONE, {"message": "hi"}).status_code == 403
    assert everyone.drain(timeout=0.1) == []
    assert broadcasts() == []

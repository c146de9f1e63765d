"""The audit trail's admin is read-only for everyone, superusers included."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.constants import AuditAction
from audit.models import AuditChainHead, AuditEvent
from audit.services import Actor, RequestContext, audit_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(tenant, user):
    return audit_record(
        action=AuditAction.LOGIN_SUCCEEDED,
        actor=Actor.user(user),
        tenant_id=tenant.pk,
        target_type="user",
        target_id=user.pk,
        context=RequestContext(ip="192.0.2.44", user_agent="pytest-agent"),
        details={"method": "password"},
    )


def test_changelist_lists_events_without_add_or_delete(superuser_client, event):
    response = superuser_client.get(reverse("admin:audit_auditevent_changelist"))

    assert response.status_code == 200
    content = response.content.decode()
    assert "auth.login.succeeded" in content
    assert "192.0.2.44" in content
    assert "User alice" in content  # the actor column
    assert f"user {event.target_id}" in content  # the target column
    assert reverse("admin:audit_auditevent_add") not in content
    assert "delete_selected" not in content
    assert response.context["has_add_permission"] is False


def test_changelist_filters_and_search(superuser_client, event, other_tenant, other_user):
    audit_record(action=AuditAction.WS_CONNECTED, actor=Actor.user(other_user), tenant_id=other_tenant.pk)
    url = reverse("admin:audit_auditevent_changelist")

    by_action = superuser_client.get(url, {"action": AuditAction.WS_CONNECTED.value})
    by_tenant = superuser_client.get(url, {"tenant__id__exact": event.tenant_id})
    by_actor = superuser_client.get(url, {"q": "alice"})
    by_target = superuser_client.get(url, {"q": event.target_id})

    assert [e.action for e in by_action.context["cl"].result_list] == [AuditAction.WS_CONNECTED]
    assert [e.pk for e in by_tenant.context["cl"].result_list] == [event.pk]
    assert [e.pk for e in by_actor.context["cl"].result_list] == [event.pk]
    assert [e.pk for e in by_target.context["cl"].result_list] == [event.pk]


def test_detail_view_shows_every_field_read_only(superuser_client, event):
    response = superuser_client.get(reverse("admin:audit_auditevent_change", args=[event.pk]))

    assert response.status_code == 200
    content = response.content.decode()
    for value in (event.hash, event.prev_hash, event.personal_digest, "pytest-agent", "&quot;method&quot;"):
        assert value in content
    assert response.context["adminform"].form.fields == {}
    assert 'name="action"' not in content


def test_change_post_is_refused(superuser_client, event):
    url = reverse("admin:audit_auditevent_change", args=[event.pk])

    response = superuser_client.post(url, {"action": AuditAction.LOGIN_FAILED.value, "ip": "10.0.0.1"})

    assert response.status_code == 403
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.action, stored.ip, stored.hash) == (event.action, event.ip, event.hash)


def test_add_and_delete_are_refused(superuser_client, event):
    assert superuser_client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert superuser_client.post(reverse("admin:audit_auditevent_add"), {"action": "x"}).status_code == 403
    delete_url = reverse("admin:audit_auditevent_delete", args=[event.pk])
    assert superuser_client.post(delete_url, {"post": "yes"}).status_code == 403

    superuser_client.post(
        reverse("admin:audit_auditevent_changelist"),
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )

    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_chain_heads_are_read_only_and_verifiable(superuser_client, event, tenant):
    head = AuditChainHead.objects.get(chain_key=tenant.pk)
    change_url = reverse("admin:audit_auditchainhead_change", args=[head.pk])
    assert superuser_client.post(change_url, {"seq": 99}).status_code == 403

    response = superuser_client.post(
        reverse("admin:audit_auditchainhead_changelist"),
        {"action": "verify_chains", "_selected_action": [head.pk]},
        follow=True,
    )

    messages = [str(message) for message in response.context["messages"]]
    assert messages == ["chain acme: OK, 1 events, head seq 1"]
    head.refresh_from_db()
    assert head.seq == 1

"""Audit events cannot be changed or removed through the ORM."""

from __future__ import annotations

import pytest
from django.db import transaction

from audit.constants import AuditAction
from audit.models import AppendOnlyError, AuditEvent
from audit.services import Actor, audit_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(tenant, user):
    return audit_record(action=AuditAction.LOGIN_SUCCEEDED, actor=Actor.user(user), tenant_id=tenant.pk)


def test_saving_a_stored_event_raises(event):
    event.action = AuditAction.LOGIN_FAILED
    with pytest.raises(AppendOnlyError):
        event.save()
    assert AuditEvent.objects.get(pk=event.pk).action == AuditAction.LOGIN_SUCCEEDED


def test_deleting_an_event_raises(event):
    with pytest.raises(AppendOnlyError):
        event.delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_queryset_update_and_delete_raise(event):
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action=AuditAction.LOGIN_FAILED)
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    event.action = AuditAction.LOGIN_FAILED
    # bulk_update fails inside its own savepoint-less atomic block, which
    # poisons the enclosing transaction; give it a savepoint to roll back to.
    with pytest.raises(AppendOnlyError), transaction.atomic():
        AuditEvent.objects.bulk_update([event], ["action"])
    assert AuditEvent.objects.get(pk=event.pk).action == AuditAction.LOGIN_SUCCEEDED


def test_unknown_action_is_refused(tenant, user):
    with pytest.raises(ValueError, match="Unknown audit action"):
        audit_record(action="user.teleported", actor=Actor.user(user), tenant_id=tenant.pk)
    assert not AuditEvent.objects.exists()

"""audit_record_many: several events in one transaction, one lock per chain."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.constants import AuditAction
from audit.models import AuditEvent
from audit.selectors import audit_chains_verify
from audit.services import Actor, AuditEntry, RequestContext, audit_record, audit_record_many


@pytest.mark.django_db
def test_a_batch_across_chains_keeps_order_and_verifies(tenant, user):
    audit_record(action=AuditAction.WS_CONNECTED, actor=Actor.user(user), tenant_id=tenant.pk)
    entries = [
        AuditEntry(
            action=AuditAction.WS_DISCONNECTED if index % 3 else AuditAction.WS_REJECTED,
            actor=Actor.user(user) if index % 3 else Actor.anonymous(),
            tenant_id=tenant.pk if index % 3 else None,
            context=RequestContext(ip="192.0.2.7", user_agent="batch/1"),
            details={"index": index},
        )
        for index in range(9)
    ]

    events = audit_record_many(entries)

    assert [event.details["index"] for event in events] == list(range(9))
    tenant_seqs = [event.seq for event in events if event.tenant_id == tenant.pk]
    global_seqs = [event.seq for event in events if event.tenant_id is None]
    assert tenant_seqs == [2, 3, 4, 5, 6, 7]
    assert global_seqs == [1, 2, 3]
    assert all(event.pk is not None for event in events)
    assert [result.ok for result in audit_chains_verify()] == [True, True]


@pytest.mark.django_db
def test_a_batch_costs_a_fixed_number_of_queries_per_chain(tenant, user):
    def batch(size):
        return [AuditEntry(action=AuditAction.WS_CONNECTED, actor=Actor.user(user), tenant_id=tenant.pk)] * size

    audit_record_many(batch(1))
    with CaptureQueriesContext(connection) as one:
        audit_record_many(batch(1))
    with CaptureQueriesContext(connection) as fifty:
        audit_record_many(batch(50))
    assert len(fifty) == len(one)
    assert AuditEvent.objects.for_tenant(tenant).count() == 52


@pytest.mark.django_db
def test_an_unknown_action_refuses_the_whole_batch(tenant, user):
    entries = [
        AuditEntry(action=AuditAction.WS_CONNECTED, actor=Actor.user(user), tenant_id=tenant.pk),
        AuditEntry(action="made.up", actor=Actor.user(user), tenant_id=tenant.pk),
    ]
    with pytest.raises(ValueError, match=r"made\.up"):
        audit_record_many(entries)
    assert AuditEvent.objects.count() == 0

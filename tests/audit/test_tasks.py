"""audit_anchor_heads: every chain head lands in the audit.chain log stream."""

from __future__ import annotations

import logging

import pytest

from audit.constants import AuditAction
from audit.models import AuditChainHead
from audit.services import Actor, audit_record
from audit.tasks import audit_anchor_heads


def _record_two_chains(tenant, user) -> None:
    audit_record(action=AuditAction.LOGIN_SUCCEEDED, actor=Actor.user(user), tenant_id=tenant.pk)
    audit_record(action=AuditAction.WS_CONNECTED, actor=Actor.user(user), tenant_id=tenant.pk)
    audit_record(action=AuditAction.LOGIN_FAILED, actor=Actor.anonymous("x"), tenant_id=None)


@pytest.mark.django_db
def test_task_logs_every_head(tenant, user, caplog):
    _record_two_chains(tenant, user)
    caplog.set_level(logging.INFO, logger="audit.chain")

    assert audit_anchor_heads.apply().get() == 2

    anchors = [
        (record.chain, record.seq, record.hash) for record in caplog.records if record.message == "audit chain head"
    ]
    heads = AuditChainHead.objects.get(chain_key=tenant.pk), AuditChainHead.objects.get(chain_key=0)
    assert sorted(anchors) == sorted((head.chain_key, head.seq, head.hash) for head in heads)
    assert (tenant.pk, 2) in [(chain, seq) for chain, seq, _ in anchors]


def test_task_is_registered_under_the_beat_schedule_name():
    from django.conf import settings

    from spotify_agent.celery import app

    name = settings.CELERY_BEAT_SCHEDULE["audit-anchor-chain-heads"]["task"]
    assert name == audit_anchor_heads.name == "audit.tasks.audit_anchor_heads"
    assert name in app.tasks


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_task_runs_on_a_real_worker(tenant, user, celery_worker):
    _record_two_chains(tenant, user)

    assert audit_anchor_heads.delay().get(timeout=30) == 2

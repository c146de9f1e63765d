"""Concurrent appends from many threads keep every chain gap-free and valid."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from audit.constants import AuditAction
from audit.models import AuditChainHead, AuditEvent
from audit.selectors import audit_chains_verify
from audit.services import Actor, RequestContext, audit_record

THREADS = 4
EVENTS_PER_THREAD = 10


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_are_gap_free_and_verify(tenant, user):
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            start.wait(timeout=10)
            for index in range(EVENTS_PER_THREAD):
                # Two chains at once: the tenant's and the global one. The very
                # first appends also race to create each chain's head row.
                audit_record(
                    action=AuditAction.WS_CONNECTED,
                    actor=Actor.user(user),
                    tenant_id=tenant.pk if index % 2 == 0 else None,
                    context=RequestContext(ip=f"192.0.2.{worker + 1}"),
                    details={"worker": worker, "index": index},
                )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=append, args=(worker,)) for worker in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    per_chain = THREADS * EVENTS_PER_THREAD // 2
    for tenant_id in (tenant.pk, None):
        seqs = list(AuditEvent.objects.for_tenant(tenant_id).order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, per_chain + 1))
    assert sorted(AuditChainHead.objects.values_list("chain_key", "seq")) == [(0, per_chain), (tenant.pk, per_chain)]
    results = audit_chains_verify()
    assert [result.summary() for result in results] == [
        f"chain global: OK, {per_chain} events, head seq {per_chain}",
        f"chain acme: OK, {per_chain} events, head seq {per_chain}",
    ]

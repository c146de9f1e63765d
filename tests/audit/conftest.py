"""Fixtures of the audit tests: a trail over three chains, raw SQL tampering, the command."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from pythonjsonlogger.json import JsonFormatter

from audit.constants import AuditAction
from audit.models import AuditEvent
from audit.services import Actor, RequestContext, audit_record
from monitoring.logging import RequestIdFilter


@dataclass
class Trail:
    """Events recorded on the tenant, other_tenant and global chains (4, 3 and 2 events)."""

    tenant_id: int
    other_tenant_id: int

    def events(self, tenant_id: int | None) -> list[AuditEvent]:
        return list(AuditEvent.objects.for_tenant(tenant_id).order_by("seq"))

    def event(self, tenant_id: int | None, seq: int) -> AuditEvent:
        return AuditEvent.objects.get(tenant_id=tenant_id, seq=seq)


def record_trail(*, tenant, other_tenant, user, other_user) -> Trail:
    context = RequestContext(ip="203.0.113.7", user_agent="pytest/1.0")
    actions = [AuditAction.LOGIN_SUCCEEDED, AuditAction.WS_TICKET_ISSUED, AuditAction.WS_CONNECTED]
    for index, action in enumerate([*actions, AuditAction.WS_DISCONNECTED]):
        audit_record(
            action=action,
            actor=Actor.user(user),
            tenant_id=tenant.pk,
            target_type="user",
            target_id=user.pk,
            context=context,
            details={"n": index, "note": "tenant chain"},
        )
    for index, action in enumerate(actions):
        audit_record(
            action=action,
            actor=Actor.user(other_user),
            tenant_id=other_tenant.pk,
            target_type="user",
            target_id=other_user.pk,
            context=context,
            details={"n": index},
        )
    audit_record(action=AuditAction.LOGIN_FAILED, actor=Actor.anonymous("mallory"), tenant_id=None, context=context)
    audit_record(action=AuditAction.LOGIN_LOCKED_OUT, actor=Actor.system(), tenant_id=None, details={"ip": "x"})
    return Trail(tenant_id=tenant.pk, other_tenant_id=other_tenant.pk)


@pytest.fixture
def trail(tenant, other_tenant, user, other_user) -> Trail:
    return record_trail(tenant=tenant, other_tenant=other_tenant, user=user, other_user=other_user)


def raw_sql(sql: str, params: list | tuple = ()) -> int:
    """Tamper with the table behind the ORM's back, as someone with database access would."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def verify(*args: str) -> tuple[int, str]:
    """Run ``verify_audit_chain`` in-process: (exit status, output)."""
    out = io.StringIO()
    try:
        call_command("verify_audit_chain", *args, stdout=out, no_color=True)
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()


@pytest.fixture
def anchor_log(tmp_path):
    """The ``audit.chain`` stream written to a file by the project's JSON log formatter."""
    path = tmp_path / "audit-anchors.log"
    config = settings.LOGGING["formatters"]["json"]
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter(config["fmt"], rename_fields=config["rename_fields"]))
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("audit.chain")
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield path
    logger.removeHandler(handler)
    logger.setLevel(previous_level)
    handler.close()


def anchor_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

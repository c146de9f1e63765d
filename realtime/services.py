"""Writes of the WebSocket lifecycle: the audit events of sockets being opened,
closed or refused.

The consumer never touches the ORM itself: it builds each event with one of
the ``ws_connection_*`` functions and hands it to ``realtime.auditing``, which
writes a process's events in batches through ``ws_lifecycle_record`` (a
reconnect storm of thousands of sockets costs a few transactions, not one per
socket).

Refusals are recorded on the installation-wide chain (tenant ``None``) with an
anonymous actor: a refused credential proves no identity.
"""

from __future__ import annotations

from collections.abc import Sequence

from accounts.principals import Principal
from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, AuditEntry, RequestContext, audit_record_many


def ws_connection_opened(*, principal: Principal, method: str, context: RequestContext = NO_CONTEXT) -> AuditEntry:
    """``principal`` opened an authenticated socket with ``method`` (``header``,
    ``ticket`` or ``first_frame``)."""
    return AuditEntry(
        action=AuditAction.WS_CONNECTED,
        actor=Actor.from_principal(principal),
        tenant_id=principal.tenant_id,
        target_type="user",
        target_id=principal.user_id or "",
        context=context,
        details={"method": method},
    )


def ws_connection_closed(
    *,
    principal: Principal,
    code: int,
    reason: str,
    duration_seconds: float,
    context: RequestContext = NO_CONTEXT,
) -> AuditEntry:
    """An authenticated socket ended: its close code and why."""
    return AuditEntry(
        action=AuditAction.WS_DISCONNECTED,
        actor=Actor.from_principal(principal),
        tenant_id=principal.tenant_id,
        target_type="user",
        target_id=principal.user_id or "",
        context=context,
        details={"code": code, "reason": reason, "duration_seconds": round(duration_seconds, 3)},
    )


def ws_connection_rejected(*, reason: str, method: str, context: RequestContext = NO_CONTEXT) -> AuditEntry:
    """A socket refused before authentication; ``reason`` is the auth error code."""
    return AuditEntry(
        action=AuditAction.WS_REJECTED,
        actor=Actor.anonymous(),
        tenant_id=None,
        context=context,
        details={"reason": reason, "method": method},
    )


def ws_lifecycle_record(*, entries: Sequence[AuditEntry]) -> int:
    """Append lifecycle events to the audit trail in one transaction; returns how many."""
    return len(audit_record_many(entries))

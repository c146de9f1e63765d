"""Writes of the WebSocket lifecycle: the audit events of a socket being opened,
closed or refused. The consumer calls these through ``database_sync_to_async``;
it never touches the ORM itself.

Refusals are recorded on the installation-wide chain (tenant ``None``) with an
anonymous actor: a refused credential proves no identity.
"""

from __future__ import annotations

from accounts.principals import Principal
from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record


def ws_connection_open(*, principal: Principal, method: str, context: RequestContext = NO_CONTEXT) -> None:
    """Record that ``principal`` opened an authenticated socket with ``method``
    (``header``, ``ticket`` or ``first_frame``). Not idempotent."""
    audit_record(
        action=AuditAction.WS_CONNECTED,
        actor=Actor.from_principal(principal),
        tenant_id=principal.tenant_id,
        target_type="user",
        target_id=principal.user_id or "",
        context=context,
        details={"method": method},
    )


def ws_connection_close(
    *,
    principal: Principal,
    code: int,
    reason: str,
    duration_seconds: float,
    context: RequestContext = NO_CONTEXT,
) -> None:
    """Record the end of an authenticated socket: its close code and why."""
    audit_record(
        action=AuditAction.WS_DISCONNECTED,
        actor=Actor.from_principal(principal),
        tenant_id=principal.tenant_id,
        target_type="user",
        target_id=principal.user_id or "",
        context=context,
        details={"code": code, "reason": reason, "duration_seconds": round(duration_seconds, 3)},
    )


def ws_connection_reject(*, reason: str, method: str, context: RequestContext = NO_CONTEXT) -> None:
    """Record a socket refused before authentication; ``reason`` is the auth error code."""
    audit_record(
        action=AuditAction.WS_REJECTED,
        actor=Actor.anonymous(),
        tenant_id=None,
        context=context,
        details={"reason": reason, "method": method},
    )

"""Operations use cases that reach users: announcing planned maintenance.

Staff announce maintenance from the admin (``accounts.admin.TenantAdmin``), to
one tenant or to everyone. The notice is a ``system.maintenance`` event sent to
every open socket of the tenant (``realtime.groups.tenant_group``) or of the
installation (``everyone_group``) after commit, and recorded in the audit trail
(``system.maintenance.broadcast``). It is not stored otherwise: a socket that
connects later does not receive it, which suits a notice about the next minutes
or hours. docs/protocol.md describes the event for clients.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record
from realtime.events import SystemMaintenance, event_send_on_commit
from realtime.groups import everyone_group, tenant_group
from realtime.protocol import timestamp

# Long enough for a sentence and a link, short enough for a banner.
MAINTENANCE_MESSAGE_MAX_LENGTH = 500


def _clean(*, message: str, starts_at: datetime | None, ends_at: datetime | None) -> str:
    message = (message or "").strip()
    errors: dict[str, str] = {}
    if not message:
        errors["message"] = "Write the notice."
    elif len(message) > MAINTENANCE_MESSAGE_MAX_LENGTH:
        errors["message"] = f"A notice has at most {MAINTENANCE_MESSAGE_MAX_LENGTH} characters."
    for name, moment in (("starts_at", starts_at), ("ends_at", ends_at)):
        if moment is not None and moment.tzinfo is None:
            errors[name] = "Give a time zone-aware time."
    if starts_at and ends_at and not errors and ends_at <= starts_at:
        errors["ends_at"] = "The window must end after it starts."
    if errors:
        raise ValidationError(errors)
    return message


@transaction.atomic
def maintenance_broadcast(
    *,
    tenant_id: int | None,
    message: str,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    actor: Actor,
    context: RequestContext = NO_CONTEXT,
) -> None:
    """Announce maintenance to one tenant's sockets (``tenant_id``) or to every
    socket (None), optionally with its window.

    Raises ``ValidationError`` (keyed by argument name) for an empty or too long
    message, naive times, or a window that ends before it starts. Audited in the
    tenant's chain, or the global chain for everyone. Sends ``system.maintenance``
    after commit; best effort, like every broadcast (``realtime.events``).
    Not idempotent: each call is one notice.
    """
    message = _clean(message=message, starts_at=starts_at, ends_at=ends_at)
    event = SystemMaintenance(
        message=message,
        starts_at=timestamp(starts_at) if starts_at else None,
        ends_at=timestamp(ends_at) if ends_at else None,
    )
    audit_record(
        action=AuditAction.SYSTEM_MAINTENANCE_BROADCAST,
        actor=actor,
        tenant_id=tenant_id,
        target_type="accounts.tenant" if tenant_id is not None else "",
        target_id=tenant_id if tenant_id is not None else "",
        context=context,
        details={"audience": "tenant" if tenant_id is not None else "everyone", **asdict(event)},
    )
    group = tenant_group(tenant_id=tenant_id) if tenant_id is not None else everyone_group()
    event_send_on_commit(group=group, event=event)

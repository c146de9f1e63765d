"""User lifecycle: deactivation and reactivation.

Deactivating a user ends everything they hold: refresh tokens are blacklisted,
tokens issued so far are refused (the user's ``token_generation`` moves on), and after
commit a ``session.revoked`` event tells every open WebSocket of the user to
close with 4401. The WebSocket's periodic re-check closes them anyway if the
channel layer drops the event (docs/protocol.md, "Token lifetime").
"""

from __future__ import annotations

from django.db import transaction

from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record
from realtime.events import SessionRevoked, event_send_on_commit
from realtime.groups import user_group

from ..models import User
from .tokens import user_revoke_sessions


def user_set_active(*, user: User, active: bool, actor: Actor, context: RequestContext = NO_CONTEXT) -> bool:
    """Set ``user.is_active``. Returns whether anything changed.

    The caller authorizes (admin action, staff endpoint). Locks the user's row,
    so concurrent calls serialise. Idempotent: setting the current state again
    records nothing and emits nothing. Deactivation revokes every session,
    audits ``user.deactivated`` and broadcasts ``session.revoked`` to the
    user's group after commit; reactivation audits ``user.reactivated`` and
    leaves earlier tokens revoked.
    """
    with transaction.atomic():
        locked = User.objects.select_for_update(of=("self",)).select_related("membership__tenant").get(pk=user.pk)
        if locked.is_active == active:
            user.is_active = active
            return False
        User.objects.filter(pk=user.pk).update(is_active=active)
        user.is_active = active
        membership = locked.tenant_membership
        tenant_id = membership.tenant_id if membership else None
        details = {}
        if not active:
            details["revoked_refresh_tokens"] = user_revoke_sessions(user=user)
        audit_record(
            action=AuditAction.USER_REACTIVATED if active else AuditAction.USER_DEACTIVATED,
            actor=actor,
            tenant_id=tenant_id,
            target_type="user",
            target_id=user.pk,
            context=context,
            details=details,
        )
        if not active and tenant_id is not None:
            event_send_on_commit(
                group=user_group(tenant_id=tenant_id, user_id=user.pk),
                event=SessionRevoked(reason="user_deactivated"),
            )
    return True

"""Moderator actions beyond kicks and bans: muting a member for a while, and
reviewing the messages the moderation pipeline (``chat.moderation``) flagged.

Who may act is the same rule as for kicks (``chat.services.rooms``): a room
owner or moderator, or a tenant moderator or admin; an owner cannot be muted,
and a room moderator only by the owner or a tenant moderator. Every action is
audited. A mute ends by itself at ``muted_until`` (``message_send`` compares it
with the clock), so nothing has to run when it expires. Deleting a flagged
message is ``message_delete``, which moderators already have.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.principals import Principal
from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record

from ..constants import MUTE_MAX_SECONDS, ModerationStatus
from ..errors import Invalid, NotFound
from ..models import Message, RoomMember
from ..selectors import message_get
from .rooms import _audit, _check_may_remove, _room_moderation_access


def _target_member(*, room, user_id: int) -> RoomMember:
    target = RoomMember.objects.select_for_update().filter(room=room, user_id=user_id).first()
    if target is None:
        raise NotFound("No such member.")
    return target


@transaction.atomic
def room_member_mute(
    *,
    actor: Principal,
    room_id: int,
    user_id: int,
    until: datetime,
    reason: str = "",
    context: RequestContext = NO_CONTEXT,
) -> RoomMember:
    """Stop a member from posting, editing and reacting in the room until ``until``
    (at most ``MUTE_MAX_SECONDS`` ahead: longer is a ban). A second mute replaces
    the first. Audited (``room.member.muted``, with the reason). The member
    still reads the room; their sends answer ``forbidden`` with ``muted_until``.
    """
    room, actor_membership = _room_moderation_access(actor=actor, room_id=room_id)
    now = timezone.now()
    if until <= now:
        raise Invalid("until must be in the future.", field="until")
    if until > now + timedelta(seconds=MUTE_MAX_SECONDS):
        raise Invalid(f"A mute lasts at most {MUTE_MAX_SECONDS // 86400} days; ban instead.", field="until")
    target = _target_member(room=room, user_id=user_id)
    _check_may_remove(actor=actor, actor_membership=actor_membership, target=target)
    target.muted_until = until
    target.save(update_fields=["muted_until"])
    _audit(
        action=AuditAction.ROOM_MEMBER_MUTED,
        actor=actor,
        room=room,
        user_id=user_id,
        context=context,
        until=until.isoformat(),
        reason=reason.strip(),
    )
    return target


@transaction.atomic
def room_member_unmute(
    *, actor: Principal, room_id: int, user_id: int, context: RequestContext = NO_CONTEXT
) -> RoomMember:
    """Lift a mute before it expires. Idempotent: a member who is not muted (or
    whose mute has run out) is returned unchanged and nothing is audited;
    otherwise audited (``room.member.unmuted``)."""
    room, _membership = _room_moderation_access(actor=actor, room_id=room_id)
    target = _target_member(room=room, user_id=user_id)
    if target.muted_until is None:
        return target
    was_active = target.muted_until > timezone.now()
    target.muted_until = None
    target.save(update_fields=["muted_until"])
    if was_active:
        _audit(action=AuditAction.ROOM_MEMBER_UNMUTED, actor=actor, room=room, user_id=user_id, context=context)
    return target


def message_flag_clear_do(*, message: Message, actor: Actor, context: RequestContext = NO_CONTEXT) -> bool:
    """Trusted path of ``message_flag_clear`` (the admin's, whose staff have no
    tenant): clear the flag of ``message``, keeping its reason for the record.
    Returns False, and audits nothing, when the message is not flagged.
    Audited (``chat.message.flag_cleared``). Emits nothing: clients never saw the flag."""
    with transaction.atomic():
        updated = Message.objects.filter(pk=message.pk, moderation_status=ModerationStatus.FLAGGED).update(
            moderation_status=ModerationStatus.OK
        )
        if not updated:
            return False
        audit_record(
            action=AuditAction.CHAT_MESSAGE_FLAG_CLEARED,
            actor=actor,
            tenant_id=message.tenant_id,
            target_type="chat.message",
            target_id=message.pk,
            context=context,
            details={"room_id": message.room_id, "seq": message.seq, "reason": message.moderation_reason},
        )
    message.moderation_status = ModerationStatus.OK
    return True


@transaction.atomic
def message_flag_clear(*, actor: Principal, room_id: int, seq: int, context: RequestContext = NO_CONTEXT) -> Message:
    """Review a flagged message and keep it: the flag is cleared and the message
    leaves the review queue. A room owner or moderator, or a tenant moderator or
    admin. Idempotent (an unflagged message is returned as is)."""
    room, _membership = _room_moderation_access(actor=actor, room_id=room_id)
    message = message_get(room=room, seq=seq)
    message_flag_clear_do(message=message, actor=Actor.from_principal(actor), context=context)
    return message

"""Room membership use cases: create, direct rooms, join, leave, invite, kick, ban, unban.

Who may do what (docs/api.md, "Chat"): anyone in the tenant creates rooms and
joins public ones; private rooms need an invitation from a room owner or
moderator; kicks and bans take a room owner or moderator, or a tenant
moderator or admin, and are audited. Owners cannot be kicked or banned, and
only an owner or a tenant moderator can remove a room moderator.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Membership
from accounts.principals import Principal
from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record

from ..constants import ROOM_MODERATOR_ROLES, ROOM_NAME_MAX_LENGTH, MemberChange, RoomKind, RoomRole
from ..crypto import encryption_available
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..events import (
    RoomInvitedEvent,
    RoomMemberJoinedEvent,
    RoomMemberLeftEvent,
    UserRef,
    chat_event_send,
    user_ref,
)
from ..models import Room, RoomBan, RoomInvitation, RoomMember
from ..selectors import (
    actor_is_tenant_moderator,
    actor_user_id,
    room_ban_active,
    room_get_for_member,
    room_get_in_tenant,
)

User = get_user_model()


def _actor_ref(actor: Principal) -> UserRef:
    return UserRef(id=actor.user_id, username=actor.username or "")


def _tenant_user(*, actor: Principal, user_id: int):
    """A user of the caller's tenant; anyone else is ``NotFound``."""
    if not Membership.objects.for_tenant(actor.tenant_id).filter(user_id=user_id).exists():
        raise NotFound("No such user.")
    return User.objects.get(pk=user_id)


def _room_moderation_access(*, actor: Principal, room_id: int) -> tuple[Room, RoomMember | None]:
    """The room and the caller's membership, if the caller may moderate it:
    a room owner or moderator, or a tenant moderator or admin (who need not be in the room)."""
    if actor_is_tenant_moderator(actor):
        room = room_get_in_tenant(actor=actor, room_id=room_id)
        membership = RoomMember.objects.filter(room=room, user_id=actor.user_id).first()
        return room, membership
    membership = room_get_for_member(actor=actor, room_id=room_id)
    if membership.role not in ROOM_MODERATOR_ROLES:
        raise Forbidden("Only the room's owner or moderators can do this.")
    return membership.room, membership


def _check_may_remove(*, actor: Principal, actor_membership: RoomMember | None, target: RoomMember | None) -> None:
    if target is None:
        return
    if target.user_id == actor.user_id:
        raise Invalid("Leave the room instead.", field="user_id")
    if target.role == RoomRole.OWNER:
        raise Forbidden("The room's owner cannot be removed.")
    actor_is_owner = actor_membership is not None and actor_membership.role == RoomRole.OWNER
    if target.role == RoomRole.MODERATOR and not (actor_is_owner or actor_is_tenant_moderator(actor)):
        raise Forbidden("Only the owner can remove a room moderator.")


def _audit(*, action: str, actor: Principal, room: Room, user_id: int, context: RequestContext, **details) -> None:
    audit_record(
        action=action,
        actor=Actor.from_principal(actor),
        tenant_id=room.tenant_id,
        target_type="chat.room",
        target_id=room.pk,
        context=context,
        details={"user_id": user_id, **details},
    )


@transaction.atomic
def room_create(
    *, actor: Principal, name: str, kind: str = RoomKind.PUBLIC, topic: str = "", encrypted: bool = False
) -> Room:
    """Create a public or private room; the creator becomes its owner.

    Names are unique per tenant (``Conflict``). ``encrypted`` stores the room's
    bodies and files encrypted at rest (``chat.crypto``); it needs
    ``CHAT_ENCRYPTION_KEYS`` (``Invalid`` without). Direct rooms are opened with
    ``direct_room_open``. Emits nothing: nobody else is in the room yet.
    """
    user_id = actor_user_id(actor)
    name = (name or "").strip()
    if not name or len(name) > ROOM_NAME_MAX_LENGTH:
        raise Invalid(f"A room name has 1 to {ROOM_NAME_MAX_LENGTH} characters.", field="name")
    if kind not in (RoomKind.PUBLIC, RoomKind.PRIVATE):
        raise Invalid("kind is public or private.", field="kind")
    if encrypted and not encryption_available():
        raise Invalid(
            "Encrypted rooms are not available: the server has no encryption keys configured.", field="encrypted"
        )
    if Room.objects.for_tenant(actor.tenant_id).filter(name=name).exclude(kind=RoomKind.DIRECT).exists():
        raise Conflict("A room with this name exists.", details={"fields": {"name": ["Already taken."]}})
    try:
        with transaction.atomic():
            room = Room.objects.create(
                tenant_id=actor.tenant_id,
                name=name,
                kind=kind,
                topic=topic.strip(),
                encrypted=bool(encrypted),
                created_by_id=user_id,
            )
    except IntegrityError:
        # Lost a race with a concurrent create of the same name.
        raise Conflict("A room with this name exists.", details={"fields": {"name": ["Already taken."]}}) from None
    RoomMember.objects.create(tenant_id=actor.tenant_id, room=room, user_id=user_id, role=RoomRole.OWNER)
    return room


@transaction.atomic
def direct_room_open(*, actor: Principal, user_id: int) -> tuple[Room, bool]:
    """The direct room of the caller and ``user_id`` (same tenant), created on first use
    with both as members. Returns ``(room, created)``; idempotent, race-safe
    through the (tenant, direct_key) constraint."""
    me = actor_user_id(actor)
    if user_id == me:
        raise Invalid("A direct room needs another user.", field="user_id")
    other = _tenant_user(actor=actor, user_id=user_id)
    low, high = sorted((me, user_id))
    key = f"{low}:{high}"
    rooms = Room.objects.for_tenant(actor.tenant_id)
    room = rooms.filter(direct_key=key).first()
    if room is not None:
        return room, False
    try:
        with transaction.atomic():
            room = Room.objects.create(
                tenant_id=actor.tenant_id, name=key, kind=RoomKind.DIRECT, direct_key=key, created_by_id=me
            )
            RoomMember.objects.bulk_create(
                [
                    RoomMember(tenant_id=actor.tenant_id, room=room, user_id=uid, role=RoomRole.MEMBER)
                    for uid in (low, high)
                ]
            )
    except IntegrityError:
        return rooms.get(direct_key=key), False
    chat_event_send(
        tenant_id=actor.tenant_id,
        room_id=room.pk,
        to_user_id=other.pk,
        event=RoomInvitedEvent(room=room.pk, name=room.name, invited_by=_actor_ref(actor)),
    )
    return room, True


@transaction.atomic
def room_join(*, actor: Principal, room_id: int) -> RoomMember:
    """Join a public room, or a private room the caller was invited to.

    A private or direct room without an invitation is ``NotFound``; an active
    ban is ``Forbidden``; an archived room ``Conflict``. Idempotent: a member
    gets their membership back and nothing is emitted. Emits
    ``room.member_joined`` otherwise.
    """
    user_id = actor_user_id(actor)
    room = room_get_in_tenant(actor=actor, room_id=room_id)
    existing = RoomMember.objects.filter(room=room, user_id=user_id).first()
    if existing is not None:
        return existing
    invitation = None
    if room.kind != RoomKind.PUBLIC:
        invitation = RoomInvitation.objects.filter(room=room, invitee_id=user_id, accepted_at__isnull=True).first()
        if invitation is None or room.kind == RoomKind.DIRECT:
            raise NotFound("No such room.")
    if room_ban_active(room=room, user_id=user_id) is not None:
        raise Forbidden("You are banned from this room.")
    if room.archived_at is not None:
        raise Conflict("The room is archived.")
    try:
        with transaction.atomic():
            membership = RoomMember.objects.create(tenant_id=room.tenant_id, room=room, user_id=user_id)
    except IntegrityError:
        # A concurrent join of the same user won; theirs is the membership.
        return RoomMember.objects.get(room=room, user_id=user_id)
    if invitation is not None:
        invitation.accepted_at = timezone.now()
        invitation.save(update_fields=["accepted_at"])
    chat_event_send(
        tenant_id=room.tenant_id,
        room_id=room.pk,
        event=RoomMemberJoinedEvent(room=room.pk, user=_actor_ref(actor), role=membership.role),
    )
    return membership


@transaction.atomic
def room_leave(*, actor: Principal, room_id: int) -> None:
    """Leave a room. Emits ``room.member_left`` (reason ``left``). A private room
    needs a new invitation to come back."""
    membership = room_get_for_member(actor=actor, room_id=room_id)
    membership.delete()
    chat_event_send(
        tenant_id=actor.tenant_id,
        room_id=room_id,
        event=RoomMemberLeftEvent(room=room_id, user=_actor_ref(actor), reason=MemberChange.LEFT),
    )


@transaction.atomic
def room_invite(*, actor: Principal, room_id: int, user_id: int) -> RoomInvitation:
    """Invite a user of the tenant to a private or public room (room owner or moderator).

    A member already in the room or a banned user is ``Conflict``. Re-inviting
    refreshes a pending or used invitation rather than adding one. Emits
    ``room.invited`` to the invitee's own sockets.
    """
    actor_user_id(actor)
    membership = room_get_for_member(actor=actor, room_id=room_id)
    room = membership.room
    if membership.role not in ROOM_MODERATOR_ROLES:
        raise Forbidden("Only the room's owner or moderators can invite.")
    if room.kind == RoomKind.DIRECT:
        raise Invalid("A direct room has exactly two members.", field="user_id")
    invitee = _tenant_user(actor=actor, user_id=user_id)
    if RoomMember.objects.filter(room=room, user_id=user_id).exists():
        raise Conflict("The user is already a member.")
    if room_ban_active(room=room, user_id=user_id) is not None:
        raise Conflict("The user is banned from this room; unban them first.")
    invitation, _created = RoomInvitation.objects.update_or_create(
        room=room,
        invitee=invitee,
        defaults={"tenant_id": room.tenant_id, "invited_by_id": actor.user_id, "accepted_at": None},
    )
    chat_event_send(
        tenant_id=room.tenant_id,
        room_id=room.pk,
        to_user_id=invitee.pk,
        event=RoomInvitedEvent(room=room.pk, name=room.name, invited_by=_actor_ref(actor)),
    )
    return invitation


@transaction.atomic
def room_kick(*, actor: Principal, room_id: int, user_id: int, context: RequestContext = NO_CONTEXT) -> None:
    """Remove a member from the room (they may rejoin a public room). Audited
    (``room.member.kicked``); emits ``room.member_left`` (reason ``kicked``)."""
    room, actor_membership = _room_moderation_access(actor=actor, room_id=room_id)
    target = RoomMember.objects.select_related("user").filter(room=room, user_id=user_id).first()
    if target is None:
        raise NotFound("No such member.")
    _check_may_remove(actor=actor, actor_membership=actor_membership, target=target)
    target.delete()
    _audit(action=AuditAction.ROOM_MEMBER_KICKED, actor=actor, room=room, user_id=user_id, context=context)
    chat_event_send(
        tenant_id=room.tenant_id,
        room_id=room.pk,
        event=RoomMemberLeftEvent(room=room.pk, user=user_ref(target.user), reason=MemberChange.KICKED),
    )


@transaction.atomic
def room_ban(
    *,
    actor: Principal,
    room_id: int,
    user_id: int,
    until: datetime | None = None,
    reason: str = "",
    context: RequestContext = NO_CONTEXT,
) -> RoomBan:
    """Ban a user of the tenant from the room until ``until`` (None: for good).

    Removes their membership and any pending invitation; a second ban replaces
    the first. Audited (``room.member.banned``); emits ``room.member_left``
    (reason ``banned``) when they were in the room.
    """
    room, actor_membership = _room_moderation_access(actor=actor, room_id=room_id)
    target_user = _tenant_user(actor=actor, user_id=user_id)
    if until is not None and until <= timezone.now():
        raise Invalid("until must be in the future.", field="until")
    target = RoomMember.objects.filter(room=room, user_id=user_id).first()
    if target is None and user_id == actor.user_id:
        raise Invalid("You cannot ban yourself.", field="user_id")
    _check_may_remove(actor=actor, actor_membership=actor_membership, target=target)
    ban, _created = RoomBan.objects.update_or_create(
        room=room,
        user=target_user,
        defaults={
            "tenant_id": room.tenant_id,
            "until": until,
            "reason": reason.strip(),
            "created_by_id": actor.user_id,
        },
    )
    RoomInvitation.objects.filter(room=room, invitee=target_user, accepted_at__isnull=True).delete()
    if target is not None:
        target.delete()
        chat_event_send(
            tenant_id=room.tenant_id,
            room_id=room.pk,
            event=RoomMemberLeftEvent(room=room.pk, user=user_ref(target_user), reason=MemberChange.BANNED),
        )
    _audit(
        action=AuditAction.ROOM_MEMBER_BANNED,
        actor=actor,
        room=room,
        user_id=user_id,
        context=context,
        until=until.isoformat() if until else None,
        reason=ban.reason,
    )
    return ban


@transaction.atomic
def room_unban(*, actor: Principal, room_id: int, user_id: int, context: RequestContext = NO_CONTEXT) -> None:
    """Lift a ban (``NotFound`` when there is none). Audited (``room.member.unbanned``).
    The user is not re-added: they join again (or are invited again)."""
    room, _membership = _room_moderation_access(actor=actor, room_id=room_id)
    deleted, _ = RoomBan.objects.filter(room=room, user_id=user_id).delete()
    if not deleted:
        raise NotFound("This user is not banned from the room.")
    _audit(action=AuditAction.ROOM_MEMBER_UNBANNED, actor=actor, room=room, user_id=user_id, context=context)

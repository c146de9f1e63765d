"""Message use cases: send, edit, delete (tombstone) and reactions.

Sequencing: ``message_send`` locks the room row (``SELECT … FOR UPDATE``),
takes ``last_seq + 1`` and inserts, in one transaction, so seqs are strictly
increasing and gap-free per room even with concurrent senders; the message is
persisted before it is broadcast (after commit). ``message_send_many`` is the
same use case for a batch of sends (the hub's group commit): ``message_send``
is a batch of one, so both follow one code path. A resend with the same
``client_id`` returns the stored message (``created`` False) thanks to the
(room, sender, client_id) constraint. docs/api.md, "Chat", describes how
clients use seqs to resume.

Sends and edits pass the moderation pipeline (``chat.moderation``). A send may
carry the sender's own unclaimed uploads to the room (``attachments``, ids from
``chat.services.attachments.attachment_upload``). In an encrypted room bodies
and edit history are stored encrypted and indexed by keyed word hashes
(``chat.services.encryption``); everything returned and broadcast is in clear.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.principals import Principal
from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record

from ..constants import (
    CLIENT_ID_MAX_LENGTH,
    EMOJI_MAX_LENGTH,
    MESSAGE_ATTACHMENTS_MAX,
    MESSAGE_BODY_MAX_LENGTH,
    ROOM_MODERATOR_ROLES,
    ModerationStatus,
    ReactionAction,
)
from ..errors import Conflict, DomainError, Forbidden, Invalid
from ..events import (
    ChatDeletedEvent,
    ChatEditedEvent,
    ChatReactionEvent,
    UserRef,
    chat_event_send,
    chat_messages_send,
    message_payload,
)
from ..models import Attachment, Message, MessageEdit, Reaction, Room, RoomMember
from ..moderation import moderation_screen, moderation_screen_many
from ..selectors import (
    actor_is_tenant_moderator,
    actor_user_id,
    member_check_may_post,
    memberships_for_posting,
    message_get,
    room_get_for_member,
    room_get_in_tenant,
)
from .encryption import message_index, room_seal_text

# The related rows every rendered message needs (chat.events.message_payload).
_RENDERED = ("sender", "reply_to")


def _clean_body(body: object, *, allow_empty: bool = False) -> str:
    """The body as given (HTML is text here), after checking it says something and fits.
    ``allow_empty``: a message that carries attachments may have no text."""
    if not isinstance(body, str):
        raise Invalid("The message is empty.", field="body")
    if not body.strip():
        if allow_empty:
            return ""
        raise Invalid("The message is empty.", field="body")
    if len(body) > MESSAGE_BODY_MAX_LENGTH:
        raise Invalid(f"A message has at most {MESSAGE_BODY_MAX_LENGTH} characters.", field="body")
    return body


def _clean_attachment_ids(attachment_ids: object) -> list[int]:
    if attachment_ids is None:
        return []
    if not isinstance(attachment_ids, list | tuple) or not all(
        isinstance(value, int) and not isinstance(value, bool) and value > 0 for value in attachment_ids
    ):
        raise Invalid("attachments is a list of attachment ids.", field="attachments")
    if len(attachment_ids) > MESSAGE_ATTACHMENTS_MAX:
        raise Invalid(f"A message carries at most {MESSAGE_ATTACHMENTS_MAX} attachments.", field="attachments")
    if len(set(attachment_ids)) != len(attachment_ids):
        raise Invalid("attachments names the same attachment twice.", field="attachments")
    return list(attachment_ids)


def _claimable_attachments(*, room: Room, user_id: int, attachment_ids: list[int]) -> None:
    """Check that every id is the sender's own upload to this room, not yet part of
    a message. Ids of anything else (another room, another user, another
    tenant, nothing) get one answer, so none of them is revealed to exist."""
    if not attachment_ids:
        return
    # Locked until commit: no other send can claim them between here and the insert.
    found = dict(
        Attachment.objects.select_for_update()
        .filter(tenant_id=room.tenant_id, room=room, uploader_id=user_id, pk__in=attachment_ids)
        .values_list("pk", "message_id")
    )
    if len(found) != len(attachment_ids):
        raise Invalid("attachments must name your own uploads to this room.", field="attachments")
    if any(message_id is not None for message_id in found.values()):
        raise Conflict(
            "An attachment is already part of a message.",
            details={"fields": {"attachments": ["Already part of a message."]}},
        )


def _clean_client_id(client_id: object) -> str:
    if not isinstance(client_id, str) or not client_id.strip() or len(client_id) > CLIENT_ID_MAX_LENGTH:
        raise Invalid(f"client_id is a string of 1 to {CLIENT_ID_MAX_LENGTH} characters.", field="client_id")
    return client_id


def _actor_ref(actor: Principal) -> UserRef:
    return UserRef(id=actor.user_id, username=actor.username or "")


@dataclass(frozen=True)
class SendRequest:
    """The arguments of one ``message_send``, as ``message_send_many`` takes them."""

    actor: Principal
    room_id: int
    client_id: str
    body: str
    reply_to_seq: int | None = None
    attachments: list[int] | None = None


# What each request of ``message_send_many`` came to: ``(message, created)`` or
# the domain error ``message_send`` would have raised for it alone.
SendOutcome = tuple[Message, bool] | DomainError


def message_send(
    *,
    actor: Principal,
    room_id: int,
    client_id: str,
    body: str,
    reply_to_seq: int | None = None,
    attachments: list[int] | None = None,
) -> tuple[Message, bool]:
    """Post a message. Returns ``(message, created)``.

    Preconditions: the caller is a member, not muted or banned; the room is not
    archived; the moderation pipeline (``chat.moderation``) does not reject the
    body (``Moderated``), and may flag it. ``attachments`` (at most
    ``MESSAGE_ATTACHMENTS_MAX`` ids) name the sender's own uploads to this room
    that no message carries yet (else ``Invalid``, or ``Conflict`` for one
    already used); with attachments the body may be empty. Locks the room row
    until commit. Idempotent on ``client_id``: a resend returns the stored
    message with ``created`` False and emits nothing (and is not screened
    again). Emits ``chat.message`` (envelope ``seq``) after commit. The
    sender's read marker moves to the new message.
    """
    request = SendRequest(actor, room_id, client_id, body, reply_to_seq, attachments)
    [outcome] = message_send_many([request])
    if isinstance(outcome, DomainError):
        raise outcome
    return outcome


@dataclass
class _NewMessage:
    index: int
    request: SendRequest
    membership: RoomMember
    body: str
    attachment_ids: list[int]
    reply_to: Message | None
    message: Message | None = None


@transaction.atomic
def message_send_many(requests: Sequence[SendRequest]) -> list[SendOutcome]:
    """``message_send`` for several requests (any rooms, senders and tenants) in one
    transaction: the same rules and outcomes, in the order given, for a fixed
    number of queries and Redis round trips whatever their number. A request
    that fails gets its error in its place and the others go on.

    The hub hands it every ``chat.message`` that arrived while the previous
    batch was being written (``realtime.batching``), which is what lets one
    process store thousands of messages a second. Rooms are locked in id order,
    so concurrent batches never deadlock; within a room, seqs follow the order
    of the requests.
    """
    outcomes: list[SendOutcome | None] = [None] * len(requests)
    memberships = memberships_for_posting(
        keys=(
            (r.actor.tenant_id, r.room_id, r.actor.user_id)
            for r in requests
            if r.actor.user_id is not None and isinstance(r.room_id, int)
        )
    )
    stored = _stored_messages(requests)
    first_of_key: dict[tuple[int, int, str], int] = {}
    repeats: list[tuple[int, int]] = []
    new: list[_NewMessage] = []
    for index, request in enumerate(requests):
        try:
            user_id = actor_user_id(request.actor)
            client_id = _clean_client_id(request.client_id)
            key = (request.room_id, user_id, client_id)
            membership = memberships.get((request.actor.tenant_id, *key[:2]))
            if membership is None:
                membership = room_get_for_member(actor=request.actor, room_id=request.room_id)
            # A retry is answered before any check or lock: it was accepted once.
            if key in stored:
                outcomes[index] = (stored[key], False)
                continue
            if key in first_of_key:
                repeats.append((index, first_of_key[key]))
                continue
            attachment_ids = _clean_attachment_ids(request.attachments)
            body = _clean_body(request.body, allow_empty=bool(attachment_ids))
            # Annotated by memberships_for_posting; a membership read one by one has none.
            member_check_may_post(membership, banned=getattr(membership, "banned", None))
            _claimable_attachments(room=membership.room, user_id=user_id, attachment_ids=attachment_ids)
            reply_to = _reply_target(room=membership.room, reply_to_seq=request.reply_to_seq)
        except DomainError as exc:
            outcomes[index] = exc
            continue
        first_of_key[key] = index
        new.append(_NewMessage(index, request, membership, body, attachment_ids, reply_to))

    # Before the lock: moderators may query or count, and a reject stores nothing.
    verdicts = moderation_screen_many([(item.membership.room, item.membership.user_id, item.body) for item in new])
    accepted: list[_NewMessage] = []
    for item, verdict in zip(new, verdicts, strict=True):
        if isinstance(verdict, DomainError):
            outcomes[item.index] = verdict
            continue
        room = item.membership.room
        stored_body, key_id = room_seal_text(room=room, text=item.body)
        item.message = Message(
            tenant_id=room.tenant_id,
            room=room,
            sender=item.membership.user,
            client_id=item.request.client_id,
            body=stored_body,
            body_key_id=key_id,
            reply_to=item.reply_to,
            moderation_status=verdict.status,
            moderation_reason=verdict.reason,
        )
        accepted.append(item)

    inserted = _insert_in_seq_order(accepted, stored=stored)
    for item in accepted:
        if item not in inserted:
            # A concurrent resend of the same client_id committed first.
            key = (item.request.room_id, item.membership.user_id, item.request.client_id)
            outcomes[item.index] = (stored[key], False)
    _after_insert(inserted)
    for item in inserted:
        outcomes[item.index] = (item.message, True)
    for index, first in repeats:
        outcome = outcomes[first]
        outcomes[index] = outcome if isinstance(outcome, DomainError) else (outcome[0], False)
    return outcomes


def _stored_messages(requests: Sequence[SendRequest]) -> dict[tuple[int, int, str], Message]:
    """Messages already stored under the requests' (room, sender, client_id): retries."""
    client_ids = {r.client_id for r in requests if isinstance(r.client_id, str)}
    user_ids = {r.actor.user_id for r in requests if r.actor.user_id is not None}
    if not client_ids or not user_ids:
        return {}
    # Retries are rare: a narrow read finds them, and only those are loaded whole.
    found = list(
        Message.objects.filter(
            room_id__in={r.room_id for r in requests}, sender_id__in=user_ids, client_id__in=client_ids
        ).values_list("pk", flat=True)
    )
    if not found:
        return {}
    rows = Message.objects.select_related(*_RENDERED).prefetch_related("attachments").filter(pk__in=found)
    return {(m.room_id, m.sender_id, m.client_id): m for m in rows}


def _reply_target(*, room: Room, reply_to_seq: int | None) -> Message | None:
    if reply_to_seq is None:
        return None
    reply_to = Message.objects.filter(room=room, seq=reply_to_seq).first()
    if reply_to is None:
        raise Invalid("reply_to_seq names no message of this room.", field="reply_to_seq")
    return reply_to


def _insert_in_seq_order(items: list[_NewMessage], *, stored: dict) -> list[_NewMessage]:
    """Lock the rooms, number the messages and insert them; returns the inserted
    items. The lock serialises senders of a room from here to commit; reading
    ``last_seq`` under it is what makes seqs gap-free."""
    if not items:
        return []
    room_ids = sorted({item.membership.room_id for item in items})
    rooms = Room.objects.select_for_update().filter(pk__in=room_ids).order_by("pk").only("last_seq")
    locked = {room.pk: room for room in rooms}
    last_seq = {room_id: room.last_seq for room_id, room in locked.items()}
    for item in items:
        last_seq[item.membership.room_id] += 1
        item.message.seq = last_seq[item.membership.room_id]
    try:
        with transaction.atomic():
            Message.objects.bulk_create([item.message for item in items])
        inserted = items
    except IntegrityError:
        # A resend with one of these client_ids raced us and committed first:
        # insert one by one, numbering only what goes in.
        inserted = []
        last_seq = {room_id: room.last_seq for room_id, room in locked.items()}
        for item in items:
            item.message.pk = None
            item.message.seq = last_seq[item.membership.room_id] + 1
            try:
                with transaction.atomic():
                    item.message.save(force_insert=True)
            except IntegrityError:
                key = (item.request.room_id, item.membership.user_id, item.request.client_id)
                existing = (
                    Message.objects.select_related(*_RENDERED)
                    .prefetch_related("attachments")
                    .filter(room_id=key[0], sender_id=key[1], client_id=key[2])
                    .first()
                )
                if existing is None:
                    raise
                stored[key] = existing
                continue
            last_seq[item.membership.room_id] = item.message.seq
            inserted.append(item)
    _set_by_pk(Room, "last_seq", {room_id: seq for room_id, seq in last_seq.items() if seq != locked[room_id].last_seq})
    return inserted


def _set_by_pk(model, column: str, values: dict[int, int], *, forward_only: bool = False) -> None:
    """Set ``column`` of each row (by primary key) to its value in one UPDATE;
    ``forward_only`` keeps the greater of the old and new values. Plain SQL: for
    a batch, Django's Case/When costs more to build than the statement to run."""
    if not values:
        return
    quote = connection.ops.quote_name
    table, col, pk = quote(model._meta.db_table), quote(column), quote(model._meta.pk.column)
    new = f"CASE {pk} {' '.join(['WHEN %s THEN CAST(%s AS BIGINT)'] * len(values))} END"
    if forward_only:
        greatest = "MAX" if connection.vendor == "sqlite" else "GREATEST"
        new = f"{greatest}({col}, {new})"
    placeholders = ", ".join(["%s"] * len(values))
    params = [number for pair in values.items() for number in pair] + list(values)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {col} = {new} WHERE {pk} IN ({placeholders})", params)  # noqa: S608


def _after_insert(items: list[_NewMessage]) -> None:
    """Claim attachments, index encrypted bodies, move the senders' read markers,
    and broadcast each message after commit."""
    read_up_to: dict[int, int] = {}
    for item in items:
        message = item.message
        if item.attachment_ids:
            # The rows were locked by _claimable_attachments: nobody else can claim them.
            Attachment.objects.filter(pk__in=item.attachment_ids).update(message=message)
        if message.room.encrypted:
            message_index(message=message, text=item.body)
        membership_pk = item.membership.pk
        read_up_to[membership_pk] = max(read_up_to.get(membership_pk, 0), message.seq)
    _set_by_pk(RoomMember, "last_read_seq", read_up_to, forward_only=True)
    # Only claimed uploads are attached to a message stored just now.
    claimed: dict[int, list[Attachment]] = {}
    with_uploads = [item.message.pk for item in items if item.attachment_ids]
    if with_uploads:
        for attachment in Attachment.objects.filter(message_id__in=with_uploads).order_by("pk"):
            claimed.setdefault(attachment.message_id, []).append(attachment)
    chat_messages_send(
        [(item.message, message_payload(item.message, attachments=claimed.get(item.message.pk, []))) for item in items]
    )


@transaction.atomic
def message_edit(*, actor: Principal, room_id: int, seq: int, body: str) -> Message:
    """Change the body of one's own message; the previous body goes to ``MessageEdit``.

    Only the sender, while a member and not muted; a tombstone is ``Conflict``.
    An unchanged body is a no-op (nothing stored, screened or emitted). The new
    body passes the moderation pipeline as a send does: a reject raises
    ``Moderated`` and changes nothing; a flag stores the edit and marks the
    message flagged for moderators (an allow leaves an earlier flag in place).
    A message with attachments may be edited to an empty body. Emits ``chat.edited``.
    """
    user_id = actor_user_id(actor)
    membership = room_get_for_member(actor=actor, room_id=room_id)
    room = membership.room
    message = message_get(room=room, seq=seq)
    if message.sender_id != user_id:
        raise Forbidden("Only the sender can edit a message.")
    member_check_may_post(membership)
    message = (
        Message.objects.select_for_update(of=("self",))
        .select_related(*_RENDERED)
        .prefetch_related("attachments")
        .get(pk=message.pk)
    )
    if message.deleted_at is not None:
        raise Conflict("The message was deleted.")
    body = _clean_body(body, allow_empty=bool(message.attachments.all()))
    if message.text == body:
        return message
    verdict = moderation_screen(room=room, sender_id=user_id, body=body)
    # The previous body moves to the history as stored (same ciphertext, same key).
    MessageEdit.objects.create(
        message=message, previous_body=message.body, key_id=message.body_key_id, edited_by_id=user_id
    )
    message.body, message.body_key_id = room_seal_text(room=room, text=body)
    message.edited_at = timezone.now()
    update_fields = ["body", "body_key_id", "edited_at"]
    if verdict.status == ModerationStatus.FLAGGED:
        message.moderation_status, message.moderation_reason = verdict.status, verdict.reason
        update_fields += ["moderation_status", "moderation_reason"]
    message.save(update_fields=update_fields)
    if room.encrypted:
        message_index(message=message, text=body)
    chat_event_send(
        tenant_id=message.tenant_id,
        room_id=message.room_id,
        event=ChatEditedEvent(room=message.room_id, seq=message.seq, message=message_payload(message)),
    )
    return message


@transaction.atomic
def message_delete(*, actor: Principal, room_id: int, seq: int, context: RequestContext = NO_CONTEXT) -> Message:
    """Turn a message into a tombstone: body cleared, row and seq kept.

    Allowed to the sender, the room's owner and moderators, and tenant
    moderators and admins (who need not be in the room). A sender's own delete
    also erases the edit history (they retracted it); a moderator's delete
    keeps it and adds the deleted body to it for review, and is audited
    (``chat.message.deleted_by_moderator``). Idempotent: deleting a tombstone
    returns it and emits nothing. The message's attachments are deleted, rows
    at once and files after commit, and it leaves the search index. Emits
    ``chat.deleted``.
    """
    user_id = actor_user_id(actor)
    if actor_is_tenant_moderator(actor):
        room = room_get_in_tenant(actor=actor, room_id=room_id)
        membership = None
    else:
        membership = room_get_for_member(actor=actor, room_id=room_id)
        room = membership.room
    message = message_get(room=room, seq=seq)
    is_sender = message.sender_id == user_id
    room_moderator = membership is not None and membership.role in ROOM_MODERATOR_ROLES
    if not (is_sender or room_moderator or actor_is_tenant_moderator(actor)):
        raise Forbidden("Only the sender or a moderator can delete this message.")
    message = Message.objects.select_for_update(of=("self",)).select_related(*_RENDERED).get(pk=message.pk)
    if message.deleted_at is not None:
        return message
    if is_sender:
        MessageEdit.objects.filter(message=message).delete()
    else:
        MessageEdit.objects.create(
            message=message, previous_body=message.body, key_id=message.body_key_id, edited_by_id=user_id
        )
        audit_record(
            action=AuditAction.CHAT_MESSAGE_DELETED_BY_MODERATOR,
            actor=Actor.from_principal(actor),
            tenant_id=room.tenant_id,
            target_type="chat.message",
            target_id=message.pk,
            context=context,
            details={"room_id": room.pk, "seq": message.seq, "sender_id": message.sender_id},
        )
    # Their files follow after commit (chat.signals).
    Attachment.objects.filter(message=message).delete()
    message_index(message=message, text="")
    message.body, message.body_key_id = "", ""
    message.deleted_at = timezone.now()
    message.deleted_by_id = user_id
    message.save(update_fields=["body", "body_key_id", "deleted_at", "deleted_by"])
    chat_event_send(
        tenant_id=room.tenant_id,
        room_id=room.pk,
        event=ChatDeletedEvent(room=room.pk, seq=message.seq, by_moderator=not is_sender),
    )
    return message


def _clean_emoji(emoji: object) -> str:
    if not isinstance(emoji, str) or not emoji.strip() or len(emoji) > EMOJI_MAX_LENGTH or emoji != emoji.strip():
        raise Invalid(f"emoji is 1 to {EMOJI_MAX_LENGTH} characters without spaces.", field="emoji")
    return emoji


def _reaction_target(*, actor: Principal, room_id: int, seq: int) -> Message:
    membership = room_get_for_member(actor=actor, room_id=room_id)
    member_check_may_post(membership)
    message = message_get(room=membership.room, seq=seq)
    if message.deleted_at is not None:
        raise Conflict("The message was deleted.")
    return message


def _reaction_event(*, actor: Principal, message: Message, emoji: str, action: str) -> None:
    count = Reaction.objects.filter(message=message, emoji=emoji).count()
    chat_event_send(
        tenant_id=message.tenant_id,
        room_id=message.room_id,
        event=ChatReactionEvent(
            room=message.room_id,
            seq=message.seq,
            user=_actor_ref(actor),
            emoji=emoji,
            action=action,
            count=count,
        ),
    )


@transaction.atomic
def reaction_add(*, actor: Principal, room_id: int, seq: int, emoji: str) -> bool:
    """React to a message. Idempotent: returns False (and emits nothing) when the
    reaction was already there. Emits ``chat.reaction`` (action ``added``)."""
    user_id = actor_user_id(actor)
    emoji = _clean_emoji(emoji)
    message = _reaction_target(actor=actor, room_id=room_id, seq=seq)
    try:
        with transaction.atomic():
            _reaction, created = Reaction.objects.get_or_create(message=message, user_id=user_id, emoji=emoji)
    except IntegrityError:
        # A concurrent identical reaction won the insert.
        return False
    if created:
        _reaction_event(actor=actor, message=message, emoji=emoji, action=ReactionAction.ADDED)
    return created


@transaction.atomic
def reaction_remove(*, actor: Principal, room_id: int, seq: int, emoji: str) -> bool:
    """Take one's reaction back. Idempotent: returns False when there was none.
    Emits ``chat.reaction`` (action ``removed``)."""
    user_id = actor_user_id(actor)
    emoji = _clean_emoji(emoji)
    membership = room_get_for_member(actor=actor, room_id=room_id)
    message = message_get(room=membership.room, seq=seq)
    deleted, _ = Reaction.objects.filter(message=message, user_id=user_id, emoji=emoji).delete()
    if deleted:
        _reaction_event(actor=actor, message=message, emoji=emoji, action=ReactionAction.REMOVED)
    return bool(deleted)

"""Reads of chat shared by REST, WebSocket handlers and services.

The access rule lives here, once (``room_get_for_member``): a room of another
tenant, or a private or direct room the caller is not in, is ``NotFound`` (the
caller never learns it exists); a public room of their tenant they have not
joined is ``Forbidden`` for history and sending. Every query starts from the
caller's tenant (``for_tenant``) or from a room already checked that way.
docs/api.md, "Chat", describes the rules from the client's side.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import Exists, F, Func, OuterRef, Q, QuerySet
from django.utils import timezone

from accounts.constants import Role
from accounts.principals import Principal

from .constants import (
    ROOM_MODERATOR_ROLES,
    SEARCH_CONFIG,
    SEARCH_ENCRYPTED_MAX_WORDS,
    SEARCH_HIGHLIGHT_START,
    SEARCH_HIGHLIGHT_STOP,
    SEARCH_RESULTS_LIMIT,
    ModerationStatus,
    RoomKind,
)
from .crypto import search_token, search_words
from .errors import Conflict, Forbidden, Invalid, NotFound
from .models import Attachment, Message, MessageSearchToken, Room, RoomBan, RoomMember

# --- Who is asking ----------------------------------------------------------------


def actor_user_id(actor: Principal) -> int:
    """The acting user's id. Chat is for people: an API client is refused."""
    if actor.user_id is None:
        raise Forbidden("Only users can take part in chat.")
    return actor.user_id


def actor_is_tenant_moderator(actor: Principal) -> bool:
    return actor.has_role(Role.MODERATOR)


# --- Rooms ------------------------------------------------------------------------


def room_get_in_tenant(*, actor: Principal, room_id: int) -> Room:
    """The room if it belongs to the caller's tenant (no membership check): for
    tenant moderators and for joining. Another tenant's id is ``NotFound``."""
    room = Room.objects.for_tenant(actor.tenant_id).filter(pk=room_id).first()
    if room is None:
        raise NotFound("No such room.")
    return room


def room_get_for_member(*, actor: Principal, room_id: int) -> RoomMember:
    """The caller's membership of the room (``.room`` loaded), or the error the access rule gives."""
    user_id = actor_user_id(actor)
    membership = (
        RoomMember.objects.for_tenant(actor.tenant_id)
        .select_related("room")
        .filter(room_id=room_id, user_id=user_id)
        .first()
    )
    if membership is not None:
        return membership
    room = room_get_in_tenant(actor=actor, room_id=room_id)
    if room.kind != RoomKind.PUBLIC:
        raise NotFound("No such room.")
    raise Forbidden("Join the room first.")


def room_get_visible(*, actor: Principal, room_id: int) -> tuple[Room, RoomMember | None]:
    """A room the caller may look at: one they are in, or any public room of
    their tenant (so they can decide to join). Returns the room and the
    caller's membership, if any."""
    try:
        membership = room_get_for_member(actor=actor, room_id=room_id)
    except Forbidden:
        return room_get_in_tenant(actor=actor, room_id=room_id), None
    return membership.room, membership


def rooms_for_user(*, actor: Principal) -> QuerySet[RoomMember]:
    """The caller's memberships with their rooms and an ``unread`` count each, in one query.

    Seqs are gap-free and a sender's own marker advances with each send, so
    ``last_seq - last_read_seq`` is the number of others' messages after the
    marker (tombstones included: they were news when they arrived).
    """
    user_id = actor_user_id(actor)
    return (
        RoomMember.objects.for_tenant(actor.tenant_id)
        .filter(user_id=user_id)
        .select_related("room")
        .annotate(unread=F("room__last_seq") - F("last_read_seq"))
    )


def unread_counts(*, actor: Principal) -> dict[int, int]:
    """Room id to unread count for every room the caller is in."""
    return dict(rooms_for_user(actor=actor).values_list("room_id", "unread"))


def room_members(*, room: Room) -> QuerySet[RoomMember]:
    """The members of an already access-checked room, with their users."""
    return RoomMember.objects.filter(room=room).select_related("user")


def bans_in_force() -> QuerySet[RoomBan]:
    """Every ban still in force (no end, or an end still ahead)."""
    return RoomBan.objects.filter(Q(until__isnull=True) | Q(until__gt=timezone.now()))


def room_ban_active(*, room: Room, user_id: int) -> RoomBan | None:
    """The user's ban from the room if it is still in force."""
    return bans_in_force().filter(room=room, user_id=user_id).first()


def memberships_for_posting(*, keys: Iterable[tuple[int, int, int]]) -> dict[tuple[int, int, int], RoomMember]:
    """The memberships named by (tenant, room, user), with room and user loaded and
    ``banned`` (a ban in force) annotated, by that key: what ``member_check_may_post``
    needs for a batch of posts, in one query."""
    keys = set(keys)
    if not keys:
        return {}
    active_ban = bans_in_force().filter(room_id=OuterRef("room_id"), user_id=OuterRef("user_id"))
    rows = (
        RoomMember.objects.select_related("room", "user")
        .filter(tenant_id__in={k[0] for k in keys}, room_id__in={k[1] for k in keys}, user_id__in={k[2] for k in keys})
        .annotate(banned=Exists(active_ban))
    )
    found = {(m.tenant_id, m.room_id, m.user_id): m for m in rows}
    return {key: found[key] for key in keys if key in found}


def member_check_may_post(membership: RoomMember, *, banned: bool | None = None) -> None:
    """Muted and banned members, and archived rooms, take no new content
    (messages, edits, reactions, uploads): ``Forbidden`` or ``Conflict``.
    ``banned``: whether a ban is in force, when the caller already read it
    (``memberships_for_posting`` annotates it for a batch); looked up otherwise."""
    room = membership.room
    if membership.muted_until is not None and membership.muted_until > timezone.now():
        raise Forbidden("You are muted in this room.", details={"muted_until": membership.muted_until.isoformat()})
    if banned is None:
        banned = room_ban_active(room=room, user_id=membership.user_id) is not None
    if banned:
        raise Forbidden("You are banned from this room.")
    if room.archived_at is not None:
        raise Conflict("The room is archived.")


# --- Messages ---------------------------------------------------------------------


def messages_queryset(*, room: Room) -> QuerySet[Message]:
    """Every message of an already access-checked room, loaded for rendering."""
    return Message.objects.filter(room=room).select_related("sender", "reply_to").prefetch_related("attachments")


def message_get(*, room: Room, seq: int) -> Message:
    message = messages_queryset(room=room).filter(seq=seq).first()
    if message is None:
        raise NotFound("No such message.")
    return message


def _batch_limit(limit: int | None) -> int:
    maximum = settings.MESSAGE_BATCH_SIZE
    if limit is None:
        return maximum
    if limit < 1:
        raise Invalid("limit must be at least 1.", field="limit")
    return min(limit, maximum)


def messages_page(
    *, room: Room, before_seq: int | None = None, after_seq: int | None = None, limit: int | None = None
) -> list[Message]:
    """Up to ``limit`` (at most ``MESSAGE_BATCH_SIZE``) messages in ascending seq
    order: the newest before ``before_seq``, or the oldest after ``after_seq``,
    or the newest of the room when neither is given."""
    if before_seq is not None and after_seq is not None:
        raise Invalid("Give before_seq or after_seq, not both.", field="before_seq")
    limit = _batch_limit(limit)
    queryset = messages_queryset(room=room)
    if after_seq is not None:
        return list(queryset.filter(seq__gt=after_seq).order_by("seq")[:limit])
    if before_seq is not None:
        queryset = queryset.filter(seq__lt=before_seq)
    return list(reversed(queryset.order_by("-seq")[:limit]))


@dataclass(frozen=True)
class ResumeBatch:
    """What a reconnecting client missed after ``last_seq``.

    ``recovered`` is true when every seq in (last_seq, room.last_seq] still has
    a row (tombstones count): the client can rebuild the stream exactly, page
    by page while ``has_more``. Otherwise ``missing`` lists the inclusive seq
    ranges that are gone (retention) and the client should reload the room.
    """

    messages: list[Message]
    recovered: bool
    missing: list[tuple[int, int]]
    has_more: bool
    room_last_seq: int


def _missing_ranges(present: list[int], start: int, end: int) -> list[tuple[int, int]]:
    """Inclusive ranges of [start, end] absent from the sorted ``present``."""
    ranges, expected = [], start
    for seq in present:
        if seq > expected:
            ranges.append((expected, seq - 1))
        expected = seq + 1
    if expected <= end:
        ranges.append((expected, end))
    return ranges


def messages_after(*, room: Room, last_seq: int, limit: int | None = None) -> ResumeBatch:
    """The first ``limit`` messages after ``last_seq``, and whether the rest of the stream is intact."""
    if last_seq < 0:
        raise Invalid("last_seq must be zero or more.", field="last_seq")
    limit = _batch_limit(limit)
    room_last_seq = Room.objects.filter(pk=room.pk).values_list("last_seq", flat=True).get()
    end = room_last_seq
    in_range = Message.objects.filter(room=room, seq__gt=last_seq, seq__lte=end)
    expected = max(0, end - last_seq)
    # One COUNT answers the common case; only a stream with holes pays for listing seqs.
    if in_range.count() == expected:
        recovered, missing = True, []
    else:
        present = list(in_range.order_by("seq").values_list("seq", flat=True))
        recovered, missing = False, _missing_ranges(present, last_seq + 1, end)
    messages = list(messages_queryset(room=room).filter(seq__gt=last_seq).order_by("seq")[: limit + 1])
    return ResumeBatch(
        messages=messages[:limit],
        recovered=recovered,
        missing=missing,
        has_more=len(messages) > limit,
        room_last_seq=room_last_seq,
    )


# --- Search -----------------------------------------------------------------------


@dataclass(frozen=True)
class SearchHit:
    """One search result: ``headline`` is the body with matches wrapped in
    ``SEARCH_HIGHLIGHT_START``/``STOP``; ``rank`` is None on SQLite."""

    message: Message
    rank: float | None
    headline: str


class _SimpleTsVector(Func):
    """``to_tsvector('simple', body)``: the exact expression of the GIN index
    created in migration 0002, so PostgreSQL can use it. (Django's SearchVector
    wraps the column in COALESCE, which the index would not match.)"""

    function = "to_tsvector"
    template = f"%(function)s('{SEARCH_CONFIG}'::regconfig, %(expressions)s)"

    def __init__(self, expression, **extra):
        from django.contrib.postgres.search import SearchVectorField

        super().__init__(expression, output_field=SearchVectorField(), **extra)


def message_search(
    *, actor: Principal, q: str, room_id: int | None = None, limit: int = SEARCH_RESULTS_LIMIT
) -> list[SearchHit]:
    """Messages matching ``q`` in rooms the caller is a member of (optionally one
    room, access-checked). Tombstones never match.

    Messages stored in clear: on PostgreSQL, full-text search with the
    ``simple`` configuration, ranked by ``ts_rank`` and highlighted by
    ``ts_headline``, best match first; on SQLite (the embedded default), a
    case-insensitive substring match, newest first. Messages stored encrypted
    (``_search_encrypted``) come after them, newest first, with ``rank`` None.
    """
    user_id = actor_user_id(actor)
    q = (q or "").strip()
    if not q:
        raise Invalid("Give a search query.", field="q")
    if len(search_words(q)) > SEARCH_ENCRYPTED_MAX_WORDS:
        raise Invalid(f"A search has at most {SEARCH_ENCRYPTED_MAX_WORDS} words.", field="q")
    queryset = (
        Message.objects.for_tenant(actor.tenant_id)
        .filter(deleted_at__isnull=True)
        .select_related("sender", "reply_to")
        .prefetch_related("attachments")
    )
    if room_id is not None:
        queryset = queryset.filter(room=room_get_for_member(actor=actor, room_id=room_id).room)
    else:
        queryset = queryset.filter(room__members__user_id=user_id)
    limit = max(1, min(limit, SEARCH_RESULTS_LIMIT))

    hits = _search_clear(queryset.filter(body_key_id=""), q=q, limit=limit)
    if len(hits) < limit:
        hits += _search_encrypted(
            queryset.exclude(body_key_id=""), tenant_id=actor.tenant_id, q=q, limit=limit - len(hits)
        )
    return hits


def _search_clear(queryset: QuerySet[Message], *, q: str, limit: int) -> list[SearchHit]:
    if connection.vendor != "postgresql":
        matches = queryset.filter(body__icontains=q).order_by("-created_at", "-id")[:limit]
        return [SearchHit(message=m, rank=None, headline=m.body) for m in matches]

    from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank

    query = SearchQuery(q, config=SEARCH_CONFIG, search_type="websearch")
    document = _SimpleTsVector(F("body"))
    matches = (
        queryset.annotate(document=document)
        .filter(document=query)
        .annotate(
            rank=SearchRank(document, query),
            headline=SearchHeadline(
                "body",
                query,
                config=SEARCH_CONFIG,
                start_sel=SEARCH_HIGHLIGHT_START,
                stop_sel=SEARCH_HIGHLIGHT_STOP,
            ),
        )
        .order_by("-rank", "-created_at", "-id")[:limit]
    )
    return [SearchHit(message=m, rank=m.rank, headline=m.headline) for m in matches]


def _search_encrypted(queryset: QuerySet[Message], *, tenant_id: int, q: str, limit: int) -> list[SearchHit]:
    """Encrypted messages containing every word of ``q`` (whole words, as
    ``chat.crypto.search_words`` splits them), through their keyed-hash tokens:
    one indexed lookup per word, nothing read in clear by the database. The hits
    are decrypted and highlighted here. No ranking, no phrases or operators."""
    words = search_words(q)
    if not words:
        return []
    for word in words:
        token = search_token(tenant_id=tenant_id, word=word)
        queryset = queryset.filter(Exists(MessageSearchToken.objects.filter(message=OuterRef("pk"), token=token)))
    matches = queryset.order_by("-created_at", "-id")[:limit]
    wanted = set(words)
    return [SearchHit(message=m, rank=None, headline=_highlight(m.text, wanted)) for m in matches]


_WORD = re.compile(r"\w+")


def _highlight(text: str, words: set[str]) -> str:
    """``text`` with each whole word that normalises to one of ``words`` wrapped in the highlight markers."""

    def mark(match: re.Match[str]) -> str:
        word = match.group(0)
        if unicodedata.normalize("NFKC", word).casefold() in words:
            return f"{SEARCH_HIGHLIGHT_START}{word}{SEARCH_HIGHLIGHT_STOP}"
        return word

    return _WORD.sub(mark, text)


# --- Attachments ------------------------------------------------------------------


def attachment_get_for_member(*, actor: Principal, attachment_id: int) -> Attachment:
    """An attachment the caller may download: of a room they are a member of, and
    either carried by a message or their own upload not sent yet. Anything else
    (another tenant's, a room they are not in, someone's pending upload, no
    such id) is ``NotFound``, alike."""
    user_id = actor_user_id(actor)
    attachment = (
        Attachment.objects.for_tenant(actor.tenant_id).filter(pk=attachment_id, room__members__user_id=user_id).first()
    )
    if attachment is None or (attachment.message_id is None and attachment.uploader_id != user_id):
        raise NotFound("No such attachment.")
    return attachment


# --- Moderation -------------------------------------------------------------------


def messages_flagged(*, actor: Principal, room_id: int | None = None) -> QuerySet[Message]:
    """The review queue: messages the moderation pipeline flagged, not yet cleared
    or deleted, in the rooms the caller moderates (every room of the tenant for a
    tenant moderator or admin; their own rooms for a room owner or moderator;
    none for anyone else), newest first."""
    user_id = actor_user_id(actor)
    queryset = (
        Message.objects.for_tenant(actor.tenant_id)
        .filter(moderation_status=ModerationStatus.FLAGGED, deleted_at__isnull=True)
        .select_related("sender", "reply_to")
        .prefetch_related("attachments")
    )
    if not actor_is_tenant_moderator(actor):
        # One membership per (room, user): the join cannot repeat a message.
        queryset = queryset.filter(room__members__user_id=user_id, room__members__role__in=ROOM_MODERATOR_ROLES)
    if room_id is not None:
        queryset = queryset.filter(room_id=room_id)
    return queryset.order_by("-id")

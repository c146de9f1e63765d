"""The moderation pipeline every new chat message passes before it is stored.

``settings.CHAT_MODERATORS`` lists moderator classes by dotted path.
``moderation_screen`` hands each one the submission (tenant, room, sender,
body, and the room's recent messages on demand) and combines their verdicts:

- ``allow``: nothing to say;
- ``flag(reason)``: the message is stored with ``moderation_status=flagged``
  and the reasons, delivered as usual, and listed for moderators (REST and
  admin) until one clears the flag;
- ``reject(reason)``: ``chat.errors.Moderated`` is raised and nothing is
  stored. A reject wins: the moderators after it do not run.

Moderators are instantiated once per process and must keep no state of their
own; what they count lives in the cache (Redis when configured, so every
process shares it) and what they are configured with lives in the database.
The three shipped ones are enabled by default: ``FloodModerator``,
``RepeatModerator`` and ``BlockedWordsModerator``. Only
``chat.services.messages.message_send`` calls the pipeline; the rules as
clients see them are in docs/api.md, "Moderation".
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import ClassVar

from django.conf import settings
from django.core.cache import cache
from django.utils.module_loading import import_string

from .constants import MODERATION_REASON_MAX_LENGTH, BlockedWordAction, ModerationStatus
from .errors import Moderated
from .models import BlockedWord, Message, Room

logger = logging.getLogger(__name__)

# How many of the room's latest messages ``Submission.recent`` loads: enough
# context to judge a reply, few enough to stay one cheap indexed query.
RECENT_CONTEXT_SIZE = 20


class Decision(StrEnum):
    ALLOW = "allow"
    FLAG = "flag"
    REJECT = "reject"


@dataclass(frozen=True)
class Verdict:
    """One moderator's answer, or the pipeline's combined one.

    ``code`` names the rule (``flood``, ``repeat``, ``blocked_word``) for
    machines; ``reason`` is for people: the sender reads a reject's reason,
    only moderators read a flag's.
    """

    decision: Decision
    code: str = ""
    reason: str = ""

    @property
    def status(self) -> ModerationStatus:
        """The ``Message.moderation_status`` a message with this verdict is stored with."""
        return ModerationStatus.FLAGGED if self.decision == Decision.FLAG else ModerationStatus.OK


ALLOW = Verdict(Decision.ALLOW)


def flag(code: str, reason: str) -> Verdict:
    return Verdict(Decision.FLAG, code, reason)


def reject(code: str, reason: str) -> Verdict:
    return Verdict(Decision.REJECT, code, reason)


def normalise(text: str) -> str:
    """``text`` as moderation compares it: NFKC (full-width and compatibility forms
    folded), invisible format characters (zero-width spaces, joiners) removed,
    whitespace runs collapsed. Case is kept: each rule decides about case."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(char for char in text if unicodedata.category(char) != "Cf")
    return " ".join(text.split())


@dataclass
class Submission:
    """A message about to be stored, as moderators see it. ``recent`` is loaded on
    first use only, so moderators that do not need context cost no query."""

    tenant_id: int
    room: Room
    sender_id: int
    body: str

    @cached_property
    def text(self) -> str:
        """The normalised body (``normalise``)."""
        return normalise(self.body)

    @cached_property
    def recent(self) -> tuple[Message, ...]:
        """The room's latest messages (tombstones left out), newest first."""
        return tuple(
            Message.objects.filter(room=self.room, deleted_at__isnull=True)
            .select_related("sender")
            .order_by("-seq")[:RECENT_CONTEXT_SIZE]
        )


class Moderator(ABC):
    """Base of moderators: ``check`` returns a ``Verdict`` and writes nothing to the database."""

    name: ClassVar[str]

    @abstractmethod
    def check(self, submission: Submission) -> Verdict: ...


def window_hit(key: str, *, window: int) -> int:
    """Count one event under ``key`` in a fixed window of ``window`` seconds that
    opens with the first event; returns the count so far, this event included.

    Fails open (returns 0) when the cache is unavailable: a Redis outage must
    not stop every conversation, and the other moderators still run.
    """
    try:
        cache.add(key, 0, timeout=window)
        try:
            return cache.incr(key)
        except ValueError:
            # The window closed between add and incr: this event opens the next one.
            cache.set(key, 1, timeout=window)
            return 1
    except Exception:
        logger.exception("moderation counter unavailable", extra={"key": key})
        return 0


class FloodModerator(Moderator):
    """Rejects a user's message in a room beyond ``CHAT_FLOOD_MAX_MESSAGES`` within
    ``CHAT_FLOOD_WINDOW_SECONDS``. Every attempt counts, rejected ones included,
    so a flooding client gains nothing by retrying at once."""

    name = "flood"

    def check(self, submission: Submission) -> Verdict:
        limit, window = settings.CHAT_FLOOD_MAX_MESSAGES, settings.CHAT_FLOOD_WINDOW_SECONDS
        key = f"chat:mod:flood:t{submission.tenant_id}:r{submission.room.pk}:u{submission.sender_id}"
        if window_hit(key, window=window) > limit:
            return reject(self.name, f"Too many messages: at most {limit} every {window} seconds. Slow down.")
        return ALLOW


class RepeatModerator(Moderator):
    """Rejects the same text (case, spacing and invisible characters ignored) sent by
    one user in one room more than ``CHAT_REPEAT_MAX_MESSAGES`` times within
    ``CHAT_REPEAT_WINDOW_SECONDS``. Only a digest of the text is kept, never the text."""

    name = "repeat"

    def check(self, submission: Submission) -> Verdict:
        limit, window = settings.CHAT_REPEAT_MAX_MESSAGES, settings.CHAT_REPEAT_WINDOW_SECONDS
        digest = hashlib.sha256(submission.text.casefold().encode()).hexdigest()[:32]
        key = f"chat:mod:repeat:t{submission.tenant_id}:r{submission.room.pk}:u{submission.sender_id}:{digest}"
        if window_hit(key, window=window) > limit:
            return reject(self.name, "You have sent this message too many times.")
        return ALLOW


@lru_cache(maxsize=4096)
def phrase_pattern(phrase: str) -> re.Pattern[str] | None:
    """Whole-word, case-insensitive matcher of a blocked phrase: "spam" matches
    "SPAM!" but not "spammer"; the words of a phrase match across any spacing.
    None for a phrase with no words, which would otherwise match everything."""
    words = normalise(phrase).split()
    if not words:
        return None
    return re.compile(r"(?<!\w)" + r"\s+".join(re.escape(word) for word in words) + r"(?!\w)", re.IGNORECASE)


class BlockedWordsModerator(Moderator):
    """Applies the tenant's ``BlockedWord`` list: any ``reject`` phrase rejects the
    message, otherwise any ``flag`` phrase flags it. Read on every message (one
    indexed query), so a change in the admin applies to the next message."""

    name = "blocked_word"

    def check(self, submission: Submission) -> Verdict:
        rules = BlockedWord.objects.filter(tenant_id=submission.tenant_id).values_list("phrase", "action")
        flagged: list[str] = []
        for phrase, action in rules:
            pattern = phrase_pattern(phrase)
            if pattern is None or not pattern.search(submission.text):
                continue
            if action == BlockedWordAction.REJECT:
                # The sender is not told which phrase: that would teach them the list.
                return reject(self.name, "The message contains a word this community does not allow.")
            flagged.append(phrase)
        if flagged:
            return flag(self.name, f"Blocked words: {', '.join(flagged)}")
        return ALLOW


@lru_cache(maxsize=8)
def _load(paths: tuple[str, ...]) -> tuple[Moderator, ...]:
    return tuple(import_string(path)() for path in paths)


def moderators() -> tuple[Moderator, ...]:
    """The configured moderators, in order (keyed on the setting, so a changed setting takes effect)."""
    return _load(tuple(settings.CHAT_MODERATORS))


def moderation_run(submission: Submission) -> Verdict:
    """Run the pipeline on ``submission`` and combine the verdicts: the first reject,
    else one flag carrying every flag's code and reason, else allow."""
    flags: list[Verdict] = []
    for moderator in moderators():
        verdict = moderator.check(submission)
        if verdict.decision == Decision.REJECT:
            return verdict
        if verdict.decision == Decision.FLAG:
            flags.append(verdict)
    if not flags:
        return ALLOW
    codes = ",".join(dict.fromkeys(verdict.code for verdict in flags))
    reason = "; ".join(verdict.reason for verdict in flags)
    if len(reason) > MODERATION_REASON_MAX_LENGTH:
        reason = f"{reason[: MODERATION_REASON_MAX_LENGTH - 1]}…"
    return flag(codes, reason)


def moderation_screen(*, room: Room, sender_id: int, body: str) -> Verdict:
    """Screen a message before it is stored: returns the verdict to store it with
    (allow or flag), or raises ``Moderated`` (``details.reason`` = the rule's code)."""
    verdict = moderation_run(Submission(tenant_id=room.tenant_id, room=room, sender_id=sender_id, body=body))
    if verdict.decision == Decision.REJECT:
        logger.info(
            "chat message rejected by moderation",
            extra={"tenant_id": room.tenant_id, "room_id": room.pk, "user_id": sender_id, "rule": verdict.code},
        )
        raise Moderated(verdict.reason, details={"reason": verdict.code})
    return verdict

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
``chat.services.messages`` calls the pipeline (``moderation_screen``, or
``moderation_screen_many`` for a batch of sends, where each moderator sees
the batch at once through ``Moderator.check_many``); the rules as
clients see them are in docs/api.md, "Moderation".
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import ClassVar

import redis
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

    def check_many(self, submissions: Sequence[Submission]) -> list[Verdict]:
        """The verdicts on several submissions at once (the hub screens a batch of
        messages together). Override when one round trip can serve them all."""
        return [self.check(submission) for submission in submissions]


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


def window_hits(keys: Sequence[str], *, window: int) -> list[int]:
    """``window_hit`` for several keys (repeats count in order) in one Redis round
    trip when the cache is Redis, with the same keys and the same fail-open rule."""
    if not keys:
        return []
    client = _redis_client()
    if client is None:
        return [window_hit(key, window=window) for key in keys]
    try:
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                cache_key = cache.make_and_validate_key(key)
                pipe.incr(cache_key)
                # The window opens with its first event: set the expiry only then.
                pipe.expire(cache_key, window, nx=True)
            results = pipe.execute()
    except Exception:
        logger.exception("moderation counters unavailable", extra={"keys": len(keys)})
        return [0] * len(keys)
    return [int(count) for count in results[0::2]]


@lru_cache(maxsize=1)
def _redis_client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        max_connections=settings.REDIS_MAX_CONNECTIONS,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
    )


def _redis_client() -> redis.Redis | None:
    """A client on the cache's Redis (the counters are the cache's keys), or None
    when the cache is not Redis (the embedded default)."""
    if not settings.REDIS_URL or not settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        return None
    return _redis_client_for(settings.CACHES["default"]["LOCATION"])


class FloodModerator(Moderator):
    """Rejects a user's message in a room beyond ``CHAT_FLOOD_MAX_MESSAGES`` within
    ``CHAT_FLOOD_WINDOW_SECONDS``. Every attempt counts, rejected ones included,
    so a flooding client gains nothing by retrying at once."""

    name = "flood"

    def check(self, submission: Submission) -> Verdict:
        return self.check_many([submission])[0]

    def check_many(self, submissions: Sequence[Submission]) -> list[Verdict]:
        limit, window = settings.CHAT_FLOOD_MAX_MESSAGES, settings.CHAT_FLOOD_WINDOW_SECONDS
        keys = [f"chat:mod:flood:t{s.tenant_id}:r{s.room.pk}:u{s.sender_id}" for s in submissions]
        refusal = reject(self.name, f"Too many messages: at most {limit} every {window} seconds. Slow down.")
        return [refusal if count > limit else ALLOW for count in window_hits(keys, window=window)]


class RepeatModerator(Moderator):
    """Rejects the same text (case, spacing and invisible characters ignored) sent by
    one user in one room more than ``CHAT_REPEAT_MAX_MESSAGES`` times within
    ``CHAT_REPEAT_WINDOW_SECONDS``. Only a digest of the text is kept, never the text."""

    name = "repeat"

    def check(self, submission: Submission) -> Verdict:
        return self.check_many([submission])[0]

    def check_many(self, submissions: Sequence[Submission]) -> list[Verdict]:
        limit, window = settings.CHAT_REPEAT_MAX_MESSAGES, settings.CHAT_REPEAT_WINDOW_SECONDS
        keys = []
        for s in submissions:
            digest = hashlib.sha256(s.text.casefold().encode()).hexdigest()[:32]
            keys.append(f"chat:mod:repeat:t{s.tenant_id}:r{s.room.pk}:u{s.sender_id}:{digest}")
        refusal = reject(self.name, "You have sent this message too many times.")
        return [refusal if count > limit else ALLOW for count in window_hits(keys, window=window)]


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
        return self.check_many([submission])[0]

    def check_many(self, submissions: Sequence[Submission]) -> list[Verdict]:
        rules: dict[int, list[tuple[str, str]]] = {}
        for phrase_tenant, phrase, action in BlockedWord.objects.filter(
            tenant_id__in={s.tenant_id for s in submissions}
        ).values_list("tenant_id", "phrase", "action"):
            rules.setdefault(phrase_tenant, []).append((phrase, action))
        return [self._judge(s, rules.get(s.tenant_id, ())) for s in submissions]

    def _judge(self, submission: Submission, rules) -> Verdict:
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
    return moderation_run_many([submission])[0]


def moderation_run_many(submissions: Sequence[Submission]) -> list[Verdict]:
    """``moderation_run`` for several submissions, each moderator seeing together
    those that no earlier moderator rejected."""
    rejected: dict[int, Verdict] = {}
    flags: list[list[Verdict]] = [[] for _ in submissions]
    for moderator in moderators():
        open_ones = [index for index in range(len(submissions)) if index not in rejected]
        if not open_ones:
            break
        verdicts = moderator.check_many([submissions[index] for index in open_ones])
        for index, verdict in zip(open_ones, verdicts, strict=True):
            if verdict.decision == Decision.REJECT:
                rejected[index] = verdict
            elif verdict.decision == Decision.FLAG:
                flags[index].append(verdict)
    return [rejected[index] if index in rejected else _combined(flags[index]) for index in range(len(submissions))]


def _combined(flags: list[Verdict]) -> Verdict:
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
    [outcome] = moderation_screen_many([(room, sender_id, body)])
    if isinstance(outcome, Moderated):
        raise outcome
    return outcome


def moderation_screen_many(items: Sequence[tuple[Room, int, str]]) -> list[Verdict | Moderated]:
    """``moderation_screen`` for several (room, sender id, body) at once: a reject
    comes back as its ``Moderated`` error in its place instead of being raised."""
    submissions = [
        Submission(tenant_id=room.tenant_id, room=room, sender_id=sender, body=body) for room, sender, body in items
    ]
    outcomes: list[Verdict | Moderated] = []
    for submission, verdict in zip(submissions, moderation_run_many(submissions), strict=True):
        if verdict.decision != Decision.REJECT:
            outcomes.append(verdict)
            continue
        logger.info(
            "chat message rejected by moderation",
            extra={
                "tenant_id": submission.tenant_id,
                "room_id": submission.room.pk,
                "user_id": submission.sender_id,
                "rule": verdict.code,
            },
        )
        outcomes.append(Moderated(verdict.reason, details={"reason": verdict.code}))
    return outcomes

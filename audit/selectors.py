"""Reading the audit trail: verifying its hash chains.

``audit_chains_verify`` walks each chain in sequence order and returns one
``ChainVerification`` per chain, naming the first broken link. It is shared by
the ``verify_audit_chain`` command and the admin's "verify" action, and reads
rows as a stream (``.iterator()``), so memory stays constant however long a
chain is. docs/audit.md explains what each check catches.

A link is broken when:

* a row's stored hash differs from the hash recomputed from its columns and the
  previous row's hash (a chained column was altered);
* a row's personal fields no longer match its ``personal_digest`` and the row
  was not erased (a personal field was altered), or an erased row still holds
  personal data next to a digest that does not match it (a partial or forged
  erasure);
* a sequence number is missing or ``prev_hash`` does not name the previous row
  (a row was removed);
* the chain head (``AuditChainHead``) or an anchor taken from the log stream
  records a later sequence number, or another hash, than the rows hold (the
  tail was truncated, or the chain was rebuilt).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from accounts.models import Tenant

from . import chain
from .constants import GENESIS_HASH
from .models import AuditChainHead, AuditEvent

# The message the ``audit.chain`` logger writes with every head (audit.services).
ANCHOR_MESSAGE = "audit chain head"
GLOBAL_CHAIN_KEY = 0
GLOBAL_CHAIN_LABEL = "global"
_STREAM_CHUNK_SIZE = 2000


@dataclass(frozen=True)
class Anchor:
    """A chain head recorded outside the table: (chain, seq, hash)."""

    chain: int
    seq: int
    hash: str


@dataclass(frozen=True)
class ChainBreak:
    """The first broken link of a chain. ``event_id`` is None when no row holds ``seq``."""

    seq: int
    event_id: int | None
    reason: str


@dataclass(frozen=True)
class ChainVerification:
    """The outcome of walking one chain."""

    chain_key: int
    label: str
    events: int
    head_seq: int
    broken: ChainBreak | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None

    @property
    def tenant_id(self) -> int | None:
        return self.chain_key or None

    def summary(self) -> str:
        if self.broken is None:
            return f"chain {self.label}: OK, {self.events} events, head seq {self.head_seq}"
        where = f"event id {self.broken.event_id}" if self.broken.event_id is not None else "no event"
        return f"chain {self.label}: BROKEN at seq {self.broken.seq} ({where}): {self.broken.reason}"


def audit_anchors_parse(lines: Iterable[str]) -> dict[int, list[Anchor]]:
    """Anchors from a JSON log stream, by chain key.

    Lines that are not JSON, or not an ``audit chain head`` record, are
    skipped: the anchors are usually mixed with every other log line.
    """
    anchors: dict[int, list[Anchor]] = defaultdict(list)
    for line in lines:
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or record.get("message") != ANCHOR_MESSAGE:
            continue
        try:
            anchor = Anchor(chain=int(record["chain"]), seq=int(record["seq"]), hash=str(record["hash"]))
        except (KeyError, TypeError, ValueError):
            continue
        anchors[anchor.chain].append(anchor)
    return dict(anchors)


def audit_chain_keys() -> list[int]:
    """Every chain that has a head or at least one event (0 is the global chain)."""
    keys = set(AuditChainHead.objects.values_list("chain_key", flat=True))
    keys.update(
        tenant_id or GLOBAL_CHAIN_KEY
        for tenant_id in AuditEvent.objects.order_by().values_list("tenant_id", flat=True).distinct()
    )
    return sorted(keys)


def _chain_label(chain_key: int) -> str:
    if chain_key == GLOBAL_CHAIN_KEY:
        return GLOBAL_CHAIN_LABEL
    slug = Tenant.objects.filter(pk=chain_key).values_list("slug", flat=True).first()
    # The trail outlives its tenant: a deleted tenant's chain is still checked.
    return slug or f"tenant#{chain_key}"


def _personal_fields_blank(event: AuditEvent) -> bool:
    # actor_id too: were it allowed to stay, an "erased" row could be
    # re-attributed to someone else without breaking the chain.
    return event.actor_id is None and not (event.actor_label or event.ip or event.user_agent or event.details)


def _link_problem(event: AuditEvent, *, expected_seq: int, prev_hash: str) -> str | None:
    """Whether the row follows the previous one: no seq skipped, prev_hash naming it."""
    if event.seq != expected_seq:
        missing = event.seq - expected_seq
        if missing > 0:
            return f"seq {expected_seq} is missing ({missing} event(s) removed before this one)"
        return f"unexpected seq (expected {expected_seq})"
    if event.prev_hash != prev_hash:
        return "prev_hash does not match the previous event's hash (an event was removed or replaced)"
    return None


def _content_problem(event: AuditEvent) -> str | None:
    """Whether the row's columns still hash to what it stores."""
    if chain.event_personal_digest(event) != event.personal_digest:
        if event.personal_erased_at is None:
            return "personal fields (actor, ip, user agent, details) do not match personal_digest"
        if not _personal_fields_blank(event):
            return "erased event still holds personal fields that do not match personal_digest"
    if chain.event_link_hash(event) != event.hash:
        return "hash does not match the event's content (a chained field was altered)"
    return None


def _anchor_problem(event: AuditEvent, anchored: set[str] | None) -> str | None:
    if not anchored:
        return None
    if event.hash not in anchored:
        return "hash differs from the anchored hash for this seq (the chain was rebuilt)"
    if len(anchored) > 1:
        # One chain never has two heads at the same seq: the log saw it forked.
        return "the anchors hold two different hashes for this seq (the chain was rebuilt)"
    return None


def _tail_problem(
    *, chain_key: int, events: int, last_seq: int, last_hash: str, anchored_seqs: Iterable[int]
) -> ChainBreak | None:
    """Whether rows are missing after the last one: the head row and the anchors know the real tail."""
    head = AuditChainHead.objects.filter(chain_key=chain_key).first()
    if head is None and events:
        return ChainBreak(last_seq, None, "the chain has events but no head row")
    if head is not None and head.seq > last_seq:
        reason = f"the chain head records seq {head.seq} but the last event is seq {last_seq} (tail truncated)"
        return ChainBreak(last_seq + 1, None, reason)
    if head is not None and head.seq < last_seq:
        reason = f"the chain head records seq {head.seq}, behind the last event (written around the head lock)"
        return ChainBreak(head.seq + 1, None, reason)
    if head is not None and head.hash != last_hash:
        return ChainBreak(last_seq, None, "the chain head's hash differs from the last event's")
    beyond = [seq for seq in anchored_seqs if seq > last_seq]
    if beyond:
        seq = min(beyond)
        return ChainBreak(
            seq, None, f"anchored seq {seq} is missing: the last event is seq {last_seq} (tail truncated)"
        )
    return None


def audit_chain_verify(*, chain_key: int, anchors: Iterable[Anchor] = ()) -> ChainVerification:
    """Walk one chain (``chain_key`` = tenant id, 0 for global) and check every link, the head and the anchors."""
    anchored: dict[int, set[str]] = defaultdict(set)
    for anchor in anchors:
        # seq 0 is the genesis, before any event: nothing to compare.
        if anchor.seq > 0:
            anchored[anchor.seq].add(anchor.hash)

    rows = AuditEvent.objects.for_tenant(chain_key or None).order_by("seq").iterator(chunk_size=_STREAM_CHUNK_SIZE)
    count, last_seq, last_hash = 0, 0, GENESIS_HASH
    broken = None
    for event in rows:
        reason = (
            _link_problem(event, expected_seq=last_seq + 1, prev_hash=last_hash)
            or _content_problem(event)
            or _anchor_problem(event, anchored.get(event.seq))
        )
        if reason is not None:
            broken = ChainBreak(seq=event.seq, event_id=event.pk, reason=reason)
            break
        count, last_seq, last_hash = count + 1, event.seq, event.hash
    else:
        broken = _tail_problem(
            chain_key=chain_key, events=count, last_seq=last_seq, last_hash=last_hash, anchored_seqs=anchored
        )
    return ChainVerification(
        chain_key=chain_key, label=_chain_label(chain_key), events=count, head_seq=last_seq, broken=broken
    )


def audit_chains_verify(
    *, chain_keys: Iterable[int] | None = None, anchors: Mapping[int, list[Anchor]] | None = None
) -> list[ChainVerification]:
    """Verify the given chains (default: every chain known to the table or the anchors), in key order."""
    anchors = anchors or {}
    if chain_keys is None:
        chain_keys = sorted(set(audit_chain_keys()) | set(anchors))
    return [audit_chain_verify(chain_key=key, anchors=anchors.get(key, ())) for key in chain_keys]

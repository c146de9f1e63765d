"""Writing the audit trail: ``audit_record`` and its batch form ``audit_record_many``
are the only functions that insert rows.

It runs inside the caller's transaction when there is one (the event commits or
rolls back with the action it describes) and otherwise in its own. Appends to
one chain are serialised by a row lock on its ``AuditChainHead``; after commit
the new head is written to the ``audit.chain`` log stream, the anchor outside
the table that ``verify_audit_chain --anchors`` checks truncation against.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.ipv6 import clean_ipv6_address

from . import chain
from .constants import GENESIS_HASH, ActorType, AuditAction
from .models import AuditChainHead, AuditEvent

anchor_logger = logging.getLogger("audit.chain")

_MAX_USER_AGENT = 500


@dataclass(frozen=True)
class Actor:
    """Who did it. Build with the class methods rather than by hand."""

    type: str
    id: int | None = None
    label: str = ""

    @classmethod
    def user(cls, user) -> Actor:
        return cls(ActorType.USER, user.pk, user.get_username())

    @classmethod
    def api_client(cls, client) -> Actor:
        return cls(ActorType.API_CLIENT, client.pk, client.name)

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(ActorType.SYSTEM, None, label)

    @classmethod
    def anonymous(cls, label: str = "") -> Actor:
        return cls(ActorType.ANONYMOUS, None, label[:200])

    @classmethod
    def from_principal(cls, principal) -> Actor:
        if principal.user_id is not None:
            return cls(ActorType.USER, principal.user_id, principal.username or "")
        return cls(ActorType.API_CLIENT, principal.api_client_id, "")


@dataclass(frozen=True)
class RequestContext:
    """Where a request came from, as far as the audit trail cares."""

    ip: str | None = None
    user_agent: str = ""

    @classmethod
    def from_request(cls, request) -> RequestContext:
        from accounts.services.network import client_ip

        return cls(ip=client_ip(request), user_agent=request.META.get("HTTP_USER_AGENT", ""))

    @classmethod
    def from_scope(cls, scope) -> RequestContext:
        from accounts.services.network import scope_client_ip

        headers = dict(scope.get("headers") or [])
        return cls(ip=scope_client_ip(scope), user_agent=headers.get(b"user-agent", b"").decode("latin-1"))


NO_CONTEXT = RequestContext()


def _normalise_ip(ip: str | None) -> str | None:
    if not ip:
        return None
    return clean_ipv6_address(ip) if ":" in ip else ip


@dataclass(frozen=True)
class AuditEntry:
    """One event to append, as ``audit_record_many`` takes them."""

    action: str
    actor: Actor
    tenant_id: int | None
    target_type: str = ""
    target_id: str | int = ""
    context: RequestContext = NO_CONTEXT
    details: dict[str, Any] | None = None


def audit_record(
    *,
    action: str,
    actor: Actor,
    tenant_id: int | None,
    target_type: str = "",
    target_id: str | int = "",
    context: RequestContext = NO_CONTEXT,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the tenant's chain (or the global chain when tenant_id is None).

    Refuses actions missing from ``AuditAction``. Not idempotent: each call is
    one event. Takes a row lock on the chain head until the caller's
    transaction ends, so keep that transaction short.
    """
    entry = AuditEntry(action, actor, tenant_id, target_type, target_id, context, details)
    return audit_record_many([entry])[0]


def audit_record_many(entries: Sequence[AuditEntry]) -> list[AuditEvent]:
    """Append several events, in order, locking each chain they touch once.

    For callers that produce many events a second (the hub's connect and
    disconnect records): one transaction and one insert per chain instead of a
    lock, an insert and a head update per event. Chains are locked in
    ``chain_key`` order, so two batches never wait on each other in a cycle.
    Refuses the whole batch if one action is unknown. Returns the events in the
    order given.
    """
    for entry in entries:
        if entry.action not in AuditAction.values:
            raise ValueError(f"Unknown audit action {entry.action!r}; add it to audit.constants.AuditAction.")
    by_chain: dict[int, list[int]] = {}
    for index, entry in enumerate(entries):
        by_chain.setdefault(entry.tenant_id or 0, []).append(index)
    events: list[AuditEvent | None] = [None] * len(entries)

    with transaction.atomic():
        for chain_key in sorted(by_chain):
            AuditChainHead.objects.get_or_create(chain_key=chain_key, defaults={"seq": 0, "hash": GENESIS_HASH})
            head = AuditChainHead.objects.select_for_update().get(chain_key=chain_key)
            created_at = timezone.now()
            chain_events = []
            for index in by_chain[chain_key]:
                event = _chain_event(entries[index], seq=head.seq + 1, prev_hash=head.hash, created_at=created_at)
                head.seq, head.hash = event.seq, event.hash
                chain_events.append(event)
                events[index] = event
            AuditEvent.objects.bulk_create(chain_events)
            head.save(update_fields=["seq", "hash", "updated_at"])
            seq, link = head.seq, head.hash
            transaction.on_commit(
                lambda key=chain_key, seq=seq, link=link: anchor_logger.info(
                    "audit chain head", extra={"chain": key, "seq": seq, "hash": link}
                )
            )
    return events


def _chain_event(entry: AuditEntry, *, seq: int, prev_hash: str, created_at) -> AuditEvent:
    """The event for ``entry`` as link ``seq`` after ``prev_hash``, hashed, not yet saved."""
    # Round-trip through JSON so the digest is computed over exactly what the
    # database will return (tuples become lists, keys become strings).
    details = json.loads(chain.canonical(entry.details or {}))
    ip = _normalise_ip(entry.context.ip)
    user_agent = (entry.context.user_agent or "")[:_MAX_USER_AGENT]
    actor = entry.actor
    event = AuditEvent(
        tenant_id=entry.tenant_id,
        seq=seq,
        created_at=created_at,
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label,
        action=entry.action,
        target_type=entry.target_type,
        target_id=str(entry.target_id),
        ip=ip,
        user_agent=user_agent,
        details=details,
        personal_digest=chain.personal_digest(
            actor_id=actor.id, actor_label=actor.label, ip=ip, user_agent=user_agent, details=details
        ),
        prev_hash=prev_hash,
    )
    event.hash = chain.event_link_hash(event)
    return event


def audit_anchor_heads() -> int:
    """Log every chain head (run by beat), so an idle chain is anchored too. Returns how many."""
    count = 0
    for head in AuditChainHead.objects.order_by("chain_key"):
        anchor_logger.info("audit chain head", extra={"chain": head.chain_key, "seq": head.seq, "hash": head.hash})
        count += 1
    return count

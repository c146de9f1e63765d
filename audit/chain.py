"""The keyed hashes of the audit chain. Pure functions, no database.

    personal_digest = HMAC(key, canonical(personal fields))
    hash            = HMAC(key, prev_hash || canonical(chained fields))

The chained fields include ``personal_digest`` rather than the personal fields,
so erasing them later keeps every link valid (see ``audit.models.AuditEvent``).
Canonical JSON: sorted keys, no whitespace, UTC timestamps in ISO 8601 with
microseconds, so the same row always hashes the same on any database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from django.conf import settings


def _key() -> bytes:
    # Derive a dedicated key so AUDIT_HMAC_KEY may equal SECRET_KEY in development
    # without the chain hash being usable anywhere else.
    return hashlib.sha256(b"spotify-agent.audit-chain:" + settings.AUDIT_HMAC_KEY.encode()).digest()


def canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def personal_digest(*, actor_id: int | None, actor_label: str, ip: str | None, user_agent: str, details: dict) -> str:
    payload = {"actor_id": actor_id, "actor_label": actor_label, "ip": ip, "user_agent": user_agent, "details": details}
    return hmac.new(_key(), b"personal:" + canonical(payload), hashlib.sha256).hexdigest()


def link_hash(
    *,
    prev_hash: str,
    tenant_id: int | None,
    seq: int,
    created_at: datetime,
    actor_type: str,
    action: str,
    target_type: str,
    target_id: str,
    personal_digest: str,
) -> str:
    payload = {
        "tenant_id": tenant_id,
        "seq": seq,
        "created_at": timestamp(created_at),
        "actor_type": actor_type,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "personal_digest": personal_digest,
    }
    return hmac.new(_key(), prev_hash.encode() + b"|" + canonical(payload), hashlib.sha256).hexdigest()


def event_link_hash(event) -> str:
    """The hash an ``AuditEvent`` row should carry, recomputed from its columns."""
    return link_hash(
        prev_hash=event.prev_hash,
        tenant_id=event.tenant_id,
        seq=event.seq,
        created_at=event.created_at,
        actor_type=event.actor_type,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        personal_digest=event.personal_digest,
    )


def event_personal_digest(event) -> str:
    return personal_digest(
        actor_id=event.actor_id,
        actor_label=event.actor_label,
        ip=event.ip,
        user_agent=event.user_agent,
        details=event.details,
    )

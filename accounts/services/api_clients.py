"""API clients: partner keys, shown once, stored hashed, revocable.

Key format: ``sa_<prefix>_<secret>``. The prefix (public) finds the row, the
SHA-256 of the whole key is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record

from ..constants import API_CLIENT_LAST_USED_RESOLUTION, API_KEY_PREFIX, ApiScope
from ..models import ApiClient, Tenant
from ..principals import Principal
from .tokens import AuthenticationError


@dataclass(frozen=True)
class IssuedApiClient:
    client: ApiClient
    key: str  # shown to the creator once, never stored


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _validate_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(ApiScope.values))
    if unknown:
        raise ValueError(f"Unknown scopes: {', '.join(unknown)}")
    return sorted(set(scopes))


@transaction.atomic
def api_client_create(
    *, tenant: Tenant, name: str, scopes: list[str], actor: Actor, context: RequestContext = NO_CONTEXT
) -> IssuedApiClient:
    """Create a client and its key. The key is returned once. Audited."""
    prefix = secrets.token_hex(6)
    key = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    client = ApiClient.objects.create(
        tenant=tenant,
        name=name,
        scopes=_validate_scopes(scopes),
        key_prefix=prefix,
        key_hash=_hash_key(key),
        created_by_id=actor.id if actor.type == "user" else None,
    )
    audit_record(
        action=AuditAction.API_CLIENT_CREATED,
        actor=actor,
        tenant_id=tenant.pk,
        target_type="api_client",
        target_id=client.pk,
        context=context,
        details={"name": name, "scopes": client.scopes},
    )
    return IssuedApiClient(client=client, key=key)


@transaction.atomic
def api_client_revoke(*, client: ApiClient, actor: Actor, context: RequestContext = NO_CONTEXT) -> ApiClient:
    """Revoke a client's key for good. Idempotent: revoking twice records nothing new."""
    client = ApiClient.objects.select_for_update().get(pk=client.pk)
    if client.revoked_at is not None:
        return client
    client.revoked_at = timezone.now()
    client.save(update_fields=["revoked_at"])
    audit_record(
        action=AuditAction.API_CLIENT_REVOKED,
        actor=actor,
        tenant_id=client.tenant_id,
        target_type="api_client",
        target_id=client.pk,
        context=context,
        details={"name": client.name},
    )
    return client


def api_client_authenticate(*, raw_key: str) -> tuple[ApiClient, Principal]:
    """Resolve a presented key to its active client. Raises ``AuthenticationError``."""
    parts = raw_key.split("_", 2) if raw_key else []
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX:
        raise AuthenticationError("api_key_invalid", "The API key is invalid.")
    client = ApiClient.objects.select_related("tenant").filter(key_prefix=parts[1]).first()
    if client is None or not hmac.compare_digest(client.key_hash, _hash_key(raw_key)):
        raise AuthenticationError("api_key_invalid", "The API key is invalid.")
    if client.revoked_at is not None:
        raise AuthenticationError("api_key_revoked", "The API key has been revoked.")
    if not client.tenant.is_active:
        raise AuthenticationError("tenant_inactive", "This tenant is suspended.")
    now = timezone.now()
    if client.last_used_at is None or now - client.last_used_at > timedelta(seconds=API_CLIENT_LAST_USED_RESOLUTION):
        ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
        client.last_used_at = now
    principal = Principal(
        tenant_id=client.tenant_id,
        tenant_slug=client.tenant.slug,
        api_client_id=client.pk,
        scopes=frozenset(client.scopes),
    )
    return client, principal

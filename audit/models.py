"""Audit tables: the append-only event log and the head of each hash chain.

``AuditEvent`` rows are written only by ``audit.services.audit_record`` and are
never updated or deleted through the ORM (the queryset and the model refuse).
Each tenant has its own chain (tenant NULL is the installation-wide chain);
``AuditChainHead`` holds the last sequence number and hash of each chain, is the
row lock that serialises appends, and is the in-database anchor that reveals a
truncated tail. docs/audit.md describes the design.
"""

from __future__ import annotations

from django.db import models

from accounts.models import Tenant

from .constants import ActorType


class AppendOnlyError(Exception):
    """Raised on any attempt to change or remove an audit event through the ORM."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Audit events are append-only.")

    def delete(self):
        raise AppendOnlyError("Audit events are append-only.")

    def for_tenant(self, tenant: Tenant | int | None) -> AuditEventQuerySet:
        tenant_id = tenant if (tenant is None or isinstance(tenant, int)) else tenant.pk
        return self.filter(tenant_id=tenant_id)


class AuditEvent(models.Model):
    """One recorded action. Append-only and chained by a keyed hash.

    ``personal_digest`` is an HMAC over the personal fields (actor id and label,
    IP, user agent, details); the chain hash covers that digest instead of the
    fields themselves, so a later erasure can blank them (setting
    ``personal_erased_at``) while the chain still verifies, and any other change
    to them is still detected.
    """

    # No FK to Tenant's deletion cascade: the trail outlives what it describes.
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    seq = models.BigIntegerField()
    created_at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=20, choices=ActorType.choices)
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    details = models.JSONField(default=dict, blank=True)
    personal_digest = models.CharField(max_length=64)
    personal_erased_at = models.DateTimeField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "seq"], name="audit_event_chain_seq")]
        indexes = [
            models.Index(fields=["tenant", "action", "created_at"]),
            models.Index(fields=["actor_type", "actor_id"]),
            models.Index(fields=["target_type", "target_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.action} #{self.seq}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit events are append-only.")


class AuditChainHead(models.Model):
    """The last link of one chain (one row per tenant, ``chain_key`` 0 for no tenant).

    Locked with SELECT … FOR UPDATE by every append, so sequence numbers are
    gap-free and the hash chain is linear even with many writers.
    """

    chain_key = models.BigIntegerField(primary_key=True)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"chain {self.chain_key} @ {self.seq}"

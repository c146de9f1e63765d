"""Admin screens of the audit trail: read-only for everyone, superusers included.

No add, change or delete permission exists here (the model refuses updates and
deletes as well); the change view of an event is a read-only detail page.
Chain heads can be verified from their changelist with the same checks as
``manage.py verify_audit_chain`` (``audit.selectors``).
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.utils.html import format_html

from accounts.models import Tenant
from spotify_agent.admin import AuditedModelAdmin

from .models import AuditChainHead, AuditEvent
from .selectors import GLOBAL_CHAIN_LABEL, audit_chains_verify


class ReadOnlyAdmin(AuditedModelAdmin):
    """Nothing here can be added, changed or deleted through the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "tenant", "actor", "action", "target", "ip")
    list_filter = ("action", "actor_type", "tenant", "created_at")
    list_select_related = ("tenant",)
    # Target ids are looked up exactly: a substring search over the whole
    # trail would scan every row for no better answer.
    search_fields = ("action", "=target_id", "actor_label")
    fieldsets = (
        (None, {"fields": ("created_at", "tenant", "seq", "action", "target_type", "target_id")}),
        ("Actor", {"fields": ("actor_type", "actor_id", "actor_label", "ip", "user_agent")}),
        ("Details", {"fields": ("details_json",)}),
        ("Chain", {"fields": ("personal_digest", "personal_erased_at", "prev_hash", "hash")}),
    )
    readonly_fields = ("details_json",)

    @admin.display(description="Actor", ordering="actor_label")
    def actor(self, obj: AuditEvent) -> str:
        name = obj.actor_label or (f"#{obj.actor_id}" if obj.actor_id is not None else "")
        return f"{obj.get_actor_type_display()} {name}".strip()

    @admin.display(description="Target")
    def target(self, obj: AuditEvent) -> str:
        if not obj.target_type:
            return "-"
        return f"{obj.target_type} {obj.target_id}".strip()

    @admin.display(description="Details")
    def details_json(self, obj: AuditEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.details, indent=2, sort_keys=True, ensure_ascii=False))


@admin.register(AuditChainHead)
class AuditChainHeadAdmin(ReadOnlyAdmin):
    list_display = ("chain_key", "chain", "seq", "hash", "updated_at")
    actions = ("verify_chains",)

    def get_queryset(self, request):
        # chain_key is a tenant id without a foreign key (the trail outlives
        # its tenant), so the slug is joined in by a subquery.
        slug = Tenant.objects.filter(pk=OuterRef("chain_key")).values("slug")[:1]
        return super().get_queryset(request).annotate(tenant_slug=Subquery(slug))

    @admin.display(description="Tenant", ordering="tenant_slug")
    def chain(self, obj: AuditChainHead) -> str:
        if obj.chain_key == 0:
            return GLOBAL_CHAIN_LABEL
        return obj.tenant_slug or f"tenant#{obj.chain_key} (deleted)"

    @admin.action(description="Verify selected chains")
    def verify_chains(self, request, queryset):
        keys = list(queryset.order_by("chain_key").values_list("chain_key", flat=True))
        for result in audit_chains_verify(chain_keys=keys):
            self.message_user(request, result.summary(), messages.SUCCESS if result.ok else messages.ERROR)

"""Shared admin base classes: every admin screen of the project builds on these.

``AuditedModelAdmin`` writes each add, change and delete made through the
admin to the audit trail (``admin.object.added`` / ``changed`` / ``deleted``)
next to Django's own ``LogEntry``, so a staff member's edits are covered by the
same tamper-evident chain as everything else (docs/audit.md). Bulk actions run
in one transaction, so an action's writes and their audit events commit or roll
back together.

``TenantScopedForm`` and ``TenantScopedInlineFormSet`` keep tenant-owned rows
consistent when staff edit them: every related row picked in a form must belong
to the same tenant as the row being edited. The admin is the one place where
staff see every tenant, so it is the one place where a cross-tenant link could
be made by hand.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import models, router, transaction

from audit.constants import AuditAction
from audit.services import Actor, RequestContext, audit_record


class AuditedModelAdmin(admin.ModelAdmin):
    """A ModelAdmin whose add, change and delete log entries are also audit events.

    Django calls ``log_addition`` / ``log_change`` inside the change form's
    transaction and ``log_deletions`` just before deleting, so the audit event
    commits with the write it describes. Subclasses whose objects belong to a
    tenant in some other way than a ``tenant_id`` column override
    ``audit_tenant_id``.
    """

    # Counting a large table on every changelist page is expensive; "show all"
    # is rarely what staff need.
    show_full_result_count = False

    def audit_tenant_id(self, obj: models.Model) -> int | None:
        """The tenant whose chain records changes to ``obj`` (None: the installation-wide chain)."""
        return getattr(obj, "tenant_id", None)

    def log_addition(self, request, obj, message):
        entry = super().log_addition(request, obj, message)
        self._audit(request, obj, AuditAction.ADMIN_ADDED, message)
        return entry

    def log_change(self, request, obj, message):
        entry = super().log_change(request, obj, message)
        self._audit(request, obj, AuditAction.ADMIN_CHANGED, message)
        return entry

    def log_deletions(self, request, queryset):
        # Materialise once: the rows are gone right after this call returns.
        objects = list(queryset)
        entries = super().log_deletions(request, objects)
        for obj in objects:
            self._audit(request, obj, AuditAction.ADMIN_DELETED, [])
        return entries

    def response_action(self, request, queryset):
        with transaction.atomic(using=router.db_for_write(self.model)):
            return super().response_action(request, queryset)

    def audit_actor(self, request) -> Actor:
        return Actor.user(request.user)

    def audit_context(self, request) -> RequestContext:
        return RequestContext.from_request(request)

    def _audit(self, request, obj: models.Model, action: str, message: Any) -> None:
        audit_record(
            action=action,
            actor=self.audit_actor(request),
            tenant_id=self.audit_tenant_id(obj),
            target_type=obj._meta.label_lower,
            target_id=obj.pk,
            context=self.audit_context(request),
            # The same JSON structure Django stores in LogEntry.change_message:
            # which fields changed, which inline rows were added or removed.
            details={"object": str(obj)[:200], "change_message": message or []},
        )


def tenant_of(obj: models.Model) -> int | None:
    """The tenant a related row belongs to: a user's membership tenant, or a row's ``tenant_id``."""
    if isinstance(obj, get_user_model()):
        membership = obj.tenant_membership
        return membership.tenant_id if membership is not None else None
    return getattr(obj, "tenant_id", None)


class TenantScopedForm(forms.ModelForm):
    """Admin form of a tenant-owned row: every user or tenant-owned row it links must share its tenant.

    The row's tenant comes from the form's ``tenant`` field when it has one,
    else from the related row named by ``tenant_from`` (a room member takes its
    room's tenant), else from the instance (set by the inline formset or fixed
    on change).
    """

    tenant_from: str | None = None

    def row_tenant_id(self, cleaned_data: dict[str, Any]) -> int | None:
        if "tenant" in self.fields:
            tenant = cleaned_data.get("tenant")
            return tenant.pk if tenant is not None else None
        if self.tenant_from and self.tenant_from in self.fields:
            source = cleaned_data.get(self.tenant_from)
            return source.tenant_id if source is not None else None
        return self.instance.tenant_id

    def clean(self):
        cleaned_data = super().clean()
        tenant_id = self.row_tenant_id(cleaned_data)
        if tenant_id is None:
            return cleaned_data
        for name, field in self.fields.items():
            if name in ("tenant", self.tenant_from) or not isinstance(field, forms.ModelChoiceField):
                continue
            value = cleaned_data.get(name)
            if isinstance(value, models.Model) and tenant_of(value) != tenant_id:
                self.add_error(name, "This belongs to another tenant.")
        return cleaned_data

    def _post_clean(self):
        # The tenant is derived before model validation so that constraints
        # involving it (unique per tenant) are checked.
        if "tenant" not in self.fields and self.tenant_from and self.tenant_from in self.fields:
            source = self.cleaned_data.get(self.tenant_from)
            if source is not None:
                self.instance.tenant_id = source.tenant_id
        super()._post_clean()


class TenantScopedInlineFormSet(forms.BaseInlineFormSet):
    """Inline rows take the parent's tenant, so the inline form need not show it."""

    def _construct_form(self, i, **kwargs):
        form = super()._construct_form(i, **kwargs)
        form.instance.tenant_id = self.instance.tenant_id
        return form

    @property
    def empty_form(self):
        form = super().empty_form
        form.instance.tenant_id = self.instance.tenant_id
        return form

"""Admin screens of the identity layer: tenants, users, memberships, API clients.

Writes that have a service go through it: activating or deactivating a user
calls ``user_set_active`` (so sessions, tokens and sockets are cut the same way
as from the API), creating and revoking an API client call
``api_client_create`` / ``api_client_revoke``. Every other edit is a plain
model save, recorded in the audit trail by ``AuditedModelAdmin``. Django's
``Group`` is re-registered on the same base so permission changes are audited
too. The simplejwt token tables keep simplejwt's own admin.

Staff announce maintenance from the tenant screens: the "Broadcast a
maintenance notice" action reaches the selected tenants' sockets, and the
"Broadcast to everyone" link of the changelist reaches every socket. Both ask
for the notice on an intermediate form and call
``monitoring.services.maintenance_broadcast``.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.cache import add_never_cache_headers

from monitoring.services import MAINTENANCE_MESSAGE_MAX_LENGTH, maintenance_broadcast
from spotify_agent.admin import AuditedModelAdmin, TenantScopedForm

from .constants import ApiScope
from .models import ApiClient, Membership, Tenant, User
from .services.api_clients import api_client_create, api_client_revoke
from .services.users import user_set_active

# The request attribute that carries a freshly issued API key from save_model
# to response_add; it lives only as long as that one request.
_ISSUED_KEY_ATTR = "_api_client_issued_key"


class MaintenanceNoticeForm(forms.Form):
    """The notice staff broadcast; times are read in the installation's time zone."""

    message = forms.CharField(
        max_length=MAINTENANCE_MESSAGE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Shown to users as is, e.g. “Chat is read-only from 22:00 to 22:30 UTC.”",
    )
    starts_at = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}), help_text="Optional."
    )
    ends_at = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}), help_text="Optional."
    )


@admin.register(Tenant)
class TenantAdmin(AuditedModelAdmin):
    list_display = ("slug", "name", "tier", "status", "member_count", "created_at")
    list_filter = ("status", "tier", "created_at")
    search_fields = ("slug", "name")
    ordering = ("slug",)
    readonly_fields = ("created_at",)
    actions = ("broadcast_maintenance",)
    change_list_template = "admin/accounts/tenant/change_list.html"

    def audit_tenant_id(self, obj: Tenant) -> int | None:
        # A change to a tenant belongs to that tenant's own trail.
        return obj.pk

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    def get_prepopulated_fields(self, request, obj=None):
        return {} if obj is not None else {"slug": ("name",)}

    def get_readonly_fields(self, request, obj=None):
        # The slug names the tenant in tokens, logs and verify_audit_chain.
        return (*self.readonly_fields, "slug") if obj is not None else self.readonly_fields

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, obj: Tenant) -> int:
        return obj.member_count

    # --- Maintenance notices ------------------------------------------------------

    def has_broadcast_permission(self, request) -> bool:
        return request.user.has_perm("accounts.change_tenant")

    def get_urls(self):
        everyone = path(
            "maintenance/",
            self.admin_site.admin_view(self.broadcast_everyone_view),
            name="accounts_tenant_maintenance",
        )
        return [everyone, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_broadcast": self.has_broadcast_permission(request)}
        return super().changelist_view(request, extra_context)

    @admin.action(description="Broadcast a maintenance notice", permissions=["broadcast"])
    def broadcast_maintenance(self, request, queryset):
        """Ask for the notice, then send it to each selected tenant (one event and one
        audit record per tenant). Returning None goes back to the changelist."""
        tenants = list(queryset.order_by("slug"))
        form = MaintenanceNoticeForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and self._broadcast(request, form, tenant_ids=[tenant.pk for tenant in tenants]):
            slugs = ", ".join(tenant.slug for tenant in tenants)
            self.message_user(request, f"Maintenance notice sent to {slugs}.", messages.SUCCESS)
            return None
        return self._maintenance_page(request, form, tenants=tenants)

    def broadcast_everyone_view(self, request):
        if not self.has_broadcast_permission(request):
            raise PermissionDenied
        form = MaintenanceNoticeForm(request.POST if request.method == "POST" else None)
        if form.is_bound and self._broadcast(request, form, tenant_ids=[None]):
            self.message_user(request, "Maintenance notice sent to everyone.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:accounts_tenant_changelist"))
        return self._maintenance_page(request, form, tenants=None)

    def _broadcast(self, request, form: MaintenanceNoticeForm, *, tenant_ids: list[int | None]) -> bool:
        """Send the notice to each audience; False (with the errors on the form) when it is invalid."""
        if not form.is_valid():
            return False
        actor, context = self.audit_actor(request), self.audit_context(request)
        try:
            for tenant_id in tenant_ids:
                maintenance_broadcast(tenant_id=tenant_id, actor=actor, context=context, **form.cleaned_data)
        except ValidationError as exc:
            # The service's rules (a window that ends before it starts) are checked
            # before anything is written, so the first audience fails alone.
            form.add_error(None, exc)
            return False
        return True

    def _maintenance_page(self, request, form: MaintenanceNoticeForm, *, tenants: list[Tenant] | None):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Broadcast a maintenance notice",
            "form": form,
            "tenants": tenants,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": reverse("admin:accounts_tenant_changelist"),
        }
        return TemplateResponse(request, "admin/accounts/tenant/maintenance_broadcast.html", context)


class MembershipInline(admin.StackedInline):
    model = Membership
    fields = ("tenant", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("tenant",)
    can_delete = False
    extra = 0
    max_num = 1


@admin.register(User)
class UserAdmin(AuditedModelAdmin, DjangoUserAdmin):
    """Django's user admin with the tenant and role (through the membership inline).

    ``is_active`` is never saved directly: a change goes through
    ``user_set_active``, which also revokes the user's credentials and records
    ``user.deactivated`` / ``user.reactivated``.
    """

    inlines = (MembershipInline,)
    list_display = ("username", "email", "display_name", "tenant", "role", "is_active", "is_staff", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser", "membership__role", "membership__tenant")
    list_select_related = ("membership__tenant",)
    search_fields = ("username", "email", "display_name", "first_name", "last_name", "membership__tenant__slug")
    readonly_fields = ("last_login", "date_joined", "token_generation", "sessions_revoked_at")
    actions = ("deactivate_users", "reactivate_users")
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Profile", {"fields": ("display_name", "timezone", "locale", "token_generation", "sessions_revoked_at")}),
    )

    def audit_tenant_id(self, obj: User) -> int | None:
        # Read from the table rather than the cached relation: the membership
        # inline is saved after the user and may not be on the instance.
        return Membership.objects.filter(user_id=obj.pk).values_list("tenant_id", flat=True).first()

    @admin.display(description="Tenant", ordering="membership__tenant__slug")
    def tenant(self, obj: User) -> str:
        membership = obj.tenant_membership
        return membership.tenant.slug if membership is not None else "-"

    @admin.display(description="Role", ordering="membership__role")
    def role(self, obj: User) -> str:
        membership = obj.tenant_membership
        return membership.get_role_display() if membership is not None else "-"

    def save_model(self, request, obj, form, change):
        if not (change and "is_active" in form.changed_data):
            super().save_model(request, obj, form, change)
            return
        active = obj.is_active
        # Save the other fields with the stored activity, then let the service
        # own the activity change and what follows from it.
        obj.is_active = not active
        super().save_model(request, obj, form, change)
        user_set_active(user=obj, active=active, actor=self.audit_actor(request), context=self.audit_context(request))
        obj.is_active = active

    @admin.action(description="Deactivate selected users", permissions=["change"])
    def deactivate_users(self, request, queryset):
        self._set_active(request, queryset, active=False)

    @admin.action(description="Reactivate selected users", permissions=["change"])
    def reactivate_users(self, request, queryset):
        self._set_active(request, queryset, active=True)

    def _set_active(self, request, queryset, *, active: bool) -> None:
        actor, context = self.audit_actor(request), self.audit_context(request)
        count = 0
        for user in queryset.filter(is_active=not active).order_by("pk"):
            if not active and user.pk == request.user.pk:
                # "Select all, deactivate" must not lock the operator out.
                self.message_user(request, "You cannot deactivate your own account.", messages.WARNING)
                continue
            user_set_active(user=user, active=active, actor=actor, context=context)
            count += 1
        verb = "reactivated" if active else "deactivated"
        self.message_user(request, f"{count} user(s) {verb}.", messages.SUCCESS)


@admin.register(Membership)
class MembershipAdmin(AuditedModelAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role", "tenant")
    list_select_related = ("user", "tenant")
    search_fields = ("user__username", "user__email", "tenant__slug")
    autocomplete_fields = ("user", "tenant")
    readonly_fields = ("created_at",)

    def get_readonly_fields(self, request, obj=None):
        # A membership is one user's place in one tenant: moving a user to
        # another tenant is a new membership, not an edit.
        return (*self.readonly_fields, "user", "tenant") if obj is not None else self.readonly_fields


class ApiClientStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return (("active", "Active"), ("revoked", "Revoked"))

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class ApiClientForm(TenantScopedForm):
    scopes = forms.MultipleChoiceField(choices=ApiScope.choices, widget=forms.CheckboxSelectMultiple, required=False)

    class Meta:
        model = ApiClient
        fields = ("tenant", "name", "scopes")

    def clean_scopes(self) -> list[str]:
        return sorted(set(self.cleaned_data["scopes"]))


@admin.register(ApiClient)
class ApiClientAdmin(AuditedModelAdmin):
    """Partner keys. Created through ``api_client_create``: the key is shown once, on a
    page that is never cached, and only its hash is stored. Revoked, never deleted, so
    the audit trail's references to a client keep pointing at a row."""

    form = ApiClientForm
    list_display = ("name", "tenant", "key_prefix", "scope_list", "is_active", "created_by", "last_used_at")
    list_filter = (ApiClientStatusFilter, "tenant", "created_at")
    list_select_related = ("tenant", "created_by")
    search_fields = ("name", "key_prefix", "tenant__slug")
    autocomplete_fields = ("tenant",)
    readonly_fields = ("key_prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("tenant", "name", "scopes")
        return ("tenant", "name", "scopes", *self.readonly_fields)

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "tenant") if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Scopes")
    def scope_list(self, obj: ApiClient) -> str:
        return ", ".join(obj.scopes) or "-"

    @admin.display(description="Active", boolean=True)
    def is_active(self, obj: ApiClient) -> bool:
        return obj.is_active

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = api_client_create(
            tenant=form.cleaned_data["tenant"],
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            actor=self.audit_actor(request),
            context=self.audit_context(request),
        )
        # Adopt the row the service created, so the log entry and the
        # response name it.
        for field in ApiClient._meta.concrete_fields:
            setattr(obj, field.attname, getattr(issued.client, field.attname))
        obj._state.adding = False
        obj._state.db = issued.client._state.db
        setattr(request, _ISSUED_KEY_ATTR, issued.key)

    def response_add(self, request, obj, post_url_continue=None):
        key = getattr(request, _ISSUED_KEY_ATTR, None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"API key for {obj.name}",
            "client": obj,
            "key": key,
            "change_url": reverse("admin:accounts_apiclient_change", args=[obj.pk]),
            "changelist_url": reverse("admin:accounts_apiclient_changelist"),
        }
        response = TemplateResponse(request, "admin/accounts/apiclient/key_issued.html", context)
        # The key must not survive in any cache, the browser's included.
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected API clients", permissions=["change"])
    def revoke(self, request, queryset):
        actor, context = self.audit_actor(request), self.audit_context(request)
        count = 0
        for client in queryset.filter(revoked_at__isnull=True).order_by("pk"):
            api_client_revoke(client=client, actor=actor, context=context)
            count += 1
        self.message_user(request, f"{count} API client(s) revoked.", messages.SUCCESS)


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(AuditedModelAdmin, DjangoGroupAdmin):
    """Django's group admin, audited: groups carry admin permissions."""

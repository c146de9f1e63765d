"""Identity tables: tenants, users, memberships (role) and API clients.

Tenant isolation starts here: every tenant-owned row in the project inherits
``TenantOwned`` and is read through ``TenantQuerySet.for_tenant``. Usernames are
unique across the whole installation, so a login needs no tenant; the tenant
comes from the user's single membership.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower

from .constants import ApiScope, Role, TenantStatus, TenantTier


class Tenant(models.Model):
    """A customer organisation. No data ever crosses from one tenant to another."""

    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    tier = models.CharField(max_length=20, choices=TenantTier.choices, default=TenantTier.FREE)
    status = models.CharField(max_length=20, choices=TenantStatus.choices, default=TenantStatus.ACTIVE)
    # The language of what the tenant's users are sent when a template has none
    # in their own (notifications fall back to English after it).
    locale = models.CharField(max_length=16, default="en")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_active(self) -> bool:
        return self.status == TenantStatus.ACTIVE


class TenantQuerySet(models.QuerySet):
    def for_tenant(self, tenant: Tenant | int) -> TenantQuerySet:
        tenant_id = tenant if isinstance(tenant, int) else tenant.pk
        return self.filter(tenant_id=tenant_id)


class TenantOwned(models.Model):
    """Abstract base of every tenant-owned row: it carries its tenant."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True


class User(AbstractUser):
    """A person who logs in. Staff users (``is_staff``) run the admin and may have no tenant."""

    email = models.EmailField(blank=True)
    display_name = models.CharField(max_length=150, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    locale = models.CharField(max_length=16, default="en")
    # Every token carries the generation it was issued under ("gen" claim);
    # revoking all sessions ("log out everywhere", refresh-token reuse,
    # deactivation) increments it, so older tokens are refused exactly,
    # with no clock-precision window.
    token_generation = models.PositiveIntegerField(default=0, editable=False)
    sessions_revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("username"), name="accounts_user_username_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.username

    @property
    def tenant_membership(self) -> Membership | None:
        try:
            return self.membership
        except Membership.DoesNotExist:
            return None


class Membership(models.Model):
    """A user's place in exactly one tenant, with a role."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="membership")
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["tenant", "role"])]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"


class ApiClient(TenantOwned):
    """A partner's server-to-server credential.

    The key is shown once at creation; only its SHA-256 is stored (keys are 256
    random bits, so a slow password hash buys nothing). ``key_prefix`` is the
    public part used to find the row without scanning.
    """

    name = models.CharField(max_length=100)
    key_prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list, help_text=f"Subset of: {', '.join(ApiScope.values)}")
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="accounts_apiclient_tenant_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.tenant_id})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

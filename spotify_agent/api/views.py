"""Tenant scoping for REST views: the one rule every tenant-owned endpoint follows.

``TenantScopedMixin`` filters the view's queryset on the caller's tenant, taken
from ``request.auth`` (a ``Principal``), never from the URL or the body. An id
that belongs to another tenant is therefore simply absent: it answers 404,
exactly like an id that does not exist, so nothing about other tenants leaks
(not even existence). docs/api.md, "Tenancy".
"""

from __future__ import annotations

from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import IsAuthenticated

from accounts.models import Tenant
from accounts.principals import Principal

from .permissions import HasRole, HasScope, request_principal


class TenantScopedMixin:
    """Mix into a DRF generic view or viewset before the DRF base class.

    - ``tenant_field``: the lookup from the queryset's model to the tenant id
      (``"tenant_id"`` for ``TenantOwned`` rows, ``"membership__tenant_id"`` for users);
    - ``required_role`` / ``required_scope``: see ``spotify_agent.api.permissions``.
    """

    tenant_field = "tenant_id"
    permission_classes = (IsAuthenticated, HasRole | HasScope)

    @property
    def principal(self) -> Principal:
        principal = request_principal(self.request)
        if principal is None:
            raise NotAuthenticated()
        return principal

    def get_tenant(self) -> Tenant:
        """The caller's tenant row, for services that take one."""
        return Tenant.objects.get(pk=self.principal.tenant_id)

    def get_queryset(self):
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            # Schema generation has no caller; the queryset only names the model.
            return queryset.none()
        return queryset.filter(**{self.tenant_field: self.principal.tenant_id})

"""Who may call a view: role for users, scope for API clients.

A view declares what it needs and lists ``HasRole | HasScope``:

    required_role = Role.MODERATOR            # users: at least this role
    required_scope = ApiScope.TENANT_READ     # API clients: this scope

Either attribute may also be a mapping from the viewset action (or the
lower-case HTTP method for plain views) to the requirement, with an optional
``"default"`` entry. A missing or ``None`` requirement refuses that kind of
caller: a view without ``required_scope`` is closed to API clients. Tenant
scoping is separate (``spotify_agent.api.views.TenantScopedMixin``).
"""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework.permissions import BasePermission

from accounts.constants import Role
from accounts.principals import Principal


def request_principal(request) -> Principal | None:
    """The ``Principal`` both authentication classes put in ``request.auth``."""
    return request.auth if isinstance(request.auth, Principal) else None


def view_requirement(view, request, attribute: str, default: str | None = None) -> str | None:
    value = getattr(view, attribute, default)
    if isinstance(value, Mapping):
        key = getattr(view, "action", None) or request.method.lower()
        return value.get(key, value.get("default"))
    return value


class HasRole(BasePermission):
    """A user whose role in their tenant is at least the view's ``required_role``
    (default: member)."""

    message = "Your role does not allow this."

    def has_permission(self, request, view):
        principal = request_principal(request)
        if principal is None or principal.user_id is None:
            return False
        minimum = view_requirement(view, request, "required_role", Role.MEMBER)
        return minimum is not None and principal.has_role(minimum)


class HasScope(BasePermission):
    """An API client granted the view's ``required_scope``."""

    message = "This API client lacks the required scope."

    def has_permission(self, request, view):
        principal = request_principal(request)
        if principal is None or principal.api_client_id is None:
            return False
        scope = view_requirement(view, request, "required_scope")
        return scope is not None and principal.has_scope(scope)


class IsUser(BasePermission):
    """A person, not an API client (WebSocket tickets, for instance)."""

    message = "Only users can do this; API clients cannot."

    def has_permission(self, request, view):
        principal = request_principal(request)
        return principal is not None and principal.user_id is not None

"""Throttles: one bucket per principal (user or API client), one per IP for
anonymous callers, and a tighter per-IP bucket for the credential endpoints.

Rates come from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` (``THROTTLE_RATE_*``)
and are read when the throttle is built, once per request, rather than when the
class is imported as DRF does: a changed setting takes effect without a restart
of the import graph (and tests can override it). Counters live in the cache, so
with Redis they are shared by every web process. docs/api.md, "Throttling".
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from accounts.principals import Principal
from accounts.services.network import client_ip


class SettingsRateThrottle(SimpleRateThrottle):
    """A sliding-window throttle whose rate is looked up per request."""

    def get_rate(self):
        if not getattr(self, "scope", None):
            return None
        try:
            return api_settings.DEFAULT_THROTTLE_RATES[self.scope]
        except KeyError:
            raise ImproperlyConfigured(f"No throttle rate for scope {self.scope!r}.") from None

    def wait(self):
        # DRF answers None when the history holds more requests than the rate
        # allows (the rate was lowered); clients still deserve a Retry-After.
        if not self.history:
            return self.duration
        oldest_counted = self.history[min(len(self.history), self.num_requests) - 1]
        return max(0.0, self.duration - (self.now - oldest_counted))


class PrincipalRateThrottle(SettingsRateThrottle):
    """Per user (scope ``user``) or per API client (scope ``api_client``)."""

    def allow_request(self, request, view):
        principal = request.auth if isinstance(request.auth, Principal) else None
        if principal is None:
            return True
        # The scope is only known once the caller is: set it, then the rate.
        self.scope = "user" if principal.user_id is not None else "api_client"
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": request.auth.throttle_key}


class AnonymousRateThrottle(SettingsRateThrottle):
    """Unauthenticated calls, keyed by client IP (``accounts.services.network``)."""

    scope = "anon"

    def get_cache_key(self, request, view):
        if isinstance(request.auth, Principal):
            return None
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request) or "unknown"}


class AuthEndpointThrottle(SettingsRateThrottle):
    """The credential endpoints (token obtain, refresh, verify): a tighter bucket
    per client IP, whoever the caller claims to be. django-axes locks accounts;
    this bounds how fast one address can try."""

    scope = "auth"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request) or "unknown"}

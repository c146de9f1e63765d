"""Throttles: one bucket per principal (user or API client), one per IP for anonymous callers.

Rates come from settings (``THROTTLE_RATE_*``); counters live in the cache, so
with Redis they are shared by every web process.
"""

from rest_framework.throttling import SimpleRateThrottle

from accounts.principals import Principal


class PrincipalRateThrottle(SimpleRateThrottle):
    """Per user (scope ``user``) or per API client (scope ``api_client``)."""

    def allow_request(self, request, view):
        principal = request.auth if isinstance(request.auth, Principal) else None
        if principal is None:
            return True
        self.scope = "user" if principal.user_id is not None else "api_client"
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_rate(self):
        # The scope is only known per request; defer the lookup to allow_request.
        if not getattr(self, "scope", None):
            return None
        return super().get_rate()

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": request.auth.throttle_key}


class AnonymousRateThrottle(SimpleRateThrottle):
    """Unauthenticated calls (login, token refresh), keyed by client IP."""

    scope = "anon"

    def get_cache_key(self, request, view):
        if isinstance(request.auth, Principal):
            return None
        from accounts.services.network import client_ip

        return self.cache_format % {"scope": self.scope, "ident": client_ip(request) or "unknown"}


class AuthEndpointThrottle(AnonymousRateThrottle):
    """A tighter bucket for the credential endpoints, keyed by client IP."""

    scope = "auth"

    def get_cache_key(self, request, view):
        from accounts.services.network import client_ip

        return self.cache_format % {"scope": self.scope, "ident": client_ip(request) or "unknown"}

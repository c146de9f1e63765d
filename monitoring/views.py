"""Operations endpoints: liveness, readiness and Prometheus metrics.

They bypass the REST stack on purpose: no authentication class, no throttling,
no session, so that a probe never depends on the database it may be checking.
All three are exempt from the HTTPS redirect (``SECURE_REDIRECT_EXEMPT``)
because orchestrators and Prometheus call them over plain HTTP in the cluster.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from django_prometheus.exports import ExportToDjangoView

from spotify_agent.api.exceptions import error_body

from .health import OK, readiness_report


@require_safe
@never_cache
async def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process serves requests. Checks no dependency, by design:
    restarting a web process cannot fix a database outage."""
    return JsonResponse({"status": OK})


@require_safe
@never_cache
async def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: every dependency answered within ``READYZ_TIMEOUT`` (else 503)."""
    report = await readiness_report()
    response = JsonResponse(report, status=200 if report["status"] == OK else 503)
    # Each failed check is already logged (WARNING) with its error. Without this
    # flag Django would add an ERROR "Service Unavailable" line per probe, which
    # Sentry's logging integration turns into an event every few seconds.
    response._has_been_logged = True
    return response


@require_safe
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """This process's Prometheus metrics; ``Authorization: Bearer <METRICS_TOKEN>``
    is required when the token is set."""
    token = settings.METRICS_TOKEN
    if token and not _bearer_matches(request, token):
        response = JsonResponse(error_body("unauthenticated", "A valid metrics bearer token is required."), status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return ExportToDjangoView(request)


def _bearer_matches(request: HttpRequest, token: str) -> bool:
    scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
    # compare_digest: the time taken must not reveal how much of the token matched.
    return scheme.lower() == "bearer" and hmac.compare_digest(supplied.strip().encode(), token.encode())

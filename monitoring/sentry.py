"""Error reporting to Sentry, on only when ``SENTRY_DSN`` is set (settings.py).

Events leave the process without credentials: ``send_default_pii`` is off, and
``scrub_event`` removes what the SDK's own filter does not know to be secret in
this project: ``Authorization`` (JWTs and ``Api-Key`` keys), cookies, and the
one-time WebSocket ``ticket`` that travels in a query string.
"""

from __future__ import annotations

import re
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.redis import RedisIntegration

from spotify_agent.env import env_str

FILTERED = "[Filtered]"

_SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# ``ticket=<value>`` at the start of a query string or after ``?``/``&`` (full URLs).
_TICKET_PARAM = re.compile(r"(^|[?&])(ticket=)[^&#\s]*", re.IGNORECASE)


def sentry_init(*, dsn: str, environment: str, traces_sample_rate: float) -> None:
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        # The deployed commit, stamped into the image by the build (Dockerfile).
        release=env_str("GIT_SHA") or None,
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        integrations=[DjangoIntegration(), CeleryIntegration(), RedisIntegration()],
        before_send=scrub_event,
        before_send_transaction=scrub_event,
    )


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Remove credentials from an event or transaction in place, and return it."""
    request = event.get("request")
    if isinstance(request, dict):
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {
                name: (FILTERED if name.lower() in _SENSITIVE_HEADERS else value) for name, value in headers.items()
            }
        if "cookies" in request:
            request["cookies"] = FILTERED
        query = request.get("query_string")
        if isinstance(query, str):
            request["query_string"] = scrub_ticket(query)
        elif isinstance(query, dict) and "ticket" in query:
            query["ticket"] = FILTERED
        if isinstance(request.get("url"), str):
            request["url"] = scrub_ticket(request["url"])
    breadcrumbs = event.get("breadcrumbs")
    values = breadcrumbs.get("values") if isinstance(breadcrumbs, dict) else breadcrumbs
    for crumb in values or ():
        data = crumb.get("data") if isinstance(crumb, dict) else None
        if isinstance(data, dict) and isinstance(data.get("url"), str):
            data["url"] = scrub_ticket(data["url"])
    return event


def scrub_ticket(text: str) -> str:
    return _TICKET_PARAM.sub(rf"\1\2{FILTERED}", text)

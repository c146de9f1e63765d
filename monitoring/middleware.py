"""HTTP middleware of the operations layer."""

from __future__ import annotations

import re
import uuid

from .logging import request_id_var

# Accept a caller's id only if it is short and harmless in a log line.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,128}$")


class RequestIdMiddleware:
    """Give each request an id (the caller's ``X-Request-ID`` if sane), expose it to
    logs and return it in the ``X-Request-ID`` response header."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        # Set, not reset afterwards: Django logs 4xx/5xx responses ("Not Found:
        # …") after the middleware chain has returned, and those lines must carry
        # the id too. Each ASGI request runs in a context of its own, and the
        # next request on a thread sets the variable again before logging.
        request_id_var.set(request_id)
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response

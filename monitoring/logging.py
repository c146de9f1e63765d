"""Request-scoped logging context.

``RequestIdMiddleware`` (HTTP) and the WebSocket hub set the current request id
in a context variable; ``RequestIdFilter`` adds it to every log record, so one
request's lines can be found together in the JSON log stream.
"""

from __future__ import annotations

import contextvars
import logging

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True

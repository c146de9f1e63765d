"""Calling services from WebSocket handlers.

Handlers are adapters: they run one service or selector off the event loop
(on Channels' database thread) and turn the domain errors it raises
(``spotify_agent.errors``) into ``error`` frames with the same code, message
and details. Every family's ``handlers.py`` calls services through
``call_service``, so the mapping is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async

from spotify_agent.errors import DomainError

from .protocol import ProtocolError


async def call_service(function: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Run ``function(**kwargs)`` on the database thread; a ``DomainError`` becomes a ``ProtocolError``."""
    try:
        return await database_sync_to_async(function)(**kwargs)
    except DomainError as exc:
        raise ProtocolError(
            exc.code, exc.message, details=exc.details, retry_after=getattr(exc, "retry_after", None)
        ) from None

"""The periodic authorization re-check of every open socket of a process, in batches.

An open socket must not outlive its user's right to it: deactivation, a
suspended tenant, a move to another tenant or revoked sessions. The
``session.revoked`` event closes sockets at once, but the channel layer may
drop it, so every ``WS_AUTH_RECHECK_INTERVAL`` seconds the process re-reads
the users behind all its sockets, ``RECHECK_BATCH`` principals per query,
instead of one query per socket (10,000 sockets would otherwise queue 2,000
queries a second on Channels' single database thread). Each socket then learns
its own verdict through ``Rechecked.principal_rechecked``.

One ``Rechecker`` per event loop (daphne runs one per process); its task runs
only while sockets are watched. A failed batch (the database is down) fails
open for one interval: the access token's own expiry still ends the session.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.principals import Principal
from accounts.services.tokens import AuthenticationError

from .selectors import ws_principals_recheck

logger = logging.getLogger(__name__)

# Principals per query: well under PostgreSQL's parameter limit, and short
# enough that other database work of the process interleaves between batches.
RECHECK_BATCH = 500


class Rechecked(Protocol):
    """What the rechecker needs of a socket."""

    @property
    def principal(self) -> Principal | None: ...

    async def principal_rechecked(self, checked: Principal, verdict: Principal | AuthenticationError) -> None: ...


class Rechecker:
    """The sockets of one event loop whose principal is re-checked together."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # Insertion-ordered set of the watched sockets.
        self._watched: dict[Rechecked, None] = {}
        self._task: asyncio.Task | None = None

    def __len__(self) -> int:
        return len(self._watched)

    def watch(self, connection: Rechecked) -> None:
        self._watched[connection] = None
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._run(), name="realtime-recheck")

    def unwatch(self, connection: Rechecked) -> None:
        self._watched.pop(connection, None)

    async def _run(self) -> None:
        while self._watched:
            await asyncio.sleep(settings.WS_AUTH_RECHECK_INTERVAL)
            try:
                await self.check_all()
            except Exception:
                logger.exception("WebSocket auth re-check failed")

    async def check_all(self) -> int:
        """Re-check every watched socket now; returns how many were checked."""
        connections = [c for c in self._watched if c.principal is not None]
        checked = 0
        for start in range(0, len(connections), RECHECK_BATCH):
            batch = connections[start : start + RECHECK_BATCH]
            principals = [c.principal for c in batch]
            try:
                verdicts = await database_sync_to_async(ws_principals_recheck)(principals=principals)
            except Exception:
                logger.exception("WebSocket auth re-check failed", extra={"sockets": len(batch)})
                continue
            for connection, principal, verdict in zip(batch, principals, verdicts, strict=True):
                if connection not in self._watched:
                    continue  # closed while the batch was read
                try:
                    await connection.principal_rechecked(principal, verdict)
                except Exception:
                    logger.exception("WebSocket auth re-check verdict failed")
            checked += len(batch)
        return checked


_recheckers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Rechecker] = weakref.WeakKeyDictionary()


def hub_rechecker() -> Rechecker:
    """The running loop's rechecker."""
    loop = asyncio.get_running_loop()
    rechecker = _recheckers.get(loop)
    if rechecker is None:
        rechecker = _recheckers[loop] = Rechecker(loop)
    return rechecker

"""The periodic upkeep of every open socket of a process, done in batches.

Each authenticated socket needs three things renewed while it stays open:

* its **authorization** re-checked every ``WS_AUTH_RECHECK_INTERVAL`` seconds
  (deactivation, a suspended tenant, a move to another tenant, revoked
  sessions): the ``session.revoked`` event closes sockets at once, but the
  channel layer may drop it;
* its **slot** in the per-user connection registry (``realtime.connections``)
  refreshed every third of ``WS_CONNECTION_TTL``, or the slot lapses;
* its **presence** heartbeat (``realtime.presence``) every
  ``WS_HEARTBEAT_INTERVAL``, or the user drifts offline.

Done per socket, 10,000 sockets meant 2,000 queries a second on Channels'
single database thread and over a thousand Redis scripts a second contending
for the pool. Here one ``Upkeep`` per event loop (daphne runs one per process)
makes one pass per duty over all its sockets: the users of ``BATCH`` sockets
per query, and ``BATCH`` Redis scripts per pipeline (one round trip). Each
socket then learns its own verdict through the ``Kept`` methods.

A failed batch (database or Redis down) fails open until the next pass: the
access token's expiry still ends a session, a registry entry outlives two
missed refreshes, and presence outlives one and a half.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Protocol

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.principals import Principal
from accounts.services.tokens import AuthenticationError

from .connections import Slot, connection_slots_refresh
from .presence import presence_heartbeats
from .registry import registry
from .selectors import ws_principals_recheck

logger = logging.getLogger(__name__)

# Sockets per query or pipeline: well under PostgreSQL's parameter limit, and
# short enough that other work of the process interleaves between batches.
BATCH = 500


class Kept(Protocol):
    """What the upkeep needs of a socket."""

    @property
    def principal(self) -> Principal | None: ...

    @property
    def connection_id(self) -> str: ...

    @property
    def holds_slot(self) -> bool: ...

    @property
    def present(self) -> bool: ...

    async def principal_rechecked(self, checked: Principal, verdict: Principal | AuthenticationError) -> None: ...

    async def slot_lost(self) -> None: ...


class Upkeep:
    """The sockets of one event loop, and the periodic passes over them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # Insertion-ordered set of the kept sockets.
        self._sockets: dict[Kept, None] = {}
        self._tasks: list[asyncio.Task] = []

    def __len__(self) -> int:
        return len(self._sockets)

    def watch(self, socket: Kept) -> None:
        self._sockets[socket] = None
        if not self._tasks or all(task.done() for task in self._tasks):
            self._tasks = [
                self._loop.create_task(self._every(lambda: settings.WS_AUTH_RECHECK_INTERVAL, self.recheck_all)),
                self._loop.create_task(self._every(lambda: settings.WS_CONNECTION_TTL / 3, self.refresh_slots)),
                self._loop.create_task(self._every(lambda: settings.WS_HEARTBEAT_INTERVAL, self.refresh_presence)),
            ]

    def unwatch(self, socket: Kept) -> None:
        self._sockets.pop(socket, None)

    async def _every(self, interval: Callable[[], float], duty: Callable[[], Awaitable[int]]) -> None:
        while self._sockets:
            await asyncio.sleep(interval())
            try:
                await duty()
            except Exception:
                logger.exception("WebSocket upkeep pass failed", extra={"duty": duty.__name__})

    def _batches(self, wanted: Callable[[Kept], bool]):
        sockets = [s for s in self._sockets if s.principal is not None and wanted(s)]
        for start in range(0, len(sockets), BATCH):
            yield sockets[start : start + BATCH]

    # --- The duties (each returns how many sockets it covered) ---------------------

    async def recheck_all(self) -> int:
        """Re-read the users behind every socket; each socket acts on its verdict."""
        checked = 0
        for batch in self._batches(lambda s: True):
            principals = [s.principal for s in batch]
            try:
                verdicts = await database_sync_to_async(ws_principals_recheck)(principals=principals)
            except Exception:
                logger.exception("WebSocket auth re-check failed", extra={"sockets": len(batch)})
                continue
            for socket, principal, verdict in zip(batch, principals, verdicts, strict=True):
                if socket in self._sockets:  # not closed while the batch was read
                    await _guard(socket.principal_rechecked(principal, verdict), "auth re-check verdict")
            checked += len(batch)
        return checked

    async def refresh_slots(self) -> int:
        """Refresh every socket's registry entry; a socket whose entry lapsed and
        was taken by others is told (``slot_lost``)."""
        refreshed = 0
        for batch in self._batches(lambda s: s.holds_slot):
            slots = [Slot(s.principal.tenant_id, s.principal.user_id, s.connection_id) for s in batch]
            try:
                held = await connection_slots_refresh(slots=slots)
            except Exception:
                logger.exception("connection registry refresh failed", extra={"sockets": len(batch)})
                continue
            for socket, still_held in zip(batch, held, strict=True):
                if not still_held and socket in self._sockets:
                    await _guard(socket.slot_lost(), "slot lost")
            refreshed += len(batch)
        return refreshed

    async def refresh_presence(self) -> int:
        """Send every present socket's heartbeat; report users who reappeared."""
        refreshed = 0
        for batch in self._batches(lambda s: s.present):
            connections = [(s.principal.tenant_id, s.principal.user_id, s.connection_id) for s in batch]
            try:
                changes = await presence_heartbeats(connections=connections)
            except Exception:
                logger.exception("presence refresh failed", extra={"sockets": len(batch)})
                continue
            for change in changes:
                await registry.presence_changed(change)
            refreshed += len(batch)
        return refreshed


async def _guard(awaitable: Awaitable[None], what: str) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("WebSocket upkeep: %s failed", what)


_upkeeps: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Upkeep] = weakref.WeakKeyDictionary()


def hub_upkeep() -> Upkeep:
    """The running loop's upkeep."""
    loop = asyncio.get_running_loop()
    upkeep = _upkeeps.get(loop)
    if upkeep is None:
        upkeep = _upkeeps[loop] = Upkeep(loop)
    return upkeep

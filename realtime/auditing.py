"""The audit of socket lifecycles (opened, closed, refused), written in batches.

Every socket adds two audit events, and a deploy reconnects every socket of a
process within seconds. Writing each event in its own transaction (a chain-head
lock, an insert and a head update) on Channels' single database thread made
the audit the bottleneck of a reconnect storm. Instead, each event loop (one
per daphne process) buffers the events and writes them every
``WS_AUDIT_FLUSH_INTERVAL`` seconds, up to ``FLUSH_BATCH`` per transaction, through
``realtime.services.ws_lifecycle_record``, which locks each tenant's chain once
per batch.

What this trades, and how it is bounded (docs/operations.md, "Audit"):

* an event reaches the table up to ``WS_AUDIT_FLUSH_INTERVAL`` seconds (plus the
  write) after the socket opened or closed;
* while the database is unreachable, events wait in memory and the writes are
  retried with backoff; past ``BUFFER_LIMIT`` waiting events the oldest are
  dropped and counted in ``realtime_audit_events_dropped_total`` (logged at
  ERROR), so an outage cannot grow the process without bound;
* at a clean exit (SIGTERM, SIGINT) whatever is still waiting is written
  synchronously before the process ends; only a crash (SIGKILL, OOM) loses
  the last fraction of a second of events.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import weakref
from collections import deque

from channels.db import database_sync_to_async
from django.conf import settings

from audit.services import AuditEntry
from monitoring.metrics import REALTIME_AUDIT_DROPPED

from .services import ws_lifecycle_record

logger = logging.getLogger(__name__)

FLUSH_BATCH = 500
BUFFER_LIMIT = 50_000
_RETRY_MAX = 10.0


class LifecycleAudit:
    """The buffered lifecycle events of one event loop, and the task writing them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: deque[AuditEntry] = deque()
        self._writer: asyncio.Task | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._pending)

    def record(self, entry: AuditEntry) -> None:
        """Queue one event; never blocks, never raises."""
        if len(self._pending) >= BUFFER_LIMIT:
            self._pending.popleft()
            REALTIME_AUDIT_DROPPED.inc()
            logger.error("lifecycle audit buffer full: oldest event dropped", extra={"limit": BUFFER_LIMIT})
        self._pending.append(entry)
        self._idle.clear()
        if self._writer is None or self._writer.done():
            self._writer = self._loop.create_task(self._write(), name="realtime-audit")

    async def flushed(self) -> None:
        """Wait until every event queued so far is written (or dropped)."""
        await self._idle.wait()

    async def _write(self) -> None:
        delay = settings.WS_AUDIT_FLUSH_INTERVAL
        while self._pending:
            await asyncio.sleep(delay)
            batch = list(itertools.islice(self._pending, FLUSH_BATCH))
            try:
                await database_sync_to_async(ws_lifecycle_record)(entries=batch)
            except Exception:
                logger.exception("lifecycle audit write failed; retrying", extra={"events": len(batch)})
                delay = min(max(delay, 0.1) * 2, _RETRY_MAX)
                continue
            # Remove what was written. If the buffer overflowed during the
            # write, its front already lost some of them: compare identities.
            for entry in batch:
                if self._pending and self._pending[0] is entry:
                    self._pending.popleft()
            delay = settings.WS_AUDIT_FLUSH_INTERVAL if len(self._pending) < FLUSH_BATCH else 0
        self._idle.set()

    def drain_sync(self) -> None:
        """Write what is still waiting, from synchronous code (process exit)."""
        pending, self._pending = list(self._pending), deque()
        for start in range(0, len(pending), FLUSH_BATCH):
            ws_lifecycle_record(entries=pending[start : start + FLUSH_BATCH])


_audits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LifecycleAudit] = weakref.WeakKeyDictionary()


def lifecycle_audit() -> LifecycleAudit:
    """The running loop's buffer."""
    loop = asyncio.get_running_loop()
    audit = _audits.get(loop)
    if audit is None:
        audit = _audits[loop] = LifecycleAudit(loop)
    return audit


@atexit.register
def _drain_at_exit() -> None:
    # daphne stops its loop without closing it. A closed loop belonged to an
    # application torn down on purpose (an in-process test harness), whose
    # database may be gone by now.
    for loop, audit in list(_audits.items()):
        if len(audit) and not loop.is_closed():
            try:
                audit.drain_sync()
            except Exception:
                logger.exception("lifecycle audit events lost at exit", extra={"events": len(audit)})

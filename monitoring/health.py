"""Readiness checks: one function per dependency, and the runner behind ``/readyz``.

Each check either returns (the dependency answered) or raises. The runner
starts them all at once and gives each ``settings.READYZ_TIMEOUT`` seconds, so a
report never takes much longer than one timeout whatever is down. Blocking
checks run on a small dedicated thread pool: a hung dependency can only tie up
that pool, never the event loop or the threads that serve requests. A thread
abandoned on timeout finishes on its own, bounded by the client libraries'
connect and socket timeouts (settings.py).

Errors are reported by exception class and message, with credentials in URLs
masked: the endpoint is unauthenticated, so nothing secret may appear in it.
The JSON shape is documented in docs/operations.md, "Health endpoints".
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import EagerResult
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections

from spotify_agent.celery import app as celery_app

logger = logging.getLogger(__name__)

OK = "ok"
FAIL = "fail"

# Enough for every blocking check of two overlapping reports; more would only
# let a hung dependency pile up threads.
_EXECUTOR = ThreadPoolExecutor(max_workers=8, thread_name_prefix="readyz")

# Celery's Redis result consumer (one pub/sub connection per app) is not
# thread-safe, so worker probes from concurrent reports take turns.
_PROBE_LOCK = threading.Lock()

# Grace given to a check beyond its own internal timeout, so that its precise
# error ("no worker answered…") wins over the runner's generic "timed out".
_GRACE = 0.5

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]*@", re.IGNORECASE)
_PASSWORD_PAIR = re.compile(r"(password\s*[=:]\s*)\S+", re.IGNORECASE)
_MAX_ERROR_LENGTH = 300


class CheckFailed(Exception):
    """A dependency answered, but not with what the check expected."""


def safe_error(exc: BaseException) -> str:
    """``Class: message`` with URL credentials and password fields masked, truncated."""
    message = str(exc).strip() or "no detail"
    message = _URL_CREDENTIALS.sub(r"\g<scheme>***@", message)
    message = _PASSWORD_PAIR.sub(r"\1***", message)
    text = f"{type(exc).__name__}: {message}"
    return text if len(text) <= _MAX_ERROR_LENGTH else text[: _MAX_ERROR_LENGTH - 1] + "…"


# --- Checks -------------------------------------------------------------------------


def check_database(alias: str = DEFAULT_DB_ALIAS) -> None:
    """A ``SELECT 1`` on a connection of this thread, closed afterwards so that
    the pool threads never hold connections between reports."""
    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            if cursor.fetchone() != (1,):
                raise CheckFailed("SELECT 1 did not return 1")
    finally:
        connection.close()


def check_cache() -> None:
    """Write, read back and delete a key unique to this check."""
    key = f"readyz:{uuid.uuid4().hex}"
    nonce = uuid.uuid4().hex
    cache.set(key, nonce, timeout=30)
    try:
        if cache.get(key) != nonce:
            raise CheckFailed("the cache did not return the value just written")
    finally:
        cache.delete(key)


async def check_channel_layer() -> None:
    """Send a message to a fresh channel of this process and receive it back."""
    layer = get_channel_layer()
    if layer is None:
        raise CheckFailed("no channel layer is configured")
    channel = await layer.new_channel()
    nonce = uuid.uuid4().hex
    await layer.send(channel, {"type": "readyz.probe", "nonce": nonce})
    message = await layer.receive(channel)
    if message.get("nonce") != nonce:
        raise CheckFailed("the channel layer returned a different message")


def check_celery_broker(timeout: float) -> None:
    """Open a connection to the broker (for Redis, kombu pings it on connect)."""
    with celery_app.connection_for_write(connect_timeout=timeout) as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)


def check_celery_worker(timeout: float) -> None:
    """Send ``monitoring.tasks.probe`` to the default queue and wait for its answer.

    Only a worker that is actually consuming the queue can answer, which a
    broker ping or a ``celery inspect ping`` (answered by a worker whose pool
    is stuck) cannot prove. The probe expires with the wait, so probes sent
    while no worker listens are discarded, not run later in a burst. In the
    embedded default Celery is eager and the probe runs inline.
    """
    from .tasks import probe

    deadline = time.monotonic() + timeout
    if not _PROBE_LOCK.acquire(timeout=timeout):
        raise CheckFailed("another worker probe is still waiting for its answer")
    try:
        nonce = uuid.uuid4().hex
        queue = celery_app.conf.task_default_queue
        result = probe.apply_async((nonce,), queue=queue, expires=timeout)
        try:
            answer = result.get(timeout=max(deadline - time.monotonic(), 0.01), propagate=True)
        except CeleryTimeoutError:
            raise CheckFailed(f"no worker answered a probe on queue {queue!r} within {timeout:g} s") from None
        finally:
            if not isinstance(result, EagerResult):
                result.forget()
        if answer != nonce:
            raise CheckFailed("the probe returned a different answer")
    finally:
        _PROBE_LOCK.release()


# --- Runner --------------------------------------------------------------------------


async def _run(name: str, start: Callable[[], Awaitable[None]], timeout: float) -> tuple[str, dict[str, Any]]:
    began = time.monotonic()
    try:
        await asyncio.wait_for(start(), timeout=timeout + _GRACE)
    except TimeoutError:
        error = f"timed out after {timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - any failure of a dependency is a "fail" in the report
        error = safe_error(exc)
    else:
        return name, {"status": OK, "latency_ms": round((time.monotonic() - began) * 1000, 1)}
    logger.warning("readiness check %s failed: %s", name, error, extra={"check": name})
    return name, {"status": FAIL, "latency_ms": round((time.monotonic() - began) * 1000, 1), "error": error}


def _in_thread(function: Callable[..., None], *args: Any) -> Callable[[], Awaitable[None]]:
    def start() -> Awaitable[None]:
        return asyncio.get_running_loop().run_in_executor(_EXECUTOR, function, *args)

    return start


def _database_check_name(alias: str) -> str:
    return "database" if alias == DEFAULT_DB_ALIAS else f"database:{alias}"


async def readiness_report(*, timeout: float | None = None) -> dict[str, Any]:
    """Run every check concurrently: ``{"status": "ok"|"fail", "checks": {name: {...}}}``.

    Every configured database alias is checked; the default one is reported as
    ``database``, others as ``database:<alias>``.
    """
    timeout = settings.READYZ_TIMEOUT if timeout is None else timeout
    checks: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        (_database_check_name(alias), _in_thread(check_database, alias)) for alias in connections
    ]
    checks += [
        ("cache", _in_thread(check_cache)),
        ("channel_layer", check_channel_layer),
        ("celery_broker", _in_thread(check_celery_broker, timeout)),
        ("celery_worker", _in_thread(check_celery_worker, timeout)),
    ]
    results = dict(await asyncio.gather(*(_run(name, start, timeout) for name, start in checks)))
    overall = OK if all(result["status"] == OK for result in results.values()) else FAIL
    return {"status": overall, "checks": results}

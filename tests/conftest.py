"""Fixtures shared by the whole suite: real services, real processes.

- Under ``CI=true`` the suite refuses to start unless PostgreSQL and Redis are
  configured and answering: real-service tests never skip there.
- ``live_server_url`` runs a real daphne process on the test database; tests
  that use it need ``django_db(transaction=True)`` so their rows are committed.
- ``servers`` runs two daphne processes on the test database, restartable, as
  two servers behind a load balancer.
- ``celery_worker`` runs a real Celery worker process (needs Redis).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings

from spotify_agent.processes import free_port, stop_process, wait_for_port
from tests.factories import TenantFactory, UserFactory

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _reachable(url_env: str) -> bool:
    from urllib.parse import urlparse

    url = os.environ.get(url_env)
    if not url:
        return False
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 0), timeout=2):
            return True
    except OSError:
        return False


def pytest_sessionstart(session):
    if not IN_CI:
        return
    missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not _reachable(name)]
    if missing:
        pytest.exit(
            f"CI=true but {', '.join(missing)} is unset or unreachable: refusing to skip real-service tests.", 3
        )


def pytest_collection_modifyitems(config, items):
    if settings.REDIS_URL:
        return
    skip = pytest.mark.skip(reason="needs REDIS_URL (the real Redis); run through .ci/run or set it")
    for item in items:
        if "redis" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clean_cache():
    """Remove this suite's cache keys (and only those) after each test: throttle
    counters, lockouts and tickets must not leak between tests."""
    yield
    from django.core.cache import cache

    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        prefix = settings.CACHES["default"]["KEY_PREFIX"]
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    else:
        cache.clear()


# --- Data -----------------------------------------------------------------------


@pytest.fixture
def tenant(db):
    return TenantFactory(slug="acme", name="Acme")


@pytest.fixture
def other_tenant(db):
    return TenantFactory(slug="globex", name="Globex")


@pytest.fixture
def user(tenant):
    return UserFactory(username="alice", tenant=tenant)


@pytest.fixture
def other_user(other_tenant):
    return UserFactory(username="dave", tenant=other_tenant)


# --- Real processes ----------------------------------------------------------------


def _database_url_for_subprocess() -> str:
    db = settings.DATABASES["default"]
    if "sqlite" in db["ENGINE"]:
        return ""
    user = quote(db.get("USER") or "")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test process's environment, pointed at the test database."""
    env = dict(os.environ)
    db_url = _database_url_for_subprocess()
    if db_url:
        env["DATABASE_URL"] = db_url
    else:
        env.pop("DATABASE_URL", None)
        env["SQLITE_PATH"] = str(settings.DATABASES["default"]["NAME"])
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Servers write socket audit events within 20 ms, so a test sees them at once.
    env.setdefault("WS_AUDIT_FLUSH_INTERVAL", "0.02")
    env.update(extra)
    return env


def wait_for_sockets_recorded(timeout: float = 5.0) -> None:
    """Wait until the live servers have recorded the end of every socket.

    daphne writes ``ws.disconnected`` (and ``ws.rejected``) after the client
    has gone, batched every WS_AUDIT_FLUSH_INTERVAL (20 ms in tests). A test
    that ends sooner would race that insert with its database flush (and
    deadlock with it on PostgreSQL), or the row would land in the next test."""
    from audit.constants import AuditAction
    from audit.models import AuditEvent

    time.sleep(0.1)  # the batch of sockets that closed just now
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        opened = AuditEvent.objects.filter(action=AuditAction.WS_CONNECTED).count()
        if AuditEvent.objects.filter(action=AuditAction.WS_DISCONNECTED).count() >= opened:
            return
        time.sleep(0.05)
    pytest.fail(f"daphne did not record the end of every socket within {timeout} s")


@contextmanager
def daphne_server(log_dir: Path, **env: str) -> Iterator[str]:
    """A real daphne process serving the app on the test database, with ``env``
    on top of the test environment; yields its base URL and stops it after.
    Its output goes to ``log_dir/daphne.log`` (quoted if it fails to start)."""
    port = free_port()
    log = log_dir / "daphne.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "spotify_agent.asgi:application"],
            cwd=ROOT,
            env=subprocess_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, proc)
    except RuntimeError:
        stop_process(proc)
        raise RuntimeError(f"daphne did not start:\n{log.read_text()[-4000:]}") from None
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def live_server_url(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real daphne process serving the app on the test database."""
    with daphne_server(tmp_path_factory.mktemp("daphne")) as url:
        yield url


@pytest.fixture
def servers(transactional_db, tmp_path):
    """Two restartable daphne processes sharing the database and Redis, as two
    servers behind a load balancer; stopped before the test's database flush."""
    from tests.realtime.client_support import RestartableDaphne

    first = RestartableDaphne(tmp_path, name="first")
    second = RestartableDaphne(tmp_path, name="second")
    first.start()
    second.start()
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, tmp_path_factory):
    """A real Celery worker consuming every queue, on the test database."""
    if not settings.REDIS_URL:
        pytest.skip("a real Celery worker needs REDIS_URL")
    log = tmp_path_factory.mktemp("celery") / "worker.log"
    hostname = f"test-worker-{os.getpid()}@%h"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "spotify_agent",
                "worker",
                "-Q",
                "notifications_critical,default,notifications,compliance",
                "-c",
                "2",
                "-P",
                "threads",
                "-n",
                hostname,
                "--without-gossip",
                "--without-mingle",
                "-l",
                "INFO",
            ],
            cwd=ROOT,
            env=subprocess_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    from spotify_agent.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited:\n{log.read_text()[-4000:]}")
        replies = app.control.ping(timeout=1.0) or []
        if any(hostname.split("@", maxsplit=1)[0] in next(iter(reply)) for reply in replies):
            break
    else:
        stop_process(proc)
        raise RuntimeError(f"celery worker did not answer ping:\n{log.read_text()[-4000:]}")
    yield proc
    stop_process(proc)

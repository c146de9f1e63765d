"""/healthz and /readyz against the real services, and with each dependency down.

Dependencies are taken down for real: a Redis URL on a closed port, a database
alias on a closed port, the Celery broker URL pointed at a closed port, and the
worker told to stop consuming the default queue.
"""

from __future__ import annotations

import logging
import socket
import time

import pytest
from django.db import connections
from django.test import override_settings

from monitoring.health import readiness_report, safe_error
from spotify_agent.celery import app as celery_app
from tests.conftest import free_port

CHECKS = {"database", "cache", "channel_layer", "celery_broker", "celery_worker"}


@pytest.fixture
def worker_if_real(request, settings):
    """With Redis, /readyz can only pass when a real worker consumes the default queue."""
    if settings.REDIS_URL:
        return request.getfixturevalue("celery_worker")
    return None


def failing(body: dict) -> set[str]:
    return {name for name, check in body["checks"].items() if check["status"] != "ok"}


def redis_cache_at(url: str, **options) -> dict:
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1, **options},
        }
    }


def test_healthz_answers_without_authentication_or_dependencies(client):
    # No django_db mark: touching the database here would raise.
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@override_settings(SECURE_SSL_REDIRECT=True)
def test_health_endpoints_are_exempt_from_the_https_redirect(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/api/docs/").status_code == 301


@pytest.mark.django_db
def test_readyz_reports_every_dependency_ok(client, worker_if_real):
    response = client.get("/readyz")

    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == CHECKS
    for check in body["checks"].values():
        assert check["status"] == "ok"
        assert check["latency_ms"] >= 0
        assert "error" not in check


@pytest.mark.django_db
def test_readyz_names_an_unreachable_cache(client, worker_if_real, caplog):
    with override_settings(CACHES=redis_cache_at(f"redis://127.0.0.1:{free_port()}/5")):
        response = client.get("/readyz")

    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "fail"
    assert failing(body) == {"cache"}
    assert "Connection" in body["checks"]["cache"]["error"]
    # One WARNING naming the check, and no ERROR line that Sentry would pick up.
    assert [(r.levelname, r.check) for r in caplog.records if r.name == "monitoring.health"] == [("WARNING", "cache")]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.django_db
def test_readyz_names_an_unreachable_channel_layer(client, worker_if_real):
    dead_layer = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": f"redis://127.0.0.1:{free_port()}/5", "socket_connect_timeout": 1}]},
        }
    }
    with override_settings(CHANNEL_LAYERS=dead_layer):
        response = client.get("/readyz")

    body = response.json()
    assert response.status_code == 503
    assert failing(body) == {"channel_layer"}
    assert body["checks"]["channel_layer"]["error"]


@pytest.mark.django_db
def test_readyz_names_an_unreachable_broker(client, worker_if_real):
    original = celery_app.conf.broker_url
    celery_app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/5"
    try:
        response = client.get("/readyz")
    finally:
        celery_app.conf.broker_url = original

    body = response.json()
    assert response.status_code == 503
    assert "celery_broker" in failing(body)
    # The worker probe publishes through the already-open producer pool, so the
    # broker check is what must catch a broker URL that does not answer.
    assert body["checks"]["celery_broker"]["status"] == "fail"
    assert body["checks"]["database"]["status"] == "ok"


@pytest.mark.django_db
def test_readyz_names_an_unreachable_database(client, worker_if_real, monkeypatch, tmp_path):
    # The check opens a connection of its own, in a pool thread, from the alias's
    # settings; the test's connection is already open and is not affected.
    default = connections.settings["default"]
    if "sqlite" in default["ENGINE"]:
        monkeypatch.setitem(default, "NAME", str(tmp_path / "missing-directory" / "db.sqlite3"))
    else:
        monkeypatch.setitem(default, "HOST", "127.0.0.1")
        monkeypatch.setitem(default, "PORT", str(free_port()))

    response = client.get("/readyz")

    body = response.json()
    assert response.status_code == 503
    assert failing(body) == {"database"}
    assert "OperationalError" in body["checks"]["database"]["error"]


@pytest.mark.django_db
def test_readyz_error_never_shows_credentials(client, worker_if_real):
    url = f"redis://readyz-user:hunter2-secret@127.0.0.1:{free_port()}/5"
    with override_settings(CACHES=redis_cache_at(url)):
        response = client.get("/readyz")

    assert response.status_code == 503
    assert "hunter2-secret" not in response.content.decode()


def test_safe_error_masks_url_credentials_and_passwords():
    error = ConnectionError("cannot reach redis://user:pa55@10.0.0.1:6379/0 (password=pa55)")

    text = safe_error(error)

    assert "pa55" not in text
    assert text.startswith("ConnectionError: cannot reach redis://***@10.0.0.1:6379/0")


@pytest.mark.django_db
@override_settings(READYZ_TIMEOUT=0.5)
def test_readyz_gives_up_on_a_dependency_that_never_answers(client, worker_if_real):
    # A listening socket that is never accepted: the TCP handshake succeeds and
    # the Redis client then waits for a reply that never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with override_settings(CACHES=redis_cache_at(f"redis://127.0.0.1:{port}/5", socket_timeout=30)):
            began = time.monotonic()
            response = client.get("/readyz")
            elapsed = time.monotonic() - began

    body = response.json()
    assert response.status_code == 503
    assert failing(body) == {"cache"}
    assert body["checks"]["cache"]["error"] == "timed out after 0.5 s"
    assert elapsed < 2.5


@pytest.mark.redis
@pytest.mark.django_db
async def test_readyz_notices_a_worker_that_stopped_consuming(celery_worker):
    replies = celery_app.control.cancel_consumer("default", reply=True, timeout=5)
    assert replies, "the worker did not acknowledge the cancel"
    try:
        # The worker may still have one blocking pop on the queue in flight when
        # it cancels, which can take one more probe: poll until the probe fails.
        deadline = time.monotonic() + 15
        while True:
            report = await readiness_report(timeout=1.0)
            if report["checks"]["celery_worker"]["status"] == "fail" or time.monotonic() > deadline:
                break
    finally:
        celery_app.control.add_consumer("default", reply=True, timeout=5)

    assert report["status"] == "fail"
    assert failing(report) == {"celery_worker"}
    assert "no worker answered a probe on queue 'default'" in report["checks"]["celery_worker"]["error"]

    deadline = time.monotonic() + 15
    while (report := await readiness_report(timeout=2.0))["status"] != "ok" and time.monotonic() < deadline:
        pass
    assert report["status"] == "ok", report

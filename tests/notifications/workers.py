"""Real Celery workers for the delivery tests, and the fixtures that run them:
``queue`` (a queue of the test's own, every ``RoutingRule`` pointed at it, so
the suite's shared worker never takes these tasks) and ``services`` (local
SMTP and SMS servers, this process's settings and a worker's environment
pointed at them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings

from notifications.models import RoutingRule
from spotify_agent.processes import stop_process
from tests.conftest import ROOT, subprocess_env
from tests.notifications.servers import SmtpServer, TwilioSms, routing_rules_seed


class Worker:
    """A Celery worker process (prefork, its own process group) on one queue."""

    def __init__(self, log_dir: Path, *, queue: str, env: dict[str, str], name: str, concurrency: int = 1) -> None:
        self.hostname = f"{name}-{uuid.uuid4().hex[:6]}@localhost"
        self.log = log_dir / f"{name}.log"
        self.queue, self.env, self.concurrency = queue, env, concurrency
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "spotify_agent",
                    "worker",
                    "-Q",
                    self.queue,
                    "-c",
                    str(self.concurrency),
                    "-P",
                    "prefork",
                    "-n",
                    self.hostname,
                    "--without-gossip",
                    "--without-mingle",
                    "-l",
                    "INFO",
                ],
                cwd=ROOT,
                env=subprocess_env(**self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, for kill -9 of the whole worker
            )
        from spotify_agent.celery import app

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited:\n{self.log.read_text()[-4000:]}")
            if app.control.ping(destination=[self.hostname], timeout=0.5):
                return self
        self.stop()
        raise RuntimeError(f"celery worker did not answer ping:\n{self.log.read_text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL the main process and its pool children at once."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # pool children left behind, if any
        except ProcessLookupError:
            pass


@pytest.fixture
def queue():
    name = f"test-notify-worker-{uuid.uuid4().hex[:8]}"
    routing_rules_seed()
    RoutingRule.objects.update(queue=name)
    yield name
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    client.delete(name, *[f"{name}\x06\x16{step}" for step in (3, 6, 9)])
    client.close()


@pytest.fixture
def services(settings):
    """The local SMTP and SMS servers, and the settings pointing this process at them."""
    with SmtpServer() as smtp, TwilioSms() as sms:
        env = {**smtp.env(), **sms.env(), "SMS_TIMEOUT": "2", "EMAIL_TIMEOUT": "2"}
        for name, value in env.items():
            setattr(settings, name, int(value) if name in {"EMAIL_PORT", "EMAIL_TIMEOUT"} else value)
        settings.SMS_TIMEOUT = 2.0
        yield smtp, sms, env


def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")

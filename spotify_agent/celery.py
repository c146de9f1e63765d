"""The Celery application.

Configuration comes from Django settings under the ``CELERY_`` namespace
(settings.py, "Celery"): Redis broker from REDIS_URL, JSON only, late acks with
reject-on-worker-lost (so every task must be idempotent), named queues
``default``, ``notifications`` and ``compliance``, and the beat schedule.
Without REDIS_URL tasks run eagerly in-process (the embedded default).

The app also enforces the countdown rule (docs/operations.md, "Celery"): the
Redis transport redelivers any message not acknowledged within the visibility
timeout, and a worker holds a message with an ETA unacknowledged until the ETA
passes. A countdown longer than the timeout would therefore run the task twice
or more, so publishing one raises ``CountdownTooLong``. The check lives in
``send_task`` and ``Task.apply_async`` rather than in a ``before_task_publish``
receiver because Celery logs and swallows exceptions raised by receivers.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from celery import Celery
from celery.contrib.django.task import DjangoTask
from django.utils import timezone

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spotify_agent.settings")


class CountdownTooLong(ValueError):
    """A task was scheduled further ahead than the broker's visibility timeout."""


def check_countdown(app: Celery, *, countdown: float | None, eta: datetime | str | None) -> None:
    """Refuse a countdown or ETA beyond ``broker_transport_options["visibility_timeout"]``."""
    limit = (app.conf.broker_transport_options or {}).get("visibility_timeout")
    if not limit:
        return
    if countdown is not None:
        delay = float(countdown)
    elif eta is not None:
        if isinstance(eta, str):
            eta = datetime.fromisoformat(eta)
        if timezone.is_naive(eta):
            # Celery reads a naive ETA in the app's timezone (UTC here).
            eta = eta.replace(tzinfo=app.timezone)
        delay = (eta - timezone.now()).total_seconds()
    else:
        return
    if delay > limit:
        raise CountdownTooLong(
            f"A delay of {timedelta(seconds=delay)} exceeds the broker visibility timeout "
            f"({timedelta(seconds=limit)}); the task would be delivered more than once. "
            "Schedule it from beat instead."
        )


class ProjectTask(DjangoTask):
    """Base of every task: Celery's Django task (``delay_on_commit``, which enqueues
    once the transaction commits), plus the countdown rule, also applied in eager
    mode (which never reaches ``send_task``), so the embedded default fails like
    production."""

    def apply_async(self, *args, **options):
        # countdown and eta are keyword-only in Task.apply_async (part of **options).
        check_countdown(self._get_app(), countdown=options.get("countdown"), eta=options.get("eta"))
        return super().apply_async(*args, **options)


class ProjectCelery(Celery):
    task_cls = "spotify_agent.celery:ProjectTask"

    def send_task(self, name, args=None, kwargs=None, countdown=None, eta=None, **options):
        check_countdown(self, countdown=countdown, eta=eta)
        return super().send_task(name, args, kwargs, countdown=countdown, eta=eta, **options)


app = ProjectCelery("spotify_agent")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

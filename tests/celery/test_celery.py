"""The Celery app: its configuration, the countdown rule, and a real worker round trip."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.result import EagerResult
from django.conf import settings
from django.utils import timezone

from monitoring.tasks import probe
from spotify_agent.celery import CountdownTooLong, app, check_countdown


def test_configuration_is_as_specified():
    conf = app.conf

    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert conf.task_default_queue == "default"
    assert {queue.name for queue in conf.task_queues} == {
        "default",
        "notifications",
        "notifications_critical",
        "compliance",
    }
    assert conf.broker_transport_options["visibility_timeout"] == settings.CELERY_VISIBILITY_TIMEOUT
    assert conf.task_always_eager is (not settings.REDIS_URL)


def test_every_beat_entry_names_a_registered_task():
    app.loader.import_default_modules()

    assert app.conf.beat_schedule
    for name, entry in app.conf.beat_schedule.items():
        assert entry["task"] in app.tasks, name


def test_a_countdown_beyond_the_visibility_timeout_is_refused():
    limit = settings.CELERY_VISIBILITY_TIMEOUT

    with pytest.raises(CountdownTooLong, match="visibility timeout"):
        probe.apply_async(("never",), countdown=limit + 1)
    with pytest.raises(CountdownTooLong):
        probe.apply_async(("never",), eta=timezone.now() + timedelta(seconds=limit + 60))
    with pytest.raises(CountdownTooLong):
        app.send_task("monitoring.tasks.probe", ("never",), countdown=limit * 2)
    with pytest.raises(CountdownTooLong):
        probe.signature(("never",), countdown=limit + 1).apply_async()


def test_a_countdown_within_the_visibility_timeout_is_accepted():
    limit = settings.CELERY_VISIBILITY_TIMEOUT

    check_countdown(app, countdown=limit, eta=None)
    check_countdown(app, countdown=None, eta=(timezone.now() + timedelta(seconds=limit - 5)).isoformat())
    # A naive ETA is read in the app's timezone (UTC).
    naive = (timezone.now() + timedelta(seconds=limit + 60)).replace(tzinfo=None)
    with pytest.raises(CountdownTooLong):
        check_countdown(app, countdown=None, eta=naive)


@pytest.mark.skipif(bool(settings.REDIS_URL), reason="the embedded default only")
def test_tasks_run_inline_in_the_embedded_default():
    result = probe.delay("inline")

    assert isinstance(result, EagerResult)
    assert result.get() == "inline"


@pytest.mark.redis
def test_probe_round_trips_through_a_real_worker(celery_worker):
    result = probe.apply_async(("round-trip",), queue="default")

    assert not isinstance(result, EagerResult)
    assert result.get(timeout=20) == "round-trip"
    assert result.state == "SUCCESS"


@pytest.mark.redis
def test_a_short_countdown_is_delivered_by_a_real_worker(celery_worker):
    sent = timezone.now()
    result = probe.apply_async(("later",), countdown=1)

    assert result.get(timeout=20) == "later"
    assert timezone.now() - sent >= timedelta(seconds=1)

"""The Celery application.

Configuration comes from Django settings under the ``CELERY_`` namespace
(settings.py, "Celery"): Redis broker from REDIS_URL, JSON only, late acks with
reject-on-worker-lost (so every task must be idempotent), named queues
``default``, ``notifications`` and ``compliance``, and the beat schedule.
Without REDIS_URL tasks run eagerly in-process (the embedded default).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spotify_agent.settings")

app = Celery("spotify_agent")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

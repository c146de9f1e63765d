"""Project package: settings, URL map, ASGI entry point and the Celery app.

Importing the Celery app here makes ``@shared_task`` bind to it whenever Django
starts (web, worker or management command), as in Celery's Django example.
"""

from .celery import app as celery_app

__all__ = ("celery_app",)

"""Notifications: sending, routing and delivery through Celery workers."""

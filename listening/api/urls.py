"""Listening app routes, mounted under /api/v1/ by spotify_agent/urls.py. Each
subdomain keeps its views and routes in its own module."""

from . import audience, devices, sessions

urlpatterns: list = [
    *audience.urlpatterns,
    *devices.urlpatterns,
    *sessions.urlpatterns,
]

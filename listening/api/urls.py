"""Listening app routes, mounted under /api/v1/ by spotify_agent/urls.py. Each
subdomain keeps its views and routes in its own module."""

urlpatterns: list = []

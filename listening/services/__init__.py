"""Writes of listening sessions, one function per use case, split by subdomain:

- ``sessions``: a session's life and members (create, join, leave with host
  hand-off, end, co-DJs, the host's mute and remove);
- ``playback``: commands, the server-driven track advance, skip votes, radio
  mode and position reports;
- ``common``: the clock, the locked session and membership they share.

Every write takes a row lock on the session (``SELECT … FOR UPDATE``), so the
commands of one session apply one at a time whatever the number of server
processes. The WebSocket handlers, the REST views, the admin and the Celery
tasks all call these functions.
"""

"""Writes of listening sessions, one function per use case, split by subdomain:

- ``sessions``: a session's life and members (create, join, leave with host
  hand-off, end, visibility and invitations, co-DJs, the host's mute and remove);
- ``playback``: commands, the server-driven track advance, buffering waits,
  skip votes, radio mode and position reports;
- ``djs``: the DJ wait list and its rotation (dj mode);
- ``requests``: the audience's track requests and their votes (dj mode);
- ``devices``: a user's players and the transfer of playback between them;
- ``common``: the clock, the locked session and membership they share.

Every write to a session takes a row lock on it (``SELECT … FOR UPDATE``), so
its commands apply one at a time whatever the number of server processes. The
WebSocket handlers, the REST views, the admin and the Celery tasks all call
these functions.
"""

"""Channel-layer group and fan-out topic names. Every name carries the tenant, so no event can be
addressed across tenants by mistake; build names here, never with f-strings at
the call site.

Channels allows ``[A-Za-z0-9._-]`` and fewer than 100 characters in a group name.
"""

from __future__ import annotations


def user_group(*, tenant_id: int, user_id: int) -> str:
    """Every open socket of one user: session revocation and personal events."""
    return f"t{tenant_id}.user.{user_id}"


def room_topic(*, tenant_id: int, room_id: int) -> str:
    """The fan-out topic of one room (``realtime.fanout``): every process with a
    local member of the room subscribes to it once."""
    return f"t{tenant_id}.room.{room_id}"


def playlist_topic(*, tenant_id: int, playlist_id: int) -> str:
    """The fan-out topic of one playlist: its revisions and its presence."""
    return f"t{tenant_id}.playlist.{playlist_id}"


def session_topic(*, tenant_id: int, session_id: int) -> str:
    """The fan-out topic of one listening session: its playback and its members."""
    return f"t{tenant_id}.session.{session_id}"


def playlist_topic_id(topic: str) -> int | None:
    """The playlist id of a ``playlist_topic`` name, None for any other topic."""
    parts = topic.split(".")
    if len(parts) == 3 and parts[1] == "playlist" and parts[2].isdigit():
        return int(parts[2])
    return None


def tenant_group(*, tenant_id: int) -> str:
    """Every open socket of one tenant: tenant-wide system notices."""
    return f"t{tenant_id}.all"


def everyone_group() -> str:
    """Every open socket of every tenant: platform-wide system notices (maintenance)."""
    return "all"

"""A live copy of one playlist over a ``HubClient``: the client side of ``playlist.*``.

``PlaylistSession`` subscribes, keeps the playlist as the server last told it
(``state``, at ``state.revision``), applies each ``playlist.changed`` in
revision order with the same replay code the server uses (``playlists.ot``,
pure Python), and sends edits written against that revision; the server
transforms them against whatever was committed meanwhile and broadcasts the
result, so every session ends with the server's list. After a reconnect it
subscribes again from its revision and the server replays what it missed; a
``resync_required`` answer (too far behind) replaces the copy with the fresh
snapshot it carries. docs/protocol.md, "Playlists", describes the frames.

The application reads ``HubClient.events()`` as usual and hands every frame to
``handle`` (one reader per client).
"""

from __future__ import annotations

import uuid
from typing import Any

from playlists.ot import PlaylistState, apply

from .hub import CLIENT_CONNECTED, HubClient, HubError

RESYNC_REQUIRED = "resync_required"


class PlaylistSession:
    def __init__(self, client: HubClient, playlist_id: int) -> None:
        self.client = client
        self.playlist_id = playlist_id
        self.state: PlaylistState | None = None
        self.tracks: dict[int, dict[str, Any]] = {}
        self.present: list[dict[str, Any]] = []
        self.role: str | None = None
        self.revoked: str | None = None

    @property
    def revision(self) -> int | None:
        return self.state.revision if self.state is not None else None

    async def open(self) -> dict[str, Any]:
        """Subscribe (again): from the copy's revision if there is one, else from a snapshot."""
        content: dict[str, Any] = {"playlist": self.playlist_id}
        if self.state is not None:
            content["revision"] = self.state.revision
        answer = (await self.client.request("playlist.subscribe", content=content, retry=True))["content"]
        self.role = answer.get("role")
        self.present = answer.get("present", [])
        if not answer.get("resumed"):
            self._load(answer)
        return answer

    async def close(self) -> None:
        await self.client.request("playlist.unsubscribe", content={"playlist": self.playlist_id})

    async def edit(self, op: dict[str, Any], *, client_op_id: str | None = None) -> dict[str, Any]:
        """Send one op (or a batch) written against the copy's revision; returns the ack's
        content (``revision``, the transformed ``ops``, ``dropped``, ``noops``,
        ``overridden``). The copy changes when the broadcast arrives, not here.
        Retried on reconnect with the same client op id, so it applies once."""
        content = {
            "playlist": self.playlist_id,
            "base_revision": self.revision or 0,
            "client_op_id": client_op_id or uuid.uuid4().hex,
            "op": op,
        }
        try:
            return (await self.client.request("playlist.op", content=content, retry=True))["content"]
        except HubError as exc:
            if exc.code == RESYNC_REQUIRED and exc.details and "snapshot" in exc.details:
                self._load(exc.details["snapshot"])
            raise

    async def revert(self, revision: int, *, client_op_id: str | None = None) -> dict[str, Any]:
        """Make the playlist what it was at ``revision``, as a new revision; answers like ``edit``."""
        content = {
            "playlist": self.playlist_id,
            "revision": revision,
            "client_op_id": client_op_id or uuid.uuid4().hex,
        }
        return (await self.client.request("playlist.revert", content=content, retry=True))["content"]

    async def handle(self, frame: dict[str, Any]) -> bool:
        """Take one frame from ``events()``; True if it changed the copy."""
        kind = frame.get("type")
        content = frame.get("content") or {}
        if kind == CLIENT_CONNECTED and self.state is not None and self.client.sessions > 1:
            await self.open()
            return False
        if content.get("playlist") != self.playlist_id:
            return False
        if kind == "playlist.changed":
            return await self._changed(frame.get("seq"), content)
        if kind == "playlist.presence":
            self.present = content.get("present", [])
        elif kind == "playlist.access_revoked":
            self.revoked = content.get("reason") or "revoked"
        return False

    async def _changed(self, revision: Any, content: dict[str, Any]) -> bool:
        if self.state is None or not isinstance(revision, int) or revision <= self.state.revision:
            return False
        if revision != self.state.revision + 1:
            # The server delivers revisions in order; a gap means this copy missed
            # some (it was not subscribed): start over from a snapshot.
            self.state = None
            await self.open()
            return True
        for op in content.get("ops", []):
            apply(self.state, op)
        self.state.revision = revision
        self.tracks.update({int(key): value for key, value in (content.get("tracks") or {}).items()})
        return True

    def _load(self, snapshot: dict[str, Any]) -> None:
        items = snapshot.get("items", [])
        self.tracks.update({item["track_id"]: item["track"] for item in items if item.get("track")})
        self.state = PlaylistState(
            title=snapshot.get("title", ""),
            description=snapshot.get("description", ""),
            items=[{key: item[key] for key in ("item_id", "track_id", "added_by", "added_at")} for item in items],
            revision=snapshot["revision"],
        )

    def describe(self) -> list[str]:
        """The copy as lines: the title and revision, then each item with its track."""
        if self.state is None:
            return ["(not loaded)"]
        lines = [f"{self.state.title} (revision {self.state.revision})"]
        for index, item in enumerate(self.state.items):
            track = self.tracks.get(item["track_id"]) or {}
            name = f"{track.get('artist', '?')} - {track.get('title', item['track_id'])}"
            lines.append(f"{index:3d}. {name}")
        return lines

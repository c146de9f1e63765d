"""Choices and limits of the catalog, playlists, their editing and suggestions.

Each limit says why it has its value; docs/protocol.md ("Playlists") and
docs/api.md ("Playlists") quote them to clients.
"""

from django.db import models


class Visibility(models.TextChoices):
    """Who besides its collaborators may use a playlist: ``private`` nobody,
    ``public`` every user of the tenant as a viewer, ``collaborative`` every user
    of the tenant as an editor (``playlists.selectors.playlist_role``)."""

    PRIVATE = "private", "Private"
    COLLABORATIVE = "collaborative", "Collaborative"
    PUBLIC = "public", "Public"


class PlaylistKind(models.TextChoices):
    """``queue``: the shared queue of a listening session (``listening``), edited
    with the same engine; its collaborators follow the session's members, and it
    is never listed, shared or deleted on its own."""

    PLAYLIST = "playlist", "Playlist"
    QUEUE = "queue", "Session queue"


class CollaboratorRole(models.TextChoices):
    """A user's role on one playlist; each includes the ones after it."""

    OWNER = "owner", "Owner"
    EDITOR = "editor", "Editor"
    VIEWER = "viewer", "Viewer"


COLLABORATOR_RANK = {CollaboratorRole.VIEWER: 0, CollaboratorRole.EDITOR: 1, CollaboratorRole.OWNER: 2}


class OpKind(models.TextChoices):
    """What produced an op-log entry."""

    EDIT = "edit", "Edit"
    REVERT = "revert", "Revert"


class SimilarityKind(models.TextChoices):
    """How a suggestion pair was found: tracks that occur together, or tracks that sound alike."""

    CO_OCCURRENCE = "co_occurrence", "Co-occurrence"
    AUDIO = "audio", "Audio features"


TRACK_URI_MAX_LENGTH = 200
TRACK_TEXT_MAX_LENGTH = 300
PLAYLIST_TITLE_MAX_LENGTH = 200
PLAYLIST_DESCRIPTION_MAX_LENGTH = 2000
CLIENT_OP_ID_MAX_LENGTH = 64
SHARE_TOKEN_PREFIX_LENGTH = 8

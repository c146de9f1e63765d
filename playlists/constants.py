"""Choices and limits of the catalog and playlists."""

from django.db import models


class Visibility(models.TextChoices):
    PRIVATE = "private", "Private"
    COLLABORATIVE = "collaborative", "Collaborative"
    PUBLIC = "public", "Public"


TRACK_URI_MAX_LENGTH = 200
PLAYLIST_TITLE_MAX_LENGTH = 200

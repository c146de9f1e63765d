"""Track catalog and collaborative playlists."""

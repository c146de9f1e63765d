"""REST adapters of the playlists app: the track catalog (and, later, playlists)."""

"""Writes of the playlists app, a package split by subdomain: one module per area
(``catalog`` for the track catalog), each saying in its docstring what it owns."""

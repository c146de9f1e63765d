"""Chat: rooms (public, private, direct), their members, messages, read markers and search.

Separate from ``realtime`` (the WebSocket hub: transport, envelope, dispatch) so
that the hub stays a protocol layer that chat, playlists, listening sessions and
notifications plug into alike.
"""

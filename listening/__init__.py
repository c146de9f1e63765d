"""Listening sessions and streaming; for now, streaming quality adaptation
(``listening.quality``, docs/protocol.md "Streaming quality")."""

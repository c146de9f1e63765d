"""Listening sessions (friends listening together, a DJ and an audience) and
streaming quality adaptation; docs/protocol.md "Listening sessions" and
"Streaming quality"."""

"""REST adapters of chat (docs/api.md, "Chat")."""

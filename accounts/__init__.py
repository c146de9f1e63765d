"""Tenants, users, memberships, roles and API clients, and how they authenticate.

A separate app because identity is used by every other app (chat, playlists,
notifications, monitoring) and must not depend on any of them. Tokens are
issued by simplejwt; this app adds the tenant claim, refresh-reuse detection,
WebSocket tickets and API-client keys (docs/operations.md, "Authentication").
"""

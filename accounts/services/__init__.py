"""Use cases of the identity layer, split by subdomain.

- ``tokens``: access-token validation, refresh rotation with reuse detection,
  WebSocket tickets;
- ``api_clients``: partner keys;
- ``users``: activation and deactivation (closes open sockets);
- ``auth``: password login with lockout and audit;
- ``network``: the client IP behind proxies, one rule for every caller.
"""

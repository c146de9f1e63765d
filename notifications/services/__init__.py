"""Notification services, one module per subdomain: ``sending`` (the one way to
send), ``inbox`` (reading and acking), ``preferences`` (what a user wants and
where their devices are) and ``delivery`` (the outbox's journey to providers)."""

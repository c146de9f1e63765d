"""The real-time hub: one WebSocket endpoint, its authentication, the envelope
and error codes (``protocol.py``) and the handler registry that every app's
``handlers.py`` plugs a message family into. docs/protocol.md describes it.
"""

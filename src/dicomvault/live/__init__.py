"""Live events (DESIGN.md data flow, ingest step 5): "an instance arrived", for browsers to refresh.

Events carry a tenant and UIDs only — never a name, an ID or a date — so that the SSE stream can
be filtered by tenant and every patient detail is still read through the scoped, audited query
path. ``EventBus`` is the interface; ``InProcessEventBus`` serves one process, ``RedisEventBus``
(pub/sub) every replica; ``bootstrap.py`` picks one from the settings.
"""

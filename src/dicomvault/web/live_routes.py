"""Server-Sent Events (WHATWG HTML, "Server-sent events"): instances arriving, for live pages.

``GET /api/v1/events`` streams ``text/event-stream``. It starts with ``retry:`` (how long the
browser waits before reconnecting) and a ``ready`` event saying whether the client missed events
since the position it last saw (``Last-Event-ID``, or ``since`` for the first connection, which
the page was rendered at). Then one ``instance`` event per instance stored in the principal's
tenants — tenant and UIDs only; pages re-query through the scoped query path for anything
shown — and a comment line as heartbeat when quiet. A stream ends after ``live_stream_seconds``
(so a graceful shutdown never waits long) or with a ``resync`` event when the subscriber fell
behind; the browser then reconnects. Event IDs are positions in the numbering of the principal's
own tenants (live/bus.py): opaque, and unmoved by other tenants' activity.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from dicomvault.live.bus import EventBus, SubscriptionDropped
from dicomvault.web.context import scope_of, services_of

router = APIRouter(tags=["live events"])

RETRY_MILLISECONDS = 3000
_READY_SECONDS = 5.0
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
    "X-Content-Type-Options": "nosniff",
}


def sse_event(name: str, data: object, event_id: str | None = None) -> bytes:
    """One event: ``id``, ``event`` and a single-line JSON ``data`` field."""
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines += [f"event: {name}", f"data: {orjson.dumps(data).decode()}"]
    return ("\n".join(lines) + "\n\n").encode()


@router.get(
    "/api/v1/events",
    summary="Live events (Server-Sent Events): instances stored in the caller's tenants",
    response_class=StreamingResponse,
)
async def live_events(
    request: Request, since: Annotated[str | None, Query(max_length=64)] = None
) -> StreamingResponse:
    services = services_of(request)
    tenants = scope_of(request).tenants
    last_seen = request.headers.get("last-event-id") or since
    settings = services.settings
    stream = _stream(
        services.events,
        tenants,
        last_seen,
        settings.live_heartbeat_seconds,
        settings.live_stream_seconds,
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers=_HEADERS)


async def _stream(
    bus: EventBus,
    tenants: frozenset[str],
    last_seen: str | None,
    heartbeat: float,
    lifetime: float,
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    with bus.subscribe(tenants) as subscription:
        yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
        # Redis: not "ready" before the pattern subscription is active and the tenants' marks
        # are read, or events could be lost unnoticed. Not ready in time (Redis down): the
        # client re-queries now and reconnects after the retry delay.
        if not await bus.ready(subscription, _READY_SECONDS):
            yield sse_event("ready", {"missed": True})
            return
        # Positions cover the principal's own tenants only: another tenant's ingests never
        # move them, nor make "missed" true.
        position = subscription.position
        yield sse_event("ready", {"missed": last_seen != position}, position)
        deadline = loop.time() + lifetime
        while (remaining := deadline - loop.time()) > 0:
            try:
                delivery = await subscription.next_event(min(heartbeat, remaining))
            except SubscriptionDropped:
                yield sse_event("resync", {})
                return
            if delivery is None:
                yield b": heartbeat\n\n"
            else:
                yield sse_event("instance", delivery.event.to_dict(), delivery.position)

"""Live events across replicas: Redis pub/sub, one channel per tenant.

Publishing is one ``PUBLISH dicomvault:live:{tenant}``, sent by a background task from a bounded
outbox so that ingest never waits for Redis. Each process holds a single pattern
subscription (``PSUBSCRIBE dicomvault:live:*``), started with the first local subscriber, and fans
the messages out to its own subscribers through the same bounded queues as the in-process bus —
so a thousand open browser tabs cost one Redis connection per replica, not a thousand.

Pub/sub delivers at most once: while the connection is down, events are lost. The reader then
drops every local subscriber, whose browsers reconnect and re-query; that is the resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dicomvault.live.bus import LocalFanout, Subscription
from dicomvault.live.events import InstanceEvent, InvalidEvent

log = logging.getLogger("dicomvault.live")

DEFAULT_PREFIX = "dicomvault:live:"
_MAX_BACKOFF = 5.0


class RedisEventBus:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        queue_size: int = 256,
        prefix: str = DEFAULT_PREFIX,
        publish_timeout: float = 2.0,
        outbox_size: int = 10_000,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._publish_timeout = publish_timeout
        self._fanout = LocalFanout(queue_size)
        self._reader: asyncio.Task[None] | None = None
        # Ingest hands events over without waiting for Redis; one task publishes them in order.
        self._outbox: asyncio.Queue[InstanceEvent] = asyncio.Queue(outbox_size)
        self._publisher: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisEventBus:
        """A bus with its own connection pool, e.g. ``redis://127.0.0.1:6379/0``."""
        client: aioredis.Redis = aioredis.Redis.from_url(url)
        return cls(client, **options)

    def channel(self, tenant: str) -> str:
        return self._prefix + tenant

    async def publish(self, event: InstanceEvent) -> None:
        """Queue the event for PUBLISH and return at once: a slow or absent Redis never slows
        ingest down. A full outbox (Redis away for long) drops the event, with a warning."""
        if self._closed:
            return
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.get_running_loop().create_task(self._publish_forever())
        try:
            self._outbox.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("live event dropped: the Redis outbox is full")

    async def flush(self, within: float = 5.0) -> None:
        """Until every queued event was handed to Redis (or given up on)."""
        async with asyncio.timeout(within):
            await self._outbox.join()

    async def _publish_forever(self) -> None:
        while True:
            event = await self._outbox.get()
            try:
                async with asyncio.timeout(self._publish_timeout):
                    await self._client.publish(self.channel(event.tenant), event.to_json())
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("live event not published: %s", type(exc).__name__)
            finally:
                self._outbox.task_done()

    def subscribe(self, tenants: Iterable[str]) -> Subscription:
        if self._closed:
            raise RuntimeError("the event bus is closed")
        subscription = self._fanout.subscribe(tenants)
        if self._reader is None or self._reader.done():
            self._listening.clear()
            self._reader = asyncio.get_running_loop().create_task(self._read_forever())
        return subscription

    async def wait_listening(self, within: float = 5.0) -> None:
        """Until this process's pattern subscription is active (events before it are not seen)."""
        async with asyncio.timeout(within):
            await self._listening.wait()

    async def wait_ready(self, within: float) -> bool:
        try:
            await self.wait_listening(within)
        except TimeoutError:
            return False
        return True

    @property
    def position(self) -> str:
        return self._fanout.position

    @property
    def subscriber_count(self) -> int:
        return self._fanout.subscriber_count

    async def close(self) -> None:
        self._closed = True
        if self._publisher is not None:
            with contextlib.suppress(TimeoutError):
                await self.flush(self._publish_timeout)
        for task in (self._publisher, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._fanout.drop_all()
        await self._client.aclose()

    async def _read_forever(self) -> None:
        backoff = 0.1
        while not self._closed:
            try:
                await self._read_once()
            except (RedisError, OSError) as exc:
                log.warning("live events: Redis subscription lost (%s)", type(exc).__name__)
            self._listening.clear()
            # Whatever was published meanwhile is lost to the local subscribers: make them resync.
            self._fanout.drop_all()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _read_once(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(self._prefix + "*")
            self._listening.set()
            async for message in pubsub.listen():
                self._deliver(message)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _deliver(self, message: dict[str, Any]) -> None:
        if message.get("type") != "pmessage":
            return
        channel = message.get("channel")
        channel = channel.decode("utf-8", "replace") if isinstance(channel, bytes) else channel
        try:
            event = InstanceEvent.from_json(message.get("data") or b"")
        except InvalidEvent:
            log.warning("live events: ignored a malformed message")
            return
        if channel != self.channel(event.tenant):
            log.warning("live events: ignored a message on the wrong channel")
            return
        self._fanout.deliver(event)

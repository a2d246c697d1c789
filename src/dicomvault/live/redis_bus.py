"""Live events across replicas: Redis pub/sub, one channel per tenant, numbered in Redis.

Publishing is one script run — count the event in its tenant's numbering (a hash shared by every
replica) and ``PUBLISH dicomvault:live:{tenant}`` the numbered event — sent by a background task
from a bounded outbox so that ingest never waits for Redis. Each process holds a single pattern
subscription (``PSUBSCRIBE dicomvault:live:*``), started with the first local subscriber, and fans
the messages out to its own subscribers through the same bounded queues as the in-process bus —
so a thousand open browser tabs cost one Redis connection per replica, not a thousand.

Because the numbering lives in Redis, a position means the same on every replica: a browser
that reconnects to another replica behind the load balancer need not re-query when nothing
happened in its tenants. Each tenant's numbering is its own (see live/bus.py), so nobody's
positions move with another tenant's ingests.

Pub/sub delivers at most once: while a reader's connection is down, events are lost to it. The
reader then drops every local subscriber, whose browsers reconnect and re-query; their positions
no longer match, for the numbering went on in Redis. An event that could not be published at all
(Redis away, the outbox full) was never numbered: its tenant is given a new epoch as soon as Redis
answers again, and every replica is told to drop that tenant's subscribers. That is the resync.
A process that ended abruptly may have committed an instance whose event was still in its
outbox, or not yet in it: so every process starts by renumbering every tenant (``start``), and
every live view resynchronises once per replica start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dicomvault.config import is_valid_tenant_name
from dicomvault.live.bus import (
    UNKNOWN_POSITION,
    LocalFanout,
    Mark,
    Sequenced,
    Subscription,
    new_epoch,
    position_of,
)
from dicomvault.live.events import InstanceEvent, InvalidEvent

log = logging.getLogger("dicomvault.live")

DEFAULT_PREFIX = "dicomvault:live:"
_MAX_BACKOFF = 5.0
_RENUMBER_RETRY_SECONDS = 1.0
_EPOCH = re.compile(r"[0-9a-f]{1,32}")
_SEQUENCE = re.compile(r"[1-9][0-9]{0,17}")

# The numbering hash: field "{tenant}" holds the tenant's sequence number, "!{tenant}" its epoch
# ("!" is never part of a tenant name, nor of a channel the pattern subscription delivers as an
# event). One key, so that losing it (a Redis restart without persistence, an eviction) loses
# every epoch with every number, and fresh epochs follow.
#
# KEYS: the hash, the tenant's channel. ARGV: tenant, an epoch for a tenant not numbered yet, the
# event's JSON. Counting and publishing in one script keeps them in one order and all or nothing:
# every number has its message.
_PUBLISH_SCRIPT = """
local epoch = redis.call('HGET', KEYS[1], '!' .. ARGV[1])
if not epoch then
  epoch = ARGV[2]
  redis.call('HSET', KEYS[1], '!' .. ARGV[1], epoch, ARGV[1], 0)
end
local sequence = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('PUBLISH', KEYS[2], epoch .. ' ' .. sequence .. ' ' .. ARGV[3])
return sequence
"""

# KEYS: the hash. ARGV: an epoch for tenants not numbered yet, then the tenants. Returns epoch and
# sequence number of each tenant in turn. A tenant not numbered yet is numbered now, so that a
# later loss of the hash (new epochs then) never brings back a position handed out before it.
_MARKS_SCRIPT = """
local reply = {}
for i = 2, #ARGV do
  local tenant = ARGV[i]
  local epoch = redis.call('HGET', KEYS[1], '!' .. tenant)
  if not epoch then
    epoch = ARGV[1]
    redis.call('HSET', KEYS[1], '!' .. tenant, epoch, tenant, 0)
  end
  reply[#reply + 1] = epoch
  reply[#reply + 1] = redis.call('HGET', KEYS[1], tenant) or '0'
end
return reply
"""

# KEYS: the hash, the renumbering channel. ARGV: tenant, its new epoch.
_RENUMBER_SCRIPT = """
redis.call('HSET', KEYS[1], '!' .. ARGV[1], ARGV[2], ARGV[1], 0)
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
"""


# KEYS: the hash, the renumbering channel. ARGV: the new epoch. Every numbered tenant at once.
_RENUMBER_ALL_SCRIPT = """
local fields = redis.call('HKEYS', KEYS[1])
local count = 0
for _, field in ipairs(fields) do
  if string.sub(field, 1, 1) == '!' then
    local tenant = string.sub(field, 2)
    redis.call('HSET', KEYS[1], field, ARGV[1], tenant, 0)
    redis.call('PUBLISH', KEYS[2], tenant)
    count = count + 1
  end
end
return count
"""


def read_message(payload: bytes | str) -> Sequenced:
    """A message as the publish script sends it: ``{epoch} {sequence} {event JSON}``.

    Raises :class:`InvalidEvent` for anything else (an unnumbered event included: it cannot be
    placed in its tenant's numbering).
    """
    data = payload.encode() if isinstance(payload, str) else payload
    parts = data.split(b" ", 2)
    if len(parts) != 3:
        raise InvalidEvent("not a numbered event")
    epoch, sequence = (part.decode("ascii", "replace") for part in parts[:2])
    if not _EPOCH.fullmatch(epoch) or not _SEQUENCE.fullmatch(sequence):
        raise InvalidEvent("epoch or sequence number")
    return Sequenced(InstanceEvent.from_json(parts[2]), epoch, int(sequence))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


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
        self._numbering_key = prefix + "!numbering"
        self._renumbered_channel = prefix + "!renumbered"
        self._publish_script = client.register_script(_PUBLISH_SCRIPT)
        self._marks_script = client.register_script(_MARKS_SCRIPT)
        self._renumber_script = client.register_script(_RENUMBER_SCRIPT)
        self._renumber_all_script = client.register_script(_RENUMBER_ALL_SCRIPT)
        self._publish_timeout = publish_timeout
        self._fanout = LocalFanout(queue_size)
        self._reader: asyncio.Task[None] | None = None
        # Ingest hands events over without waiting for Redis; one task publishes them in order.
        self._outbox: asyncio.Queue[InstanceEvent] = asyncio.Queue(outbox_size)
        self._publisher: asyncio.Task[None] | None = None
        # Tenants with an event that may not have been numbered: to be given a new epoch.
        self._lost: set[str] = set()
        self._all_lost = False  # every tenant, as at process start
        self._none_lost = asyncio.Event()
        self._none_lost.set()
        self._listening = asyncio.Event()
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisEventBus:
        """A bus with its own connection pool, e.g. ``redis://127.0.0.1:6379/0``."""
        client: aioredis.Redis = aioredis.Redis.from_url(url)
        return cls(client, **options)

    def channel(self, tenant: str) -> str:
        return self._prefix + tenant

    async def start(self) -> None:
        """Renumber every tenant (events of an earlier run may be lost), from the background
        task: a Redis that is away delays it, never the start."""
        self._all_lost = True
        self._none_lost.clear()
        self._ensure_publisher()

    def _ensure_publisher(self) -> None:
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.get_running_loop().create_task(self._publish_forever())

    async def publish(self, event: InstanceEvent) -> None:
        """Queue the event for publishing and return at once: a slow or absent Redis never slows
        ingest down. A full outbox (Redis away for long) drops the event, with a warning, and
        its tenant is renumbered once Redis answers."""
        if self._closed:
            return
        self._ensure_publisher()
        try:
            self._outbox.put_nowait(event)
        except asyncio.QueueFull:
            self._note_lost(event.tenant)
            log.warning("live event dropped: the Redis outbox is full")

    async def flush(self, within: float = 5.0) -> None:
        """Until every queued event was handed to Redis (or given up on) and every tenant whose
        event was given up on was renumbered."""
        async with asyncio.timeout(within):
            await self._outbox.join()
            await self._none_lost.wait()

    async def _publish_forever(self) -> None:
        while True:
            await self._renumber_lost()
            retry = _RENUMBER_RETRY_SECONDS if self._lost or self._all_lost else None
            try:
                event = await asyncio.wait_for(self._outbox.get(), retry)
            except TimeoutError:
                continue
            try:
                async with asyncio.timeout(self._publish_timeout):
                    await self._publish_script(
                        keys=[self._numbering_key, self.channel(event.tenant)],
                        args=[event.tenant, new_epoch(), event.to_json()],
                    )
            except (RedisError, OSError, TimeoutError) as exc:
                self._note_lost(event.tenant)
                log.warning("live event not published: %s", type(exc).__name__)
            finally:
                self._outbox.task_done()

    def _note_lost(self, tenant: str) -> None:
        self._lost.add(tenant)
        self._none_lost.clear()

    async def _renumber_lost(self) -> None:
        """A new epoch for each tenant whose event may be lost, announced to every replica:
        the positions handed out so far no longer match, the live subscribers resynchronise.

        What is renumbered is taken off the list before the script runs, so that a tenant losing
        another event meanwhile is listed again (and renumbered again, after it); what could not
        be renumbered goes back on the list for the next round.
        """
        if self._all_lost:
            self._all_lost, covered, self._lost = False, self._lost, set()
            if not await self._run_renumbering(self._renumber_all_script, [new_epoch()]):
                self._all_lost = True
                self._lost |= covered
                return  # Redis still away: the next round tries again
        while self._lost:
            tenant = min(self._lost)
            self._lost.discard(tenant)
            if not await self._run_renumbering(self._renumber_script, [tenant, new_epoch()]):
                self._lost.add(tenant)
                return
        self._none_lost.set()

    async def _run_renumbering(self, script: Any, args: list[str]) -> bool:
        try:
            async with asyncio.timeout(self._publish_timeout):
                await script(keys=[self._numbering_key, self._renumbered_channel], args=args)
        except (RedisError, OSError, TimeoutError):
            return False
        return True

    def subscribe(self, tenants: Iterable[str]) -> Subscription:
        if self._closed:
            raise RuntimeError("the event bus is closed")
        subscription = self._fanout.subscribe(tenants)
        if self._reader is None or self._reader.done():
            self._listening.clear()
            self._reader = asyncio.get_running_loop().create_task(self._read_forever())
        return subscription

    async def wait_listening(self, within: float = 5.0) -> None:
        """Until Redis confirmed this process's pattern subscription (earlier events are not
        seen)."""
        async with asyncio.timeout(within):
            await self._listening.wait()

    async def ready(self, subscription: Subscription, within: float) -> bool:
        try:
            async with asyncio.timeout(within):
                await self._listening.wait()
                # Read after the pattern subscription is active: every event numbered later
                # reaches the subscription.
                marks = await self._read_marks(subscription.tenants)
        except (TimeoutError, RedisError, OSError):
            return False
        subscription.start(marks)
        return True

    async def position(self, tenants: Iterable[str]) -> str:
        tenants = frozenset(tenants)
        try:
            marks = await self._read_marks(tenants)
        except (TimeoutError, RedisError, OSError):
            return UNKNOWN_POSITION
        return position_of(marks, tenants)

    async def _read_marks(self, tenants: frozenset[str]) -> dict[str, Mark]:
        ordered = sorted(tenants)
        if not ordered:
            return {}
        async with asyncio.timeout(self._publish_timeout):
            reply = await self._marks_script(
                keys=[self._numbering_key], args=[new_epoch(), *ordered]
            )
        values = [_text(value) for value in reply]
        if len(values) != 2 * len(ordered):
            raise RedisError("unexpected reply to the marks script")
        return {tenant: (values[2 * n], int(values[2 * n + 1])) for n, tenant in enumerate(ordered)}

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
        pubsub = self._client.pubsub()
        try:
            await pubsub.psubscribe(self._prefix + "*")
            async for message in pubsub.listen():
                if message.get("type") == "psubscribe":
                    self._listening.set()  # Redis's confirmation: from now on nothing is missed
                else:
                    self._deliver(message)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _deliver(self, message: dict[str, Any]) -> None:
        if message.get("type") != "pmessage":
            return
        channel = _text(message.get("channel"))
        data = message.get("data") or b""
        if channel == self._renumbered_channel:
            tenant = _text(data)
            if is_valid_tenant_name(tenant):
                self._fanout.drop_tenant(tenant)
            return
        try:
            item = read_message(data)
        except InvalidEvent:
            log.warning("live events: ignored a malformed message")
            return
        if channel != self.channel(item.event.tenant):
            log.warning("live events: ignored a message on the wrong channel")
            return
        self._fanout.deliver(item)

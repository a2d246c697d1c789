"""The ``EventBus`` interface and the local fan-out every implementation delivers through.

A subscriber gets a bounded queue. Publishing never waits for a subscriber: when one's queue is
full it is dropped — its queue is emptied and it is told so — instead of slowing ingest down or
growing without bound. A dropped subscriber has missed events; the SSE endpoint then ends the
stream and the browser reconnects and re-queries, which is the resynchronisation.

Positions make reconnects cheap. Each process numbers the events it delivers (any tenant) and
names its numbering with a random epoch, renewed whenever events may have been lost (a Redis
reconnect). A client that reconnects with the position it last saw (SSE ``Last-Event-ID``) and
finds the same position has missed nothing and need not re-query; any other answer — another
replica, a restart, events meanwhile — means "re-query". Never wrong, at worst one extra query.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from dicomvault.live.events import InstanceEvent


class SubscriptionDropped(Exception):
    """The subscriber fell behind (or the bus closed or lost its connection): resynchronise."""


@dataclass(frozen=True)
class Delivery:
    """An event and the position of the bus right after it (``epoch-sequence``)."""

    position: str
    event: InstanceEvent


class _Dropped:
    """Queue marker: the subscription ended; nothing after it."""


_DROPPED = _Dropped()


class Subscription:
    """Events of some tenants, in publication order; a context manager that unsubscribes."""

    def __init__(
        self, fanout: LocalFanout, tenants: frozenset[str], queue_size: int, position: str
    ) -> None:
        self.tenants = tenants
        # The bus position when the subscription began: every later event is delivered.
        self.position = position
        self._fanout = fanout
        self._queue: asyncio.Queue[Delivery | _Dropped] = asyncio.Queue(queue_size)
        self.dropped = False

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fanout.remove(self)

    async def next_event(self, within: float) -> Delivery | None:
        """The next delivery, or ``None`` after ``within`` seconds without one.

        Raises :class:`SubscriptionDropped` once the subscription was dropped.
        """
        try:
            item = await asyncio.wait_for(self._queue.get(), within)
        except TimeoutError:
            return None
        if isinstance(item, _Dropped):
            self._queue.put_nowait(item)  # later calls say the same
            raise SubscriptionDropped("the subscription was dropped")
        return item

    def offer(self, delivery: Delivery) -> bool:
        """Queue ``delivery`` without waiting; False (and dropped) when the queue is full."""
        if self.dropped:
            return False
        try:
            self._queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self.drop()
            return False
        return True

    def drop(self) -> None:
        self.dropped = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_DROPPED)


class LocalFanout:
    """The subscribers of one process; ``deliver`` is synchronous and never blocks."""

    def __init__(self, queue_size: int) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._epoch = uuid.uuid4().hex[:12]
        self._sequence = 0

    @property
    def position(self) -> str:
        return f"{self._epoch}-{self._sequence}"

    def subscribe(self, tenants: Iterable[str]) -> Subscription:
        subscription = Subscription(self, frozenset(tenants), self.queue_size, self.position)
        self._subscribers.add(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def deliver(self, event: InstanceEvent) -> None:
        self._sequence += 1
        delivery = Delivery(self.position, event)
        for subscription in list(self._subscribers):
            if event.tenant in subscription.tenants and not subscription.offer(delivery):
                self._subscribers.discard(subscription)

    def drop_all(self) -> None:
        """End every subscription and start a new epoch: what was missed is unknown."""
        for subscription in list(self._subscribers):
            subscription.drop()
        self._subscribers.clear()
        self._epoch = uuid.uuid4().hex[:12]
        self._sequence = 0


class EventBus(Protocol):
    """Publish "instance arrived" events; subscribe to those of some tenants.

    Implementations: ``InProcessEventBus`` (one process), ``RedisEventBus`` (all replicas).
    ``publish`` never raises for a delivery problem and never waits for subscribers: the
    instance is already committed, and live updates are a convenience, not a record.
    """

    async def publish(self, event: InstanceEvent) -> None: ...

    def subscribe(self, tenants: Iterable[str]) -> Subscription: ...

    async def wait_ready(self, within: float) -> bool:
        """True once subscriptions made so far receive every later event (Redis: the pattern
        subscription is active); False if that did not happen ``within`` seconds."""
        ...

    @property
    def position(self) -> str:
        """This process's position now (see the module docstring)."""
        ...

    async def close(self) -> None: ...

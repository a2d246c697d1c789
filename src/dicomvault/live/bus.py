"""The ``EventBus`` interface and the local fan-out every implementation delivers through.

A subscriber gets a bounded queue. Publishing never waits for a subscriber: when one's queue is
full it is dropped — its queue is emptied and it is told so — instead of slowing ingest down or
growing without bound. A dropped subscriber has missed events; the SSE endpoint then ends the
stream and the browser reconnects and re-queries, which is the resynchronisation.

Positions make reconnects cheap, and they are per tenant, because tenants must not learn of each
other's activity (DESIGN.md, security model). Every tenant has its own numbering: an *epoch* (a
random name, renewed whenever that tenant's events may have been lost) and a *sequence number*
counting its events. A subscriber's position is a digest of the epochs and sequence numbers of
its own tenants and of nothing else — opaque to the client, and unmoved by any other tenant's
events. A client that reconnects with the position it last saw (SSE ``Last-Event-ID``) and finds
the same position has missed nothing and need not re-query; any other answer means "re-query".
Never wrong, at worst one extra query.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from dicomvault.live.events import InstanceEvent

# A tenant's place in its numbering: (epoch, sequence number of its last event).
Mark = tuple[str, int]
# What a client is told when the bus cannot say where it is (Redis unreachable): it matches no
# position, so whoever comes back with it re-queries.
UNKNOWN_POSITION = ""


def new_epoch() -> str:
    """A fresh epoch name: a numbering no earlier position can belong to."""
    return secrets.token_hex(8)


def position_of(marks: Mapping[str, Mark], tenants: Iterable[str]) -> str:
    """The opaque position of a subscriber of ``tenants``: a digest of those tenants' marks only.

    A tenant without a mark is at sequence 0 of no epoch. The tenant names go into the digest
    too, so a principal given another tenant meanwhile does not find its old position again.
    """
    digest = hashlib.sha256()
    for tenant in sorted(set(tenants)):
        epoch, sequence = marks.get(tenant, ("", 0))
        digest.update(f"{tenant} {epoch} {sequence}\n".encode())
    return digest.hexdigest()[:32]


class SubscriptionDropped(Exception):
    """The subscriber fell behind (or the bus closed or lost its connection): resynchronise."""


@dataclass(frozen=True)
class Sequenced:
    """An event and its place in its tenant's numbering."""

    event: InstanceEvent
    epoch: str
    sequence: int


@dataclass(frozen=True)
class Delivery:
    """An event and the subscriber's position right after it."""

    position: str
    event: InstanceEvent


class _Dropped:
    """Queue marker: the subscription ended; nothing after it."""


_DROPPED = _Dropped()


class Subscription:
    """Events of some tenants, in publication order; a context manager that unsubscribes.

    It places each event it hands out in its tenants' numbering, starting from the marks it was
    started at (``EventBus.ready``). An event of another epoch than the one it knows for that
    tenant, or one that skips a sequence number, means events were lost: the subscription is
    dropped, and its client resynchronises.
    """

    def __init__(self, fanout: LocalFanout, tenants: frozenset[str], queue_size: int) -> None:
        self.tenants = tenants
        self._fanout = fanout
        self._queue: asyncio.Queue[Sequenced | _Dropped] = asyncio.Queue(queue_size)
        self._marks: dict[str, Mark] | None = None
        self.dropped = False

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fanout.remove(self)

    def start(self, marks: Mapping[str, Mark]) -> None:
        """Begin at ``marks`` (the bus's marks of this subscription's tenants, read after the
        subscription began receiving): every later event is delivered and counted from here."""
        self._marks = {tenant: marks[tenant] for tenant in self.tenants if tenant in marks}

    @property
    def started(self) -> bool:
        return self._marks is not None

    @property
    def position(self) -> str:
        """This subscriber's position: where its tenants were after the last event handed out."""
        if self._marks is None:
            return UNKNOWN_POSITION
        return position_of(self._marks, self.tenants)

    async def next_event(self, within: float) -> Delivery | None:
        """The next delivery, or ``None`` after ``within`` seconds without one.

        Raises :class:`SubscriptionDropped` once the subscription was dropped, or when an event
        cannot be placed after the last one (lost events, or a subscription never started).
        """
        try:
            item = await asyncio.wait_for(self._queue.get(), within)
        except TimeoutError:
            return None
        if isinstance(item, _Dropped):
            self._queue.put_nowait(item)  # later calls say the same
            raise SubscriptionDropped("the subscription was dropped")
        if not self._advance(item):
            self.close()
            self.drop()
            raise SubscriptionDropped("events were lost")
        return Delivery(self.position, item.event)

    def _advance(self, item: Sequenced) -> bool:
        """Count ``item`` in its tenant's mark; False when it does not follow from the mark."""
        if self._marks is None:
            return False
        tenant = item.event.tenant
        epoch, sequence = self._marks.get(tenant, ("", 0))
        if item.epoch != epoch or item.sequence > sequence + 1:
            return False
        # An older number is an event from just before the start: delivered, already counted.
        self._marks[tenant] = (epoch, max(sequence, item.sequence))
        return True

    def offer(self, item: Sequenced) -> bool:
        """Queue ``item`` without waiting; False (and dropped) when the queue is full."""
        if self.dropped:
            return False
        try:
            self._queue.put_nowait(item)
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

    def subscribe(self, tenants: Iterable[str]) -> Subscription:
        subscription = Subscription(self, frozenset(tenants), self.queue_size)
        self._subscribers.add(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def deliver(self, item: Sequenced) -> None:
        tenant = item.event.tenant
        for subscription in list(self._subscribers):
            if tenant in subscription.tenants and not subscription.offer(item):
                self._subscribers.discard(subscription)

    def drop_tenant(self, tenant: str) -> None:
        """End the subscriptions that include ``tenant``: its events may have been lost."""
        for subscription in list(self._subscribers):
            if tenant in subscription.tenants:
                subscription.drop()
                self._subscribers.discard(subscription)

    def drop_all(self) -> None:
        """End every subscription: what was missed is unknown."""
        for subscription in list(self._subscribers):
            subscription.drop()
        self._subscribers.clear()


class EventBus(Protocol):
    """Publish "instance arrived" events; subscribe to those of some tenants.

    Implementations: ``InProcessEventBus`` (one process), ``RedisEventBus`` (all replicas).
    ``publish`` never raises for a delivery problem and never waits for subscribers: the
    instance is already committed, and live updates are a convenience, not a record.
    """

    async def start(self) -> None:
        """At process start, before serving: make the positions of every tenant stale when
        events of an earlier run may be lost (it may have crashed between an ingest's commit
        and the event's publishing), so that every live view resynchronises once."""
        ...

    async def publish(self, event: InstanceEvent) -> None: ...

    def subscribe(self, tenants: Iterable[str]) -> Subscription: ...

    async def ready(self, subscription: Subscription, within: float) -> bool:
        """Start ``subscription``: True once it receives every later event and knows its
        position (Redis: the pattern subscription is active and its tenants' marks were read);
        False if that did not happen ``within`` seconds. Read events only after True."""
        ...

    async def position(self, tenants: Iterable[str]) -> str:
        """The position of a subscriber of ``tenants`` now (see the module docstring), or
        :data:`UNKNOWN_POSITION` when the bus cannot tell."""
        ...

    async def close(self) -> None: ...

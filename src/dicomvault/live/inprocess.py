"""Live events inside one process (the embedded default): asyncio queues, nothing else.

Every tenant is numbered in this process's epoch (named afresh each time the bus is built, so a
restart makes every earlier position stale) with a sequence number of its own.
"""

from __future__ import annotations

from collections.abc import Iterable

from dicomvault.live.bus import LocalFanout, Mark, Sequenced, Subscription, new_epoch, position_of
from dicomvault.live.events import InstanceEvent


class InProcessEventBus:
    """Delivers to the subscribers of this process; call it from the event loop they wait on."""

    def __init__(self, queue_size: int = 256) -> None:
        self._fanout = LocalFanout(queue_size)
        self._epoch = new_epoch()
        self._sequences: dict[str, int] = {}

    async def start(self) -> None:
        """Nothing to do: this process's epoch is new, no earlier position matches it."""

    async def publish(self, event: InstanceEvent) -> None:
        sequence = self._sequences.get(event.tenant, 0) + 1
        self._sequences[event.tenant] = sequence
        self._fanout.deliver(Sequenced(event, self._epoch, sequence))

    def subscribe(self, tenants: Iterable[str]) -> Subscription:
        subscription = self._fanout.subscribe(tenants)
        subscription.start(self._marks(subscription.tenants))
        return subscription

    async def ready(self, subscription: Subscription, within: float) -> bool:
        return subscription.started

    async def position(self, tenants: Iterable[str]) -> str:
        tenants = frozenset(tenants)
        return position_of(self._marks(tenants), tenants)

    def _marks(self, tenants: frozenset[str]) -> dict[str, Mark]:
        return {tenant: (self._epoch, self._sequences.get(tenant, 0)) for tenant in tenants}

    @property
    def subscriber_count(self) -> int:
        return self._fanout.subscriber_count

    async def close(self) -> None:
        self._fanout.drop_all()
        self._epoch = new_epoch()
        self._sequences.clear()

"""Live events inside one process (the embedded default): asyncio queues, nothing else."""

from __future__ import annotations

from collections.abc import Iterable

from dicomvault.live.bus import LocalFanout, Subscription
from dicomvault.live.events import InstanceEvent


class InProcessEventBus:
    """Delivers to the subscribers of this process; call it from the event loop they wait on."""

    def __init__(self, queue_size: int = 256) -> None:
        self._fanout = LocalFanout(queue_size)

    async def publish(self, event: InstanceEvent) -> None:
        self._fanout.deliver(event)

    def subscribe(self, tenants: Iterable[str]) -> Subscription:
        return self._fanout.subscribe(tenants)

    async def wait_ready(self, within: float) -> bool:
        return True

    @property
    def position(self) -> str:
        return self._fanout.position

    @property
    def subscriber_count(self) -> int:
        return self._fanout.subscriber_count

    async def close(self) -> None:
        self._fanout.drop_all()

"""One contract for every EventBus: the in-process broadcaster and Redis pub/sub (real server).

Redis-only behaviour (two replicas, a lost connection, foreign messages) follows the contract.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
import redis.asyncio as aioredis

from dicomvault.live.bus import EventBus, Subscription, SubscriptionDropped
from dicomvault.live.events import EventKind, InstanceEvent
from dicomvault.live.inprocess import InProcessEventBus
from dicomvault.live.redis_bus import RedisEventBus

pytestmark = pytest.mark.anyio
QUIET = 0.3  # seconds to wait for an event that must not come


def event(tenant: str = "north", n: int = 1) -> InstanceEvent:
    return InstanceEvent(EventKind.STORED, tenant, "1.2.3", "1.2.3.4", f"1.2.3.4.{n}")


BusFactory = Callable[..., EventBus]


@pytest.fixture(params=["inprocess", "redis"])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Builds buses of one kind; Redis buses share a fresh channel prefix per test."""
    made: list[EventBus] = []
    prefix = f"test:{uuid.uuid4().hex}:"

    def factory(queue_size: int = 16) -> EventBus:
        bus: EventBus
        if request.param == "inprocess":
            bus = InProcessEventBus(queue_size)
        else:
            url: str = request.getfixturevalue("redis_url")
            bus = RedisEventBus.from_url(url, queue_size=queue_size, prefix=prefix)
        made.append(bus)
        return bus

    yield factory
    for bus in made:
        await bus.close()


async def listening(bus: EventBus, subscription: Subscription) -> Subscription:
    if isinstance(bus, RedisEventBus):
        await bus.wait_listening()
    return subscription


async def test_subscriber_gets_its_tenants_events_in_order(make_bus: BusFactory) -> None:
    bus = make_bus()
    with bus.subscribe({"north", "east"}) as sub:
        await listening(bus, sub)
        sent = [event("north", 1), event("east", 2), event("north", 3)]
        for e in sent:
            await bus.publish(e)
        received = [await sub.next_event(5) for _ in sent]
    assert [d.event if d else None for d in received] == sent


async def test_other_tenants_events_are_not_delivered(make_bus: BusFactory) -> None:
    bus = make_bus()
    with bus.subscribe({"north"}) as sub:
        await listening(bus, sub)
        await bus.publish(event("south"))
        assert await sub.next_event(QUIET) is None
        await bus.publish(event("north", 7))
        delivery = await sub.next_event(5)
    assert delivery is not None and delivery.event.sop_uid == "1.2.3.4.7"


async def test_quiet_bus_times_out_with_none(make_bus: BusFactory) -> None:
    bus = make_bus()
    with bus.subscribe({"north"}) as sub:
        assert await sub.next_event(0.05) is None


async def test_every_subscriber_gets_a_copy(make_bus: BusFactory) -> None:
    bus = make_bus()
    with bus.subscribe({"north"}) as a, bus.subscribe({"north"}) as b:
        await listening(bus, a)
        await bus.publish(event())
        da, db = await a.next_event(5), await b.next_event(5)
    assert da is not None and db is not None and da.event == db.event == event()


async def test_slow_subscriber_is_dropped_and_others_keep_going(make_bus: BusFactory) -> None:
    bus = make_bus(queue_size=2)
    with bus.subscribe({"north"}) as slow, bus.subscribe({"north"}) as fast:
        await listening(bus, slow)
        for n in range(5):
            await bus.publish(event(n=n))
            assert (await fast.next_event(5)) is not None
        await asyncio.sleep(0.1)
        with pytest.raises(SubscriptionDropped):
            await slow.next_event(5)
        with pytest.raises(SubscriptionDropped):  # and stays dropped
            await slow.next_event(5)
        assert slow.dropped and not fast.dropped
        await bus.publish(event(n=9))
        delivery = await fast.next_event(5)
        assert delivery is not None and delivery.event.sop_uid == "1.2.3.4.9"


async def test_leaving_the_context_unsubscribes(make_bus: BusFactory) -> None:
    bus = make_bus()
    with bus.subscribe({"north"}):
        assert bus.subscriber_count == 1  # type: ignore[attr-defined]
    assert bus.subscriber_count == 0  # type: ignore[attr-defined]


async def test_positions_tell_whether_anything_was_delivered(make_bus: BusFactory) -> None:
    bus = make_bus()
    with bus.subscribe({"north"}) as sub:
        await listening(bus, sub)
        assert sub.position == bus.position
        await bus.publish(event("south"))  # another tenant's event moves the position too
        await asyncio.sleep(0.2)
        assert bus.position != sub.position
        before = bus.position
        await bus.publish(event("north"))
        delivery = await sub.next_event(5)
    assert delivery is not None and delivery.position == bus.position != before


async def test_close_drops_subscribers(make_bus: BusFactory) -> None:
    bus = make_bus()
    with bus.subscribe({"north"}) as sub:
        await bus.close()
        with pytest.raises(SubscriptionDropped):
            await sub.next_event(1)


# -- Redis only ------------------------------------------------------------------------------------
async def test_two_replicas_share_events_through_redis(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    one = RedisEventBus.from_url(redis_url, prefix=prefix)
    two = RedisEventBus.from_url(redis_url, prefix=prefix)
    try:
        with one.subscribe({"north"}) as on_one, two.subscribe({"north"}) as on_two:
            await one.wait_listening()
            await two.wait_listening()
            await one.publish(event())
            got_one, got_two = await on_one.next_event(5), await on_two.next_event(5)
        assert got_one is not None and got_two is not None
        assert got_one.event == got_two.event == event()
        # Positions are per process: a client moving between replicas always re-queries.
        assert got_one.position != got_two.position
    finally:
        await one.close()
        await two.close()


async def test_malformed_and_misrouted_messages_are_ignored(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    bus = RedisEventBus.from_url(redis_url, prefix=prefix)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        with bus.subscribe({"north", "south"}) as sub:
            await bus.wait_listening()
            await raw.publish(prefix + "north", b"not json")
            await raw.publish(prefix + "north", orjson.dumps({"kind": "stored"}))
            bad_uid = {**event().to_dict(), "SOPInstanceUID": "1.2.x"}
            await raw.publish(prefix + "north", orjson.dumps(bad_uid))
            # A "south" event on the "north" channel must not reach "south" subscribers.
            await raw.publish(prefix + "north", event("south").to_json())
            assert await sub.next_event(QUIET) is None
            await raw.publish(prefix + "north", event("north").to_json())
            delivery = await sub.next_event(5)
        assert delivery is not None and delivery.event == event("north")
    finally:
        await raw.aclose()
        await bus.close()


async def test_lost_connection_drops_subscribers_and_recovers(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    bus = RedisEventBus.from_url(redis_url, prefix=prefix)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        with bus.subscribe({"north"}) as sub:
            await bus.wait_listening()
            epoch = bus.position.split("-")[0]
            await raw.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
            with pytest.raises(SubscriptionDropped):
                await sub.next_event(5)
        # The events in between are unknown: a new epoch, so reconnecting clients re-query.
        assert bus.position.split("-")[0] != epoch
        with bus.subscribe({"north"}) as again:
            await bus.wait_listening(10)
            await bus.publish(event())
            delivery = await again.next_event(5)
        assert delivery is not None and delivery.event == event()
    finally:
        await raw.aclose()
        await bus.close()


async def test_publishing_never_waits_for_redis() -> None:
    # Nothing listens on port 1: the PUBLISH fails in the background, ingest is not held up.
    bus = RedisEventBus.from_url("redis://127.0.0.1:1/0", publish_timeout=1.0, outbox_size=2)
    try:
        started = time.monotonic()
        for n in range(5):  # more than the outbox holds: the surplus is dropped, not raised
            await bus.publish(event(n=n))
        assert time.monotonic() - started < 0.1
    finally:
        started = time.monotonic()
        await bus.close()  # gives the outbox at most publish_timeout to drain
        assert time.monotonic() - started < 3

"""One contract for every EventBus: the in-process broadcaster and Redis pub/sub (real server).

Redis-only behaviour (two replicas, a lost connection, foreign messages) follows the contract.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable

import anyio
import orjson
import pytest
import redis.asyncio as aioredis

from dicomvault.live.bus import UNKNOWN_POSITION, EventBus, Subscription, SubscriptionDropped
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
    """Started: receiving every later event, its position known."""
    assert await bus.ready(subscription, 5)
    return subscription


async def settled(bus: EventBus) -> None:
    """Until what was published is numbered (Redis publishes from a background task)."""
    if isinstance(bus, RedisEventBus):
        await bus.flush()


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
        await listening(bus, b)
        await bus.publish(event())
        da, db = await a.next_event(5), await b.next_event(5)
    assert da is not None and db is not None and da.event == db.event == event()


async def test_slow_subscriber_is_dropped_and_others_keep_going(make_bus: BusFactory) -> None:
    bus = make_bus(queue_size=2)
    with bus.subscribe({"north"}) as slow, bus.subscribe({"north"}) as fast:
        await listening(bus, slow)
        await listening(bus, fast)
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


async def test_positions_move_with_the_subscribers_own_tenants_only(make_bus: BusFactory) -> None:
    bus = make_bus()
    with bus.subscribe({"north"}) as sub:
        await listening(bus, sub)
        start = sub.position
        assert start == await bus.position({"north"})
        for n in range(3):  # another tenant's events: nothing of them shows
            await bus.publish(event("south", n))
        await settled(bus)
        assert await sub.next_event(QUIET) is None
        assert sub.position == start == await bus.position({"north"})
        await bus.publish(event("north", 7))
        delivery = await sub.next_event(5)
        assert delivery is not None and delivery.event.sop_uid == "1.2.3.4.7"
        assert delivery.position == sub.position == await bus.position({"north"}) != start


async def test_a_reconnecting_subscriber_missed_only_its_own_tenants_events(
    make_bus: BusFactory,
) -> None:
    bus = make_bus()
    with bus.subscribe({"north"}) as first:
        seen = (await listening(bus, first)).position
    await bus.publish(event("south"))  # while north's subscriber was away
    await settled(bus)
    with bus.subscribe({"north"}) as again:
        assert (await listening(bus, again)).position == seen  # nothing missed
    await bus.publish(event("north"))
    await settled(bus)
    with bus.subscribe({"north"}) as third:
        assert (await listening(bus, third)).position != seen  # missed one: re-query


async def test_a_position_covers_every_tenant_of_its_subscriber(make_bus: BusFactory) -> None:
    bus = make_bus()
    both = await bus.position({"north", "east"})
    assert both != await bus.position({"north"})  # another tenant set, another position
    assert both == await bus.position(["east", "north", "east"])
    await bus.publish(event("east"))
    await settled(bus)
    assert await bus.position({"north", "east"}) != both
    # Opaque: neither tenant names nor counts can be read off it.
    assert re.fullmatch(r"[0-9a-f]{32}", both)


async def test_close_drops_subscribers(make_bus: BusFactory) -> None:
    bus = make_bus()
    with bus.subscribe({"north"}) as sub:
        await bus.close()
        with pytest.raises(SubscriptionDropped):
            await sub.next_event(1)


# -- Redis only ------------------------------------------------------------------------------------
def redis_pair(redis_url: str) -> tuple[str, RedisEventBus, aioredis.Redis]:
    """A fresh prefix, a bus on it and a raw client (for what no bus would send)."""
    prefix = f"test:{uuid.uuid4().hex}:"
    return (
        prefix,
        RedisEventBus.from_url(redis_url, prefix=prefix),
        aioredis.Redis.from_url(redis_url),
    )


async def test_two_replicas_share_events_and_positions_through_redis(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    one = RedisEventBus.from_url(redis_url, prefix=prefix)
    two = RedisEventBus.from_url(redis_url, prefix=prefix)
    try:
        with one.subscribe({"north"}) as on_one, two.subscribe({"north"}) as on_two:
            await listening(one, on_one)
            await listening(two, on_two)
            assert on_one.position == on_two.position
            await one.publish(event("south"))
            await one.publish(event())
            got_one, got_two = await on_one.next_event(5), await on_two.next_event(5)
        assert got_one is not None and got_two is not None
        assert got_one.event == got_two.event == event()
        # The numbering is in Redis: a client moving between replicas re-queries only when
        # something happened in its tenants.
        assert got_one.position == got_two.position == await two.position({"north"})
    finally:
        await one.close()
        await two.close()


async def test_malformed_misrouted_and_unnumbered_messages_are_ignored(redis_url: str) -> None:
    prefix, bus, raw = redis_pair(redis_url)
    try:
        with bus.subscribe({"north", "south"}) as sub:
            await listening(bus, sub)
            numbered = f"{'ab' * 8} 1 ".encode()
            await raw.publish(prefix + "north", b"not json")
            await raw.publish(prefix + "north", numbered + b"not json")
            await raw.publish(prefix + "north", numbered + orjson.dumps({"kind": "stored"}))
            bad_uid = {**event().to_dict(), "SOPInstanceUID": "1.2.x"}
            await raw.publish(prefix + "north", numbered + orjson.dumps(bad_uid))
            # An event without its place in the numbering cannot be placed: ignored.
            await raw.publish(prefix + "north", event("north").to_json())
            await raw.publish(prefix + "north", b"XYZ 1 " + event("north").to_json())
            await raw.publish(prefix + "north", f"{'ab' * 8} 0 ".encode() + event().to_json())
            # A "south" event on the "north" channel must not reach "south" subscribers.
            await raw.publish(prefix + "north", numbered + event("south").to_json())
            await raw.publish(prefix + "!renumbered", b"../not a tenant")
            assert await sub.next_event(QUIET) is None
            assert not sub.dropped
            await bus.publish(event("north"))
            delivery = await sub.next_event(5)
        assert delivery is not None and delivery.event == event("north")
    finally:
        await raw.aclose()
        await bus.close()


async def test_an_event_that_does_not_follow_the_last_one_makes_the_subscriber_resync(
    redis_url: str,
) -> None:
    prefix, bus, raw = redis_pair(redis_url)
    try:
        with bus.subscribe({"north"}) as sub:
            await listening(bus, sub)
            await bus.publish(event("north", 1))
            assert (await sub.next_event(5)) is not None
            raw_epoch = await raw.hget(prefix + "!numbering", "!north")
            assert isinstance(raw_epoch, bytes)
            epoch = raw_epoch.decode()
            # Sequence 3 after 1: number 2 was lost on the way.
            await raw.publish(prefix + "north", f"{epoch} 3 ".encode() + event().to_json())
            with pytest.raises(SubscriptionDropped):
                await sub.next_event(5)
        with bus.subscribe({"north"}) as sub:
            await listening(bus, sub)
            # The next number, but of another epoch than the subscriber started in.
            other_epoch = "cd" * 8
            await raw.publish(prefix + "north", f"{other_epoch} 2 ".encode() + event().to_json())
            with pytest.raises(SubscriptionDropped):
                await sub.next_event(5)
        with bus.subscribe({"north"}) as sub:
            await listening(bus, sub)
            await raw.publish(prefix + "north", f"{epoch} 2 ".encode() + event().to_json())
            delivery = await sub.next_event(5)  # the one that does follow
            assert delivery is not None and delivery.event == event()
    finally:
        await raw.aclose()
        await bus.close()


async def test_lost_connection_drops_subscribers_and_positions_tell_what_was_missed(
    redis_url: str,
) -> None:
    prefix, bus, raw = redis_pair(redis_url)
    other = RedisEventBus.from_url(redis_url, prefix=prefix)  # another replica, still publishing
    try:
        with bus.subscribe({"north"}) as sub:
            await listening(bus, sub)
            seen = sub.position
            await raw.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
            await other.publish(event())
            await other.flush()
            with pytest.raises(SubscriptionDropped):
                await sub.next_event(5)
        # The event published meanwhile was numbered in Redis: whoever comes back re-queries.
        assert await bus.position({"north"}) != seen
        with bus.subscribe({"north"}) as again:
            await bus.wait_listening(10)
            await listening(bus, again)
            assert again.position == await other.position({"north"})
            await other.publish(event(n=2))
            delivery = await again.next_event(5)
        assert delivery is not None and delivery.event == event(n=2)
    finally:
        await raw.aclose()
        await other.close()
        await bus.close()


async def test_events_that_could_not_be_published_renumber_their_tenant(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    one = RedisEventBus.from_url(redis_url, prefix=prefix, outbox_size=1)
    two = RedisEventBus.from_url(redis_url, prefix=prefix)
    try:
        with two.subscribe({"north"}) as north, two.subscribe({"south"}) as south:
            await listening(two, north)
            await listening(two, south)
            before_north, before_south = north.position, south.position
            for n in range(3):  # an outbox of one: the surplus is dropped, never numbered
                await one.publish(event("north", n))
            await one.flush()
            # North's positions are stale on every replica, its subscribers there resync...
            assert await two.position({"north"}) != before_north
            with pytest.raises(SubscriptionDropped):
                await north.next_event(5)
            # ...and south, whose events all went out, is untouched.
            assert await south.next_event(QUIET) is None
            assert not south.dropped
            assert await two.position({"south"}) == before_south
    finally:
        await one.close()
        await two.close()


async def test_a_replica_that_starts_makes_every_tenant_resync(redis_url: str) -> None:
    """An earlier run may have ended between an ingest's commit and its event: every live view
    on every replica resynchronises once, whichever tenant it follows."""
    prefix = f"test:{uuid.uuid4().hex}:"
    running = RedisEventBus.from_url(redis_url, prefix=prefix)
    try:
        await running.publish(event("north"))
        await running.publish(event("south"))
        await running.flush()
        with running.subscribe({"north"}) as north, running.subscribe({"south"}) as south:
            await listening(running, north)
            await listening(running, south)
            seen = {"north": north.position, "south": south.position}
            restarted = RedisEventBus.from_url(redis_url, prefix=prefix)
            try:
                await restarted.start()
                await restarted.flush()
                for name, subscription in (("north", north), ("south", south)):
                    with pytest.raises(SubscriptionDropped):
                        await subscription.next_event(5)
                    assert await running.position({name}) != seen[name]
                # Numbering goes on from the new epochs, the same on both replicas.
                await restarted.publish(event("north", 2))
                await restarted.flush()
                assert await running.position({"north"}) == await restarted.position({"north"})
            finally:
                await restarted.close()
    finally:
        await running.close()


async def test_a_start_without_redis_does_not_wait_for_it() -> None:
    bus = RedisEventBus.from_url("redis://127.0.0.1:1/0", publish_timeout=1.0)
    try:
        with anyio.fail_after(0.5):
            await bus.start()
        with pytest.raises(TimeoutError):
            await bus.flush(within=0.5)  # the renumbering is still owed
    finally:
        await bus.close()


async def test_losing_the_numbering_never_brings_back_an_earlier_position(redis_url: str) -> None:
    prefix, bus, raw = redis_pair(redis_url)
    try:
        await bus.publish(event())
        await bus.flush()
        seen = await bus.position({"north"})
        await raw.delete(prefix + "!numbering")  # Redis restarted without persistence, say
        assert await bus.position({"north"}) != seen
    finally:
        await raw.aclose()
        await bus.close()


async def test_without_redis_positions_are_unknown_and_subscriptions_never_ready() -> None:
    bus = RedisEventBus.from_url("redis://127.0.0.1:1/0", publish_timeout=1.0)
    try:
        assert await bus.position({"north"}) == UNKNOWN_POSITION
        with bus.subscribe({"north"}) as sub:
            assert not await bus.ready(sub, 0.5)
            assert sub.position == UNKNOWN_POSITION
    finally:
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

"""Rate limits: GCRA against its definition (ITU-T I.371), the 50/10 scenario, and Redis sharing."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import anyio
import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomvault.auth.principal import RatePlan
from dicomvault.auth.ratelimit import (
    Decision,
    InProcessRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    rate_limit_headers,
)
from tests.support.redis_server import running_redis

pytestmark = pytest.mark.anyio

US = 1_000_000


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- the definition ---------------------------------------------------------------------------


@dataclass
class VirtualScheduling:
    """GCRA(T, τ) exactly as ITU-T I.371 draws it (virtual scheduling algorithm), in integer µs.

    Cell at ``ta``: if ``ta < TAT - τ`` it is non-conforming and TAT is unchanged; otherwise it
    conforms and ``TAT := max(ta, TAT) + T``. The first cell finds ``TAT = ta``. Parameters from a
    plan: ``T = round(1e6 / rate)`` µs (at least 1), ``τ = (burst - 1)·T``. A request of cost n is n
    cells arriving together, admitted only if all of them conform.
    """

    T: int
    tau: int
    tat: int | None = None

    @classmethod
    def for_plan(cls, plan: RatePlan) -> VirtualScheduling:
        T = max(1, round(US / plan.rate))
        return cls(T=T, tau=(plan.burst - 1) * T)

    def _cell(self, ta: int) -> bool:
        tat = ta if self.tat is None else self.tat
        if ta < tat - self.tau:
            return False
        self.tat = max(ta, tat) + self.T
        return True

    def request(self, ta: int, cost: int = 1) -> bool:
        trial = VirtualScheduling(self.T, self.tau, self.tat)
        if all(trial._cell(ta) for _ in range(cost)):
            self.tat = trial.tat
            return True
        return False

    def would_admit(self, ta: int, cost: int = 1) -> bool:
        return VirtualScheduling(self.T, self.tau, self.tat).request(ta, cost)

    def admissible_now(self, ta: int, limit: int) -> int:
        """How many cost-1 requests in a row would conform at ``ta`` (counted, not computed)."""
        trial = VirtualScheduling(self.T, self.tau, self.tat)
        count = 0
        while count <= limit and trial.request(ta):
            count += 1
        return count


@st.composite
def plans_and_arrivals(draw: st.DrawFn) -> tuple[RatePlan, list[tuple[int, int]]]:
    rate = draw(
        st.one_of(
            st.integers(1, 100).map(float),
            st.floats(min_value=0.05, max_value=5000, allow_nan=False, allow_infinity=False),
        )
    )
    burst = draw(st.integers(1, 60))
    T = max(1, round(US / rate))
    # Gaps that land on, just before and just after multiples of T are where a wrong inequality
    # (< for <=, an off-by-one τ) shows; uniform gaps cover the rest.
    gap = st.one_of(
        st.just(0),
        st.integers(0, 3 * T),
        st.builds(lambda k, d: max(0, k * T + d), st.integers(0, burst + 2), st.integers(-1, 1)),
        st.integers(0, 2 * burst * T),
    )
    cost = st.one_of(st.just(1), st.integers(1, burst))
    start = draw(st.integers(0, 10**12))
    gaps = draw(st.lists(st.tuples(gap, cost), min_size=1, max_size=80))
    arrivals, now = [], start
    for delta, n in gaps:
        now += delta
        arrivals.append((now, n))
    return RatePlan(rate=rate, burst=burst), arrivals


@settings(max_examples=300, deadline=None)
@given(plans_and_arrivals())
def test_decisions_match_virtual_scheduling(case: tuple[RatePlan, list[tuple[int, int]]]) -> None:
    plan, arrivals = case
    clock = FakeClock()
    limiter = InProcessRateLimiter(clock=clock)
    reference = VirtualScheduling.for_plan(plan)

    async def run() -> None:
        for ta, cost in arrivals:
            clock.now = ta / US
            before = VirtualScheduling(reference.T, reference.tau, reference.tat)
            decision = await limiter.hit("principal", plan, cost)
            assert decision.allowed == reference.request(ta, cost), (ta, cost)
            assert_fields_match_definition(decision, plan, reference, before, ta, cost)

    anyio.run(run)


def assert_fields_match_definition(
    decision: Decision,
    plan: RatePlan,
    after: VirtualScheduling,
    before: VirtualScheduling,
    ta: int,
    cost: int,
) -> None:
    """remaining / retry_after / reset_after say what the definition would do next."""
    assert decision.limit == plan.burst
    assert decision.remaining == after.admissible_now(ta, plan.burst)
    reset = round(decision.reset_after * US)
    assert after.admissible_now(ta + reset, plan.burst) == plan.burst
    if reset > 0:
        assert after.admissible_now(ta + reset - 1, plan.burst) < plan.burst
    if decision.allowed:
        assert decision.retry_after == 0
    else:
        retry = round(decision.retry_after * US)
        assert retry > 0
        assert before.would_admit(ta + retry, cost)
        assert not before.would_admit(ta + retry - 1, cost)


# --- the scenario of issue 3 ------------------------------------------------------------------


async def test_fifty_back_to_back_then_ten_per_second() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(clock=clock)
    plan = RatePlan(rate=10.0, burst=50)

    burst = [await limiter.hit("user:7", plan) for _ in range(50)]
    assert all(d.allowed for d in burst)
    assert [d.remaining for d in burst] == list(range(49, -1, -1))

    refused = await limiter.hit("user:7", plan)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.1)
    assert refused.remaining == 0
    assert refused.reset_after == pytest.approx(5.0)

    clock.advance(1.0)
    later = [await limiter.hit("user:7", plan) for _ in range(11)]
    assert [d.allowed for d in later] == [True] * 10 + [False]
    assert later[-1].retry_after == pytest.approx(0.1)


async def test_headers_follow_the_draft() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(clock=clock)
    plan = RatePlan(rate=10.0, burst=50)

    first = await limiter.hit("user:7", plan)
    assert rate_limit_headers(first, plan) == {
        "RateLimit-Policy": "50;w=5",
        "RateLimit": "limit=50, remaining=49, reset=1",
    }
    for _ in range(49):
        last = await limiter.hit("user:7", plan)
    assert rate_limit_headers(last, plan)["RateLimit"] == "limit=50, remaining=0, reset=5"

    refused = await limiter.hit("user:7", plan)
    headers = rate_limit_headers(refused, plan)
    # 0.1 s rounds up: a client that waits as told is admitted. reset matches Retry-After.
    assert headers == {
        "Retry-After": "1",
        "RateLimit-Policy": "50;w=5",
        "RateLimit": "limit=50, remaining=0, reset=1",
    }


def test_policy_window_is_the_refill_time_in_whole_seconds() -> None:
    decision = Decision(allowed=True, limit=5, remaining=4, retry_after=0, reset_after=0.3)
    assert rate_limit_headers(decision, RatePlan(rate=3.0, burst=5))["RateLimit-Policy"] == "5;w=2"
    assert (
        rate_limit_headers(decision, RatePlan(rate=100.0, burst=5))["RateLimit-Policy"] == "5;w=1"
    )
    slow = Decision(allowed=False, limit=5, remaining=0, retry_after=59.2, reset_after=299.2)
    headers = rate_limit_headers(slow, RatePlan(rate=1 / 60, burst=5))
    assert headers["Retry-After"] == "60"
    assert headers["RateLimit-Policy"] == "5;w=300"
    assert headers["RateLimit"] == "limit=5, remaining=0, reset=60"


async def test_keys_are_independent() -> None:
    limiter = InProcessRateLimiter(clock=FakeClock())
    plan = RatePlan(rate=1.0, burst=2)
    assert [(await limiter.hit("user:1", plan)).allowed for _ in range(3)] == [True, True, False]
    assert (await limiter.hit("user:2", plan)).allowed


async def test_cost_counts_several_requests() -> None:
    limiter = InProcessRateLimiter(clock=FakeClock())
    plan = RatePlan(rate=10.0, burst=5)
    assert (await limiter.hit("k", plan, cost=3)).remaining == 2
    refused = await limiter.hit("k", plan, cost=3)
    assert not refused.allowed and refused.remaining == 2
    assert refused.retry_after == pytest.approx(0.1)
    assert (await limiter.hit("k", plan, cost=2)).allowed


@pytest.mark.parametrize(
    ("plan", "cost"),
    [
        (RatePlan(rate=0.0), 1),
        (RatePlan(rate=-1.0), 1),
        (RatePlan(rate=math.nan), 1),
        (RatePlan(burst=0), 1),
        (RatePlan(burst=5), 6),
        (RatePlan(), 0),
    ],
)
async def test_impossible_requests_are_programming_errors(plan: RatePlan, cost: int) -> None:
    with pytest.raises(ValueError):
        await InProcessRateLimiter().hit("k", plan, cost)


async def test_refilled_keys_are_forgotten() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(clock=clock, sweep_every=10)
    plan = RatePlan(rate=10.0, burst=5)
    for i in range(9):
        await limiter.hit(f"user:{i}", plan)
    assert len(limiter) == 9
    clock.advance(1.0)  # every bucket is full again
    await limiter.hit("user:active", plan)  # the 10th hit sweeps
    assert len(limiter) == 1


# --- every implementation: one contract, real time --------------------------------------------


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with running_redis() as url:
        yield url


@pytest.fixture(params=["in-process", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "in-process":
        impl: RateLimiter = InProcessRateLimiter()
    else:
        impl = RedisRateLimiter.from_url(request.getfixturevalue("redis_url"))
    yield impl
    await impl.close()


def fresh_key() -> str:
    return f"user:{uuid.uuid4()}"


async def test_burst_then_sustained_rate_in_real_time(limiter: RateLimiter) -> None:
    plan = RatePlan(rate=5.0, burst=5)  # T = 0.2 s
    key = fresh_key()
    burst = [await limiter.hit(key, plan) for _ in range(6)]
    assert [d.allowed for d in burst] == [True] * 5 + [False]
    assert 0.1 < burst[-1].retry_after <= 0.2
    assert burst[-1].reset_after == pytest.approx(1.0, abs=0.1)

    # 0.5 s after the burst 2 more fit (the 3rd needs 0.6 s): 100 ms of scheduling slack.
    await anyio.sleep(0.5)
    later = [await limiter.hit(key, plan) for _ in range(3)]
    assert [d.allowed for d in later] == [True, True, False]

    await anyio.sleep(later[-1].retry_after + 0.02)
    assert (await limiter.hit(key, plan)).allowed
    assert not (await limiter.hit(key, plan)).allowed


async def test_concurrent_hits_admit_exactly_the_burst(limiter: RateLimiter) -> None:
    plan = RatePlan(rate=0.01, burst=20)  # no refill during the test
    key = fresh_key()
    decisions: list[Decision] = []

    async def hit() -> None:
        decisions.append(await limiter.hit(key, plan))

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(hit)
    assert sum(d.allowed for d in decisions) == 20
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(20))


# --- Redis: shared across processes, atomic, expiring -----------------------------------------


@pytest.fixture
async def two_limiters(redis_url: str) -> AsyncIterator[tuple[RedisRateLimiter, RedisRateLimiter]]:
    """Like two API replicas: separate clients and connection pools, one Redis."""
    first, second = RedisRateLimiter.from_url(redis_url), RedisRateLimiter.from_url(redis_url)
    yield first, second
    await first.close()
    await second.close()


async def test_replicas_share_one_limit(
    two_limiters: tuple[RedisRateLimiter, RedisRateLimiter],
) -> None:
    first, second = two_limiters
    plan = RatePlan(rate=0.01, burst=6)
    key = fresh_key()
    alternating = [await (first if i % 2 else second).hit(key, plan) for i in range(7)]
    assert [d.allowed for d in alternating] == [True] * 6 + [False]
    assert not (await first.hit(key, plan)).allowed
    assert (await second.hit(fresh_key(), plan)).allowed  # other principals unaffected


async def test_concurrent_hits_from_two_replicas_admit_exactly_the_burst(
    two_limiters: tuple[RedisRateLimiter, RedisRateLimiter],
) -> None:
    plan = RatePlan(rate=0.01, burst=20)
    key = fresh_key()
    decisions: list[Decision] = []

    async def hit(limiter: RedisRateLimiter) -> None:
        decisions.append(await limiter.hit(key, plan))

    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(hit, two_limiters[i % 2])
    assert len(decisions) == 100
    assert sum(d.allowed for d in decisions) == 20


async def test_keys_expire_when_the_bucket_is_full_again(redis_url: str) -> None:
    limiter = RedisRateLimiter.from_url(redis_url)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        plan = RatePlan(rate=10.0, burst=5)
        key = fresh_key()
        await limiter.hit(key, plan)
        assert 0 < await raw.pttl(limiter.redis_key(key)) <= 100
        for _ in range(4):
            decision = await limiter.hit(key, plan)
        ttl = await raw.pttl(limiter.redis_key(key))
        assert 400 < ttl <= math.ceil(decision.reset_after * 1000) <= 500
        await anyio.sleep(0.55)
        assert await raw.exists(limiter.redis_key(key)) == 0
        assert (await limiter.hit(key, plan)).remaining == 4  # like a fresh key
    finally:
        await limiter.close()
        await raw.aclose()


async def test_the_clock_is_redis_time(redis_url: str) -> None:
    """The TAT stored is on Redis's clock (µs since the epoch), whatever the caller's clock says."""
    limiter = RedisRateLimiter.from_url(redis_url)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        key = fresh_key()
        seconds, micros = await raw.time()
        await limiter.hit(key, RatePlan(rate=10.0, burst=5))
        value = await raw.get(limiter.redis_key(key))
        assert value is not None
        stored = int(value)
        now_us = seconds * US + micros
        assert now_us + 100_000 <= stored <= now_us + 100_000 + 1_000_000
        assert abs(stored / US - 0.1 - time.time()) < 5  # same epoch scale, not monotonic
    finally:
        await limiter.close()
        await raw.aclose()


async def test_dry_run_reports_without_taking() -> None:
    now = [0.0]
    limiter = InProcessRateLimiter(clock=lambda: now[0])
    plan = RatePlan(rate=1.0, burst=2)
    for _ in range(5):
        assert (await limiter.hit("k", plan, dry_run=True)).allowed
    assert (await limiter.hit("k", plan)).allowed
    assert (await limiter.hit("k", plan)).allowed
    assert not (await limiter.hit("k", plan, dry_run=True)).allowed
    now[0] = 1.0
    assert (await limiter.hit("k", plan, dry_run=True)).allowed
    assert (await limiter.hit("k", plan)).allowed
    assert not (await limiter.hit("k", plan)).allowed

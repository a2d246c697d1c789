"""Per-principal rate limits: GCRA, in process or shared through Redis (DESIGN.md, security model).

The Generic Cell Rate Algorithm (ITU-T I.371, "virtual scheduling" form) is a token bucket that
keeps one number per key, the *theoretical arrival time* (TAT): the time at which the bucket would
be full again. Conventions, for a ``RatePlan(rate=r, burst=b)``:

- emission interval ``T = 1/r``, held as a whole number of microseconds (``round(1e6 / r)``, at
  least 1): Redis ``TIME`` has microsecond resolution and Lua numbers are doubles, exact for whole
  microseconds since the epoch. Counting in integers also keeps boundaries exact: no
  ``0.1 + 0.1 + ...`` drift decides whether a request on the edge is admitted.
- burst tolerance ``τ = (b - 1)·T``.
- a request of cost ``n`` at time ``t`` is admitted iff ``t >= TAT - τ - (n - 1)·T``, i.e. iff all
  ``n`` cells would conform arriving together; then ``TAT := max(TAT, t) + n·T``. A refused request
  changes nothing. A key never seen (or whose TAT has passed) has ``TAT = t``.

So a fresh key admits ``b`` requests back to back and then one every ``T``: with ``rate=10,
burst=50`` the 51st immediate request is refused with ``retry_after = 0.1`` s, and 1.0 s after the
burst exactly 10 more are admitted (the 11th is refused).

Keys are opaque strings. The caller passes a verified principal's subject (``Principal.subject``),
never anything taken from the request such as an ``X-Forwarded-For`` address.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dicomvault.auth.principal import RatePlan

MICROSECONDS = 1_000_000
log = logging.getLogger("dicomvault.ratelimit")


@dataclass(frozen=True)
class Decision:
    """The outcome of one :meth:`RateLimiter.hit`, with what the RateLimit headers report."""

    allowed: bool
    limit: int  # burst capacity
    remaining: int  # requests of cost 1 that would be admitted right now
    retry_after: float  # seconds until this request would be admitted (0 when allowed)
    reset_after: float  # seconds until the bucket is full again


class RateLimiter(Protocol):
    """Counts requests per key against a plan; implementations differ only in where TATs live."""

    async def hit(
        self, key: str, plan: RatePlan, cost: int = 1, *, dry_run: bool = False
    ) -> Decision:
        """Take ``cost`` from ``key``'s bucket; with ``dry_run`` only say whether it would pass."""
        ...

    async def close(self) -> None: ...


def emission_interval_us(plan: RatePlan) -> int:
    """``T`` of the plan in whole microseconds; refuses plans that admit nothing."""
    if not plan.rate > 0 or not math.isfinite(plan.rate):
        raise ValueError(f"rate must be a positive number, not {plan.rate!r}")
    if plan.burst < 1:
        raise ValueError(f"burst must be at least 1, not {plan.burst!r}")
    return max(1, round(MICROSECONDS / plan.rate))


def _check_cost(cost: int, plan: RatePlan) -> None:
    # A cost above the burst could never be admitted: that is the caller's bug, not a 429.
    if not 1 <= cost <= plan.burst:
        raise ValueError(f"cost must be between 1 and the burst ({plan.burst}), not {cost!r}")


def _decision(allowed: bool, reset_us: int, retry_us: int, interval: int, burst: int) -> Decision:
    """Build a Decision from the state after the hit, ``reset_us = TAT - now`` (may be <= 0)."""
    reset_us = max(0, reset_us)
    remaining = max(0, (burst * interval - reset_us) // interval)
    return Decision(
        allowed=allowed,
        limit=burst,
        remaining=remaining,
        retry_after=max(0, retry_us) / MICROSECONDS,
        reset_after=reset_us / MICROSECONDS,
    )


def gcra(
    tat: int | None, now: int, interval: int, burst: int, cost: int
) -> tuple[int | None, Decision]:
    """One GCRA step in microseconds: the key's new TAT (``None``: unchanged) and the decision.

    The Lua script of :class:`RedisRateLimiter` is the same computation, line for line.
    """
    current = now if tat is None or tat < now else tat
    new_tat = current + cost * interval
    allow_at = new_tat - burst * interval  # = TAT - τ - (cost - 1)·T
    if now < allow_at:
        return None, _decision(False, current - now, allow_at - now, interval, burst)
    return new_tat, _decision(True, new_tat - now, 0, interval, burst)


class InProcessRateLimiter:
    """TATs in a dict: for the embedded default and tests, where one process sees every request.

    ``clock`` returns seconds on a monotonic scale (``time.monotonic`` by default; tests inject a
    fake one). Keys whose bucket has refilled are indistinguishable from unknown keys and are
    dropped every ``sweep_every`` hits, so the dict holds only recently active principals.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, sweep_every: int = 4096
    ) -> None:
        self._clock = clock
        self._sweep_every = sweep_every
        self._tats: dict[str, int] = {}
        self._hits = 0
        # DIMSE handlers run in pynetdicom's threads, so not only the event loop calls in.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many keys are tracked (keys with a full bucket may linger until the next sweep)."""
        return len(self._tats)

    async def hit(
        self, key: str, plan: RatePlan, cost: int = 1, *, dry_run: bool = False
    ) -> Decision:
        interval = emission_interval_us(plan)
        _check_cost(cost, plan)
        with self._lock:
            now = round(self._clock() * MICROSECONDS)
            new_tat, decision = gcra(self._tats.get(key), now, interval, plan.burst, cost)
            if new_tat is not None and not dry_run:
                self._tats[key] = new_tat
            self._hits += 1
            if self._hits % self._sweep_every == 0:
                self._sweep(now)
        return decision

    def _sweep(self, now: int) -> None:
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}

    async def close(self) -> None:
        with self._lock:
            self._tats.clear()


# KEYS[1]: the bucket; ARGV: T (µs), burst b, cost n. Returns {allowed, TAT - now, retry (µs)}.
# The clock is Redis TIME, so replicas with skewed clocks still share one timeline. Scripts are
# replicated by effects (the default since Redis 5, the only mode in 7), so TIME is allowed here.
# The TAT is written with %.0f: Lua's tostring would print 1.7e+15 and lose the microseconds.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local dry_run = ARGV[4] == '1'
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then
  tat = now
end
local new_tat = tat + cost * interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, tat - now, allow_at - now}
end
if not dry_run then
  local ttl_ms = math.ceil((new_tat - now) / 1000)
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
end
return {1, new_tat - now, 0}
"""


class RedisRateLimiter:
    """TATs in Redis, shared by every replica: one atomic script per hit, timed by Redis TIME.

    Each key expires when its bucket is full again (TTL = ``TAT - now``), at which point an absent
    key means exactly what the stored one did, so Redis holds only recently active principals.

    When Redis cannot be reached (``redis.exceptions.RedisError``, ``OSError``) and a
    ``fallback`` is given, the hit is counted there instead: the limit then holds per process
    rather than across replicas, and requests go on being served (and audited) instead of
    failing with a 500 while the cache is down. The outage is logged once a minute, without keys
    (they name principals). Without a fallback the error propagates to the caller.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = "dicomvault:ratelimit:",
        *,
        fallback: RateLimiter | None = None,
    ) -> None:
        self._client = client
        self.prefix = prefix
        self._script = client.register_script(GCRA_SCRIPT)
        self._fallback = fallback
        self._last_outage_log = -math.inf

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "dicomvault:ratelimit:",
        *,
        fallback: RateLimiter | None = None,
        socket_timeout: float = 2.0,
    ) -> RedisRateLimiter:
        """A limiter with its own connection pool, e.g. ``redis://127.0.0.1:6379/0``.

        ``socket_timeout`` bounds how long a hung Redis can hold a request before the fallback.
        """
        client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        return cls(client, prefix=prefix, fallback=fallback)

    def redis_key(self, key: str) -> str:
        """The Redis key holding ``key``'s TAT."""
        return self.prefix + key

    async def hit(
        self, key: str, plan: RatePlan, cost: int = 1, *, dry_run: bool = False
    ) -> Decision:
        interval = emission_interval_us(plan)
        _check_cost(cost, plan)
        try:
            reply = await self._script(
                keys=[self.redis_key(key)], args=[interval, plan.burst, cost, int(dry_run)]
            )
        except (RedisError, OSError):
            if self._fallback is None:
                raise
            self._note_outage()
            return await self._fallback.hit(key, plan, cost, dry_run=dry_run)
        allowed, reset_us, retry_us = (int(value) for value in reply)
        return _decision(bool(allowed), reset_us, retry_us, interval, plan.burst)

    def _note_outage(self) -> None:
        now = time.monotonic()
        if now - self._last_outage_log >= 60:
            self._last_outage_log = now
            log.warning("redis unreachable: rate limits counted per process until it is back")

    async def close(self) -> None:
        await self._client.aclose()
        if self._fallback is not None:
            await self._fallback.close()


def rate_limit_headers(decision: Decision, plan: RatePlan) -> dict[str, str]:
    """``Retry-After`` (RFC 9110 10.2.3) and the draft-ietf-httpapi-ratelimit-headers-07 fields.

    Draft -07 (June 2023) defines ``RateLimit-Policy`` as a list of quota policies
    ``<limit>;w=<window seconds>`` (section 3.5) and ``RateLimit`` as the dictionary
    ``limit=<n>, remaining=<n>, reset=<seconds>`` (section 3.1); all values are integers. We
    advertise the burst per the time an empty bucket takes to refill (``w = ceil(b/r)``, 5 s for
    the default 50 at 10/s): that quota per window is the sustained rate. ``reset`` is the time
    until the bucket is full; on a refusal it equals ``Retry-After``, as section 4 recommends
    ("SHOULD reference the same point in time"). Seconds are rounded up so that a client which
    waits as told is not refused again.
    """
    window = max(1, math.ceil(plan.burst / plan.rate))
    if decision.allowed:
        reset = math.ceil(decision.reset_after)
        headers: dict[str, str] = {}
    else:
        reset = max(1, math.ceil(decision.retry_after))
        headers = {"Retry-After": str(reset)}
    headers["RateLimit-Policy"] = f"{decision.limit};w={window}"
    headers["RateLimit"] = f"limit={decision.limit}, remaining={decision.remaining}, reset={reset}"
    return headers

"""The rendered-image cache: one contract for the in-process LRU and Redis, then each one's own
bound (bytes for the LRU, time to live for Redis) and Redis being down."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from dicomvault.retrieve.cache import (
    KEY_PREFIX,
    MemoryRenderCache,
    RedisRenderCache,
    RenderCache,
)
from tests.support.redis_server import running_redis

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with running_redis() as url:
        yield url


@pytest.fixture(params=["in-process", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[RenderCache]:
    if request.param == "in-process":
        impl: RenderCache = MemoryRenderCache(1024 * 1024)
    else:
        impl = RedisRenderCache.from_url(request.getfixturevalue("redis_url"), 60, 1024 * 1024)
    yield impl
    await impl.close()


def key() -> str:
    return uuid.uuid4().hex


async def test_what_is_put_is_got(cache: RenderCache) -> None:
    k = key()
    assert await cache.get(k) is None
    await cache.put(k, b"\xff\xd8jpeg")
    assert await cache.get(k) == b"\xff\xd8jpeg"
    await cache.put(k, b"png")
    assert await cache.get(k) == b"png"


async def test_values_too_large_are_not_kept(cache: RenderCache) -> None:
    k = key()
    await cache.put(k, bytes(1024 * 1024 + 1))
    assert await cache.get(k) is None


async def test_memory_cache_evicts_least_recently_used_by_bytes() -> None:
    cache = MemoryRenderCache(800)  # values up to 100 bytes are kept
    for name in "abcdefgh":
        await cache.put(name, bytes(100))
    assert cache.size == 800
    assert await cache.get("a") is not None  # "a" is now the most recently used
    await cache.put("i", bytes(100))
    assert await cache.get("b") is None
    assert await cache.get("a") is not None and await cache.get("i") is not None
    assert cache.size == 800


async def test_memory_cache_of_zero_bytes_keeps_nothing() -> None:
    cache = MemoryRenderCache(0)
    await cache.put("a", b"x")
    assert await cache.get("a") is None


async def test_redis_entries_have_a_time_to_live(redis_url: str) -> None:
    cache = RedisRenderCache.from_url(redis_url, 30, 1024)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        k = key()
        await cache.put(k, b"image")
        assert 0 < await raw.ttl(KEY_PREFIX + k) <= 30
    finally:
        await raw.aclose()
        await cache.close()


async def test_redis_down_is_a_miss_not_an_error() -> None:
    cache = RedisRenderCache.from_url("redis://127.0.0.1:1/0", 30, 1024)
    try:
        await cache.put("k", b"image")
        assert await cache.get("k") is None
    finally:
        await cache.close()

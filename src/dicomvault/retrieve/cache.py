"""The cache of rendered images (DESIGN.md, retrieve: "cache (ETag; Redis or in-process LRU)").

Keys are strong ETags: a hash of the blob's SHA-256, the frames and every normalized rendering
parameter (``retrieve/rendered.py``), so an entry can never be stale: a changed instance is a
new blob with a new hash, and the old entry simply ages out. Values are the encoded image bytes
of one image: a multipart response is cached part by part, never as a whole.

Two implementations of one protocol, chosen in ``bootstrap.py``: an in-process LRU bounded by
bytes (the embedded default), and Redis shared by every API replica. A cache is an optimisation:
Redis being down makes requests slower, never failed.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("dicomvault.retrieve.cache")

KEY_PREFIX = "dicomvault:rendered:"


class RenderCache(Protocol):
    @property
    def max_value_bytes(self) -> int:
        """The largest value :meth:`put` keeps: a streamed image (an animated GIF) is collected
        for the cache only up to this size, and not at all past it."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None``."""
        ...

    async def put(self, key: str, value: bytes) -> None:
        """Keep ``value`` under ``key`` (as long as the cache sees fit)."""
        ...

    async def close(self) -> None: ...


class MemoryRenderCache:
    """Least recently used entries go first once the values exceed ``max_bytes`` in total.

    Only ever touched from the event loop, so no lock is needed. A value larger than an eighth
    of the cache is not kept: one huge image must not flush everything else.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    @property
    def size(self) -> int:
        """Bytes held now."""
        return self._size

    @property
    def max_value_bytes(self) -> int:
        return self._max_bytes // 8

    async def get(self, key: str) -> bytes | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    async def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_value_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= len(old)
        self._entries[key] = value
        self._size += len(value)
        while self._size > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._size -= len(evicted)

    async def close(self) -> None:
        self._entries.clear()
        self._size = 0


class RedisRenderCache:
    """Entries in Redis under ``dicomvault:rendered:<etag>`` with a time to live; Redis's own
    eviction policy (``maxmemory``) bounds the total."""

    def __init__(self, client: aioredis.Redis, ttl_seconds: int, max_value_bytes: int) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._max_value = max_value_bytes
        self._warned = False

    @classmethod
    def from_url(cls, url: str, ttl_seconds: int, max_value_bytes: int) -> RedisRenderCache:
        client = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return cls(client, ttl_seconds, max_value_bytes)

    @property
    def max_value_bytes(self) -> int:
        return self._max_value

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._client.get(KEY_PREFIX + key)
        except (RedisError, OSError) as exc:
            self._unavailable(exc)
            return None
        self._warned = False
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes) -> None:
        if len(value) > self._max_value:
            return
        try:
            await self._client.set(KEY_PREFIX + key, value, ex=self._ttl)
        except (RedisError, OSError) as exc:
            self._unavailable(exc)

    async def close(self) -> None:
        await self._client.aclose()

    def _unavailable(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            reason = type(exc).__name__
            log.warning("rendered-image cache unavailable, rendering uncached: %s", reason)

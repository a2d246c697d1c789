"""Blobs in an S3-compatible bucket through obstore: the at-scale store (DESIGN.md, state).

obstore's Rust client does the HTTP work off the event loop. A put streams the file from disk
in parts (multipart upload above ``PART_SIZE``), so a 500 MB instance costs a few parts of memory,
never the whole file; an S3 PUT is atomic, so readers see all of a blob or none of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

import obstore
from obstore.exceptions import GenericError
from obstore.store import S3Store

from dicomvault.storage.base import BlobNotFound, check_key

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Config

PART_SIZE = 8 * 1024 * 1024
# Parts in flight at once: bounds the memory a put holds (PART_SIZE * PUT_CONCURRENCY).
PUT_CONCURRENCY = 4
# obstore's default 30 s request timeout also covers reading a streamed body, too short for a
# large instance over a slow link.
DEFAULT_TIMEOUT = timedelta(minutes=10)

_S3_SCHEMES = ("s3", "s3a")
_CONFIG_PARAMS = ("endpoint", "region", "access_key_id", "secret_access_key", "session_token")
_TRUE = ("1", "true", "yes", "on")


class ObjectBlobStore:
    """``BlobStore`` on an obstore ``S3Store``; keys are object paths under the store's prefix."""

    def __init__(self, store: S3Store) -> None:
        self.store = store

    @classmethod
    def from_url(cls, url: str) -> ObjectBlobStore:
        """Build from ``s3://bucket/optional/prefix?endpoint=...&region=...&allow_http=true``.

        Credentials come from the usual ``AWS_*`` environment variables, or from the
        ``access_key_id`` / ``secret_access_key`` (/ ``session_token``) query parameters. Unknown
        parameters are refused so that a typo in a setting fails at start-up, not at first write.
        """
        parts = urlsplit(url)
        if parts.scheme not in _S3_SCHEMES or not parts.netloc:
            raise ValueError("object store URL must look like s3://bucket/optional/prefix")
        config: S3Config = {}
        client: ClientConfig = {"timeout": DEFAULT_TIMEOUT}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name in _CONFIG_PARAMS:
                config[name] = value  # type: ignore[literal-required]
            elif name == "allow_http":
                client["allow_http"] = value.lower() in _TRUE
            elif name == "timeout":
                client["timeout"] = value
            else:
                raise ValueError(f"unknown object store URL parameter: {name}")
        prefix = parts.path.strip("/") or None
        return cls(S3Store(parts.netloc, prefix=prefix, config=config, client_options=client))

    async def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        """Upload ``path`` (multipart when larger than a part); overwriting is atomic in S3."""
        check_key(key)
        await obstore.put_async(
            self.store,
            key,
            path,
            chunk_size=PART_SIZE,
            max_concurrency=PUT_CONCURRENCY,
        )

    async def open_stream(self, key: str, chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
        check_key(key)
        try:
            result = await obstore.get_async(self.store, key)
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
        async for chunk in result.stream(min_chunk_size=chunk_size):
            yield chunk

    def blocking_range_reader(self, key: str, start: int, end: int) -> Callable[[], bytes] | None:
        """None: a ranged GET is a network round trip, made with ``read_range`` on the loop."""
        check_key(key)
        return None

    async def read_range(self, key: str, start: int, end: int) -> bytes:
        """One ranged GET. Same semantics as the local store: ``start == end`` gives ``b""``,
        a range running past the end is cut short, one starting past the end is a ValueError."""
        check_key(key)
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end})")
        if start == end:
            await self.size(key)  # still BlobNotFound for a missing key
            return b""
        try:
            data = await obstore.get_range_async(self.store, key, start=start, end=end)
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
        except GenericError:
            # S3 answers 416 to a range past the end; tell that apart from a transport error.
            if start >= await self.size(key):
                raise ValueError(
                    f"byte range [{start}, {end}) starts past the end of {key}"
                ) from None
            raise
        return bytes(data)

    async def size(self, key: str) -> int:
        check_key(key)
        try:
            meta = await obstore.head_async(self.store, key)
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
        return meta["size"]

    async def exists(self, key: str) -> bool:
        try:
            await self.size(key)
        except BlobNotFound:
            return False
        return True

    async def delete(self, key: str) -> None:
        check_key(key)
        try:
            await obstore.delete_async(self.store, key)
        except FileNotFoundError:
            return

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Keys under ``prefix``, matched on whole path segments.

        ``t1/1.2`` lists ``t1/1.2/...`` but not ``t1/1.23/...``; keys come relative to the
        store's own prefix, as they were put.
        """
        prefix = check_key(prefix.removesuffix("/")) if prefix else ""
        async for batch in obstore.list(self.store, prefix or None, chunk_size=1000):
            for meta in batch:
                yield meta["path"]

    async def close(self) -> None:
        """Nothing to release: obstore's connection pool goes with the store object."""

"""The BlobStore contract (``dicomvault.storage.base``), run against every implementation."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
import pytest

from dicomvault.storage import BlobNotFound, BlobStore, InvalidBlobKey, blob_key

pytestmark = pytest.mark.anyio

Spool = Callable[[bytes], Path]

SHA = "ab" * 32
KEY = blob_key("tenant-a", "1.2.840.1", "1.2.840.1.2", "1.2.840.1.2.3", SHA)
DATA = bytes(range(256)) * 4096  # 1 MiB, every byte value, position-dependent


async def collect(store: BlobStore, key: str, chunk_size: int = 1024 * 1024) -> list[bytes]:
    return [chunk async for chunk in store.open_stream(key, chunk_size)]


async def keys(store: BlobStore, prefix: str = "") -> list[str]:
    return sorted([key async for key in store.list_keys(prefix)])


async def test_put_then_exists_size_and_stream_round_trip(store: BlobStore, spool: Spool) -> None:
    assert not await store.exists(KEY)

    await store.put_file(KEY, spool(DATA))

    assert await store.exists(KEY)
    assert await store.size(KEY) == len(DATA)
    chunks = await collect(store, KEY, chunk_size=64 * 1024)
    assert len(chunks) > 1
    assert b"".join(chunks) == DATA


async def test_empty_blob_round_trips(store: BlobStore, spool: Spool) -> None:
    await store.put_file(KEY, spool(b""))

    assert await store.exists(KEY)
    assert await store.size(KEY) == 0
    assert b"".join(await collect(store, KEY)) == b""


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(0, 132, id="start"),
        pytest.param(500_000, 500_517, id="middle"),
        pytest.param(len(DATA) - 300, len(DATA), id="end"),
        pytest.param(0, len(DATA), id="whole"),
        pytest.param(12_345, 12_346, id="one-byte"),
    ],
)
async def test_read_range_returns_exactly_the_range(
    store: BlobStore, spool: Spool, start: int, end: int
) -> None:
    await store.put_file(KEY, spool(DATA))

    assert await store.read_range(KEY, start, end) == DATA[start:end]


async def test_a_blocking_range_read_gives_the_same_bytes_or_is_declined(
    store: BlobStore, spool: Spool
) -> None:
    await store.put_file(KEY, spool(DATA))
    read = store.blocking_range_reader(KEY, 1000, 70_000)
    if read is None:  # an object store: its ranged GET is a network call, made with read_range
        return
    assert await anyio.to_thread.run_sync(read) == await store.read_range(KEY, 1000, 70_000)
    with pytest.raises(ValueError):
        store.blocking_range_reader(KEY, 10, 5)
    other = blob_key("tenant-a", "1.2.840.1", "1.2.840.1.2", "1.2.840.1.2.4", SHA)
    missing = store.blocking_range_reader(other, 0, 10)
    assert missing is not None
    with pytest.raises(BlobNotFound):
        await anyio.to_thread.run_sync(missing)


async def test_read_range_past_the_end_is_cut_short(store: BlobStore, spool: Spool) -> None:
    await store.put_file(KEY, spool(DATA))

    assert await store.read_range(KEY, len(DATA) - 10, len(DATA) + 100) == DATA[-10:]


async def test_empty_range_is_empty(store: BlobStore, spool: Spool) -> None:
    await store.put_file(KEY, spool(DATA))

    assert await store.read_range(KEY, 100, 100) == b""


@pytest.mark.parametrize(
    ("start", "end"),
    [(-1, 10), (10, 5), (len(DATA), len(DATA) + 1), (len(DATA) + 50, len(DATA) + 60)],
    ids=["negative", "reversed", "at-end", "past-end"],
)
async def test_invalid_range_is_refused(
    store: BlobStore, spool: Spool, start: int, end: int
) -> None:
    await store.put_file(KEY, spool(DATA))

    with pytest.raises(ValueError):
        await store.read_range(KEY, start, end)


async def test_putting_the_same_bytes_twice_is_harmless(store: BlobStore, spool: Spool) -> None:
    await store.put_file(KEY, spool(DATA))
    await store.put_file(KEY, spool(DATA))

    assert await store.size(KEY) == len(DATA)
    assert b"".join(await collect(store, KEY)) == DATA
    assert await keys(store) == [KEY]


async def test_a_put_replaces_the_whole_blob(store: BlobStore, spool: Spool) -> None:
    await store.put_file(KEY, spool(DATA))
    replacement = b"\x01" * 1000

    await store.put_file(KEY, spool(replacement))

    assert b"".join(await collect(store, KEY)) == replacement


async def test_missing_blob_is_blob_not_found(store: BlobStore) -> None:
    assert not await store.exists(KEY)
    with pytest.raises(BlobNotFound):
        await store.size(KEY)
    with pytest.raises(BlobNotFound):
        await store.read_range(KEY, 0, 10)
    with pytest.raises(BlobNotFound):
        await store.read_range(KEY, 0, 0)
    stream = store.open_stream(KEY)
    with pytest.raises(BlobNotFound):
        await anext(stream)


async def test_a_key_prefix_of_a_blob_is_not_a_blob(store: BlobStore, spool: Spool) -> None:
    """``t/1/2/3`` holds blobs but is not one (a directory, for the local store)."""
    await store.put_file(KEY, spool(DATA))
    parent = KEY.rsplit("/", 1)[0]

    assert not await store.exists(parent)
    with pytest.raises(BlobNotFound):
        await store.size(parent)
    with pytest.raises(BlobNotFound):
        await anext(store.open_stream(parent))


async def test_delete_removes_and_is_idempotent(store: BlobStore, spool: Spool) -> None:
    await store.put_file(KEY, spool(DATA))

    await store.delete(KEY)
    await store.delete(KEY)

    assert not await store.exists(KEY)
    with pytest.raises(BlobNotFound):
        await store.size(KEY)
    assert await keys(store) == []


async def test_delete_of_a_never_stored_key_is_not_an_error(store: BlobStore) -> None:
    await store.delete("t/never/stored.dcm")

    assert not await store.exists("t/never/stored.dcm")


async def test_delete_leaves_other_blobs_alone(store: BlobStore, spool: Spool) -> None:
    sibling = KEY.rsplit("/", 1)[0] + "/ffffffffffffffff.dcm"
    await store.put_file(KEY, spool(DATA))
    await store.put_file(sibling, spool(b"sibling"))

    await store.delete(KEY)

    assert await keys(store) == [sibling]
    assert b"".join(await collect(store, sibling)) == b"sibling"


async def test_list_keys_matches_whole_path_segments(store: BlobStore, spool: Spool) -> None:
    wanted = ["t1/1.2/1.2.1/a.dcm", "t1/1.2/1.2.2/b.dcm", "t1/1.2/c.dcm"]
    others = ["t1/1.23/1.23.1/d.dcm", "t2/1.2/1.2.1/e.dcm", "top.dcm"]
    for key in wanted + others:
        await store.put_file(key, spool(key.encode()))

    assert await keys(store, "t1/1.2") == wanted
    assert await keys(store, "t1/1.2/") == wanted
    assert await keys(store, "t1") == sorted(wanted + others[:1])
    assert await keys(store) == sorted(wanted + others)
    assert await keys(store, "t3") == []


BAD_KEYS = [
    "",
    "/abs/x.dcm",
    "../x.dcm",
    "a/../../x.dcm",
    "a/..",
    "a//b.dcm",
    "a/./b",
    "a/",
    "a\x00b",
]


@pytest.mark.parametrize("bad", BAD_KEYS, ids=repr)
async def test_unsafe_keys_are_refused_everywhere(store: BlobStore, spool: Spool, bad: str) -> None:
    source = spool(DATA)
    with pytest.raises(InvalidBlobKey):
        await store.put_file(bad, source)
    with pytest.raises(InvalidBlobKey):
        await store.exists(bad)
    with pytest.raises(InvalidBlobKey):
        await store.size(bad)
    with pytest.raises(InvalidBlobKey):
        await store.read_range(bad, 0, 1)
    with pytest.raises(InvalidBlobKey):
        store.blocking_range_reader(bad, 0, 1)
    with pytest.raises(InvalidBlobKey):
        await anext(store.open_stream(bad))
    with pytest.raises(InvalidBlobKey):
        await store.delete(bad)
    assert await keys(store) == []


@pytest.mark.parametrize("bad", ["../x", "/abs", "/", "a//", "a/../..", "a\x00"], ids=repr)
async def test_unsafe_list_prefix_is_refused(store: BlobStore, bad: str) -> None:
    with pytest.raises(InvalidBlobKey):
        await keys(store, bad)


async def test_large_put_streams_correctly(store: BlobStore, tmp_path: Path) -> None:
    """~20 MB: several object-store parts; the bytes must come back identical and in order."""
    source = tmp_path / "large.part"
    digest = hashlib.sha256()
    with source.open("wb") as out:
        for _ in range(20):
            block = os.urandom(1024 * 1024 + 7)
            digest.update(block)
            out.write(block)
    size = source.stat().st_size

    await store.put_file(KEY, source)

    assert await store.size(KEY) == size
    received = hashlib.sha256()
    async for chunk in store.open_stream(KEY, chunk_size=4 * 1024 * 1024):
        received.update(chunk)
    assert received.hexdigest() == digest.hexdigest()
    with source.open("rb") as f:
        f.seek(15 * 1024 * 1024 + 3)
        expected = f.read(4096)
    assert await store.read_range(KEY, 15 * 1024 * 1024 + 3, 15 * 1024 * 1024 + 4099) == expected


async def test_put_with_move_stores_the_bytes_and_may_take_the_file(
    store: BlobStore, spool: Spool
) -> None:
    source = spool(DATA)

    await store.put_file(KEY, source, move=True)
    source.unlink(missing_ok=True)  # what the caller does afterwards

    assert b"".join(await collect(store, KEY)) == DATA
    await store.put_file(KEY, spool(DATA), move=True)  # idempotent re-send
    assert await store.size(KEY) == len(DATA)

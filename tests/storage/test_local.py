"""What only the local store can get wrong: temp files, fsync/rename, escaping the root."""

# Inspecting the store's directory from inside async tests is the point of these tests.
# ruff: noqa: ASYNC240

from __future__ import annotations

import os
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from dicomvault.storage import BlobNotFound, InvalidBlobKey, LocalBlobStore
from dicomvault.storage import local as local_module

pytestmark = pytest.mark.anyio

KEY = "t/1.2/1.2.3/1.2.3.4/0123456789abcdef.dcm"
DATA = os.urandom(3 * 1024 * 1024 + 11)  # more than one copy buffer


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
def store(root: Path) -> LocalBlobStore:
    return LocalBlobStore(root)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "upload.part"
    path.write_bytes(DATA)
    return path


async def test_put_writes_the_file_under_root_and_leaves_the_source(
    store: LocalBlobStore, root: Path, source: Path
) -> None:
    await store.put_file(KEY, source)

    assert (root / KEY).read_bytes() == DATA
    assert all_files(root) == [root / KEY]
    assert source.read_bytes() == DATA  # the caller owns and deletes its spool file


async def test_missing_source_leaves_nothing_behind(
    store: LocalBlobStore, root: Path, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        await store.put_file(KEY, tmp_path / "vanished.part")

    assert all_files(root) == []
    assert not await store.exists(KEY)


async def test_write_failing_midway_leaves_no_temp_file(
    store: LocalBlobStore, root: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_copy = local_module._copy

    def copy_half_then_fail(src: object, out: object) -> None:
        out.write(src.read(len(DATA) // 2))  # type: ignore[attr-defined]
        out.flush()  # type: ignore[attr-defined]
        assert any(p.name.startswith(".tmp-") for p in all_files(root))  # really mid-write
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local_module, "_copy", copy_half_then_fail)
    with pytest.raises(OSError, match="No space"):
        await store.put_file(KEY, source)

    assert all_files(root) == []
    assert not await store.exists(KEY)
    monkeypatch.setattr(local_module, "_copy", real_copy)
    await store.put_file(KEY, source)  # and the store is still usable
    assert (root / KEY).read_bytes() == DATA


@pytest.mark.parametrize("failing", ["fsync", "replace"])
async def test_fsync_or_rename_failure_keeps_the_old_blob_and_no_temp_file(
    store: LocalBlobStore,
    root: Path,
    source: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
) -> None:
    await store.put_file(KEY, source)
    other = tmp_path / "other.part"
    other.write_bytes(b"different bytes")

    def fail(*args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="Input/output"):
        await store.put_file(KEY, other)
    monkeypatch.undo()

    assert all_files(root) == [root / KEY]
    assert (root / KEY).read_bytes() == DATA


async def test_same_content_put_does_not_rewrite(
    store: LocalBlobStore, root: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.put_file(KEY, source)
    inode = (root / KEY).stat().st_ino

    def must_not_copy(*args: object) -> None:
        raise AssertionError("identical re-send was copied again")

    monkeypatch.setattr(local_module, "_copy", must_not_copy)
    await store.put_file(KEY, source)

    assert (root / KEY).stat().st_ino == inode


async def test_same_size_different_content_is_replaced(
    store: LocalBlobStore, root: Path, source: Path, tmp_path: Path
) -> None:
    await store.put_file(KEY, source)
    flipped = bytearray(DATA)
    flipped[-1] ^= 0xFF
    other = tmp_path / "flipped.part"
    other.write_bytes(bytes(flipped))

    await store.put_file(KEY, other)

    assert (root / KEY).read_bytes() == bytes(flipped)


async def test_delete_prunes_empty_directories_but_not_root_or_siblings(
    store: LocalBlobStore, root: Path, source: Path
) -> None:
    sibling = "t/1.2/1.2.9/1.2.9.1/fedcba9876543210.dcm"
    await store.put_file(KEY, source)
    await store.put_file(sibling, source)

    await store.delete(KEY)

    assert not (root / "t/1.2/1.2.3").exists()
    assert (root / sibling).is_file()
    await store.delete(sibling)
    assert root.is_dir()
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("key", ["../outside.dcm", "a/../../outside.dcm", "/etc/passwd"])
async def test_dotdot_cannot_escape_root(
    store: LocalBlobStore, tmp_path: Path, source: Path, key: str
) -> None:
    with pytest.raises(InvalidBlobKey):
        store.path_for(key)
    with pytest.raises(InvalidBlobKey):
        await store.put_file(key, source)
    assert not (tmp_path / "outside.dcm").exists()


async def test_symlink_inside_root_cannot_lead_outside(
    store: LocalBlobStore, root: Path, tmp_path: Path, source: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.dcm").write_bytes(b"not yours")
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)

    with pytest.raises(InvalidBlobKey):
        await store.size("link/secret.dcm")
    with pytest.raises(InvalidBlobKey):
        await store.put_file("link/new.dcm", source)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.dcm"]


async def test_temp_file_names_are_reserved_and_never_listed(
    store: LocalBlobStore, root: Path, source: Path
) -> None:
    await store.put_file(KEY, source)
    stray = (root / KEY).parent / ".tmp-crashed-put"
    stray.write_bytes(b"partial")

    assert [key async for key in store.list_keys()] == [KEY]
    with pytest.raises(InvalidBlobKey):
        await store.size("t/.tmp-crashed-put")


async def test_put_into_a_path_below_a_blob_fails_cleanly(
    store: LocalBlobStore, root: Path, source: Path
) -> None:
    await store.put_file(KEY, source)

    with pytest.raises(NotADirectoryError):
        await store.put_file(f"{KEY}/child.dcm", source)
    with pytest.raises(BlobNotFound):
        await store.size(f"{KEY}/child.dcm")
    assert all_files(root) == [root / KEY]


async def test_put_does_not_block_the_event_loop(store: LocalBlobStore, tmp_path: Path) -> None:
    big = tmp_path / "big.part"
    big.write_bytes(DATA * 6)  # ~18 MB
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await store.put_file(KEY, big)
        ticks_during_put = ticks
        tg.cancel_scope.cancel()

    assert ticks_during_put > 10


async def test_concurrent_puts_and_deletes_in_one_directory(
    store: LocalBlobStore, root: Path, tmp_path: Path
) -> None:
    """A delete prunes the directory a concurrent put is about to write into: the put must win."""
    small = tmp_path / "small.part"
    small.write_bytes(b"x" * 100)
    directory = "t/1.2/1.2.3/1.2.3.4"

    async def churn(name: str) -> None:
        for _ in range(30):
            await store.put_file(f"{directory}/{name}.dcm", small)
            await store.delete(f"{directory}/{name}.dcm")

    async with anyio.create_task_group() as tg:
        for name in ("a", "b", "c", "d"):
            tg.start_soon(churn, name)

    await store.put_file(KEY, small)
    assert [key async for key in store.list_keys()] == [KEY]
    assert [p.name for p in all_files(root)] == ["0123456789abcdef.dcm"]

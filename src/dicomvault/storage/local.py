"""Blobs as files under one directory: the embedded default (DESIGN.md, storage of state).

A put is temp file → fsync → ``os.replace`` → fsync of the directory, so a reader or a crash sees
either the whole blob or none of it (DESIGN.md data flow, step 3). All blocking file I/O runs in
worker threads so that a 500 MB copy never stalls the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from io import BufferedReader, BufferedWriter
from pathlib import Path

import anyio
import anyio.to_thread

from dicomvault.storage.base import BlobNotFound, InvalidBlobKey, check_key

# Temp files live next to their destination (same filesystem, so the rename is atomic) under a
# reserved name prefix that no key may use and that list_keys skips.
TEMP_PREFIX = ".tmp-"
COPY_BUFFER = 1024 * 1024
_MKDIR_ATTEMPTS = 50


class LocalBlobStore:
    """``BlobStore`` on a local directory; key ``a/b/c.dcm`` is the file ``root/a/b/c.dcm``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``; refuses any key whose file would lie outside the root.

        ``check_key`` already refuses ``..``; resolving and re-checking also stops a symlink
        planted inside the root from leading a key outside it. Resolving touches the disk, so
        the async methods call this in a worker thread.
        """
        check_key(key)
        if any(part.startswith(TEMP_PREFIX) for part in key.split("/")):
            raise InvalidBlobKey(key)
        path = self.root / key
        if not path.resolve().is_relative_to(self.root):
            raise InvalidBlobKey(key)
        return path

    async def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        put = _move_file_sync if move else _put_file_sync
        await anyio.to_thread.run_sync(lambda: put(self.path_for(key), path))

    async def open_stream(self, key: str, chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
        """The blob in chunks. Opening and the first chunk are one worker-thread hop, and a
        blob no larger than one chunk (most single-frame instances) is read and closed in it:
        each hop is a GIL hand-over, and a 400 KB instance used to take four."""
        file, first, at_end = await anyio.to_thread.run_sync(self._open_and_read, key, chunk_size)
        if at_end:
            if first:
                yield first
            return
        assert file is not None
        try:
            yield first
            del first
            while chunk := await anyio.to_thread.run_sync(file.read, chunk_size):
                yield chunk
        finally:
            file.close()

    def _open_and_read(
        self, key: str, chunk_size: int
    ) -> tuple[BufferedReader | None, bytes, bool]:
        """(the open file or None once read whole, the first chunk, whether that was all)."""
        file = self._open(key)
        try:
            first = file.read(chunk_size)
            if len(first) < chunk_size or os.fstat(file.fileno()).st_size <= file.tell():
                file.close()
                return None, first, True
        except BaseException:
            file.close()
            raise
        return file, first, False

    def _open(self, key: str) -> BufferedReader:
        try:
            return self.path_for(key).open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise BlobNotFound(key) from exc

    async def read_range(self, key: str, start: int, end: int) -> bytes:
        check_key(key)
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end})")
        return await anyio.to_thread.run_sync(
            lambda: _read_range_sync(self.path_for(key), key, start, end)
        )

    def blocking_range_reader(self, key: str, start: int, end: int) -> Callable[[], bytes] | None:
        check_key(key)
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end})")
        return lambda: _read_range_sync(self.path_for(key), key, start, end)

    async def size(self, key: str) -> int:
        return await anyio.to_thread.run_sync(lambda: _regular_file_size(self.path_for(key), key))

    async def exists(self, key: str) -> bool:
        try:
            await self.size(key)
        except BlobNotFound:
            return False
        return True

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(lambda: _delete_sync(self.root, self.path_for(key)))

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Keys under ``prefix``, matched on whole path segments as object stores do.

        ``t1/1.2`` lists ``t1/1.2/...`` but not ``t1/1.23/...``. The tree is walked one directory
        per thread hop, so a large store is never listed into memory at once.
        """
        base = self.root
        if prefix:
            base = await anyio.to_thread.run_sync(self.path_for, _directory_prefix(prefix))
        walker = os.walk(base)
        while (step := await anyio.to_thread.run_sync(next, walker, None)) is not None:
            directory, _dirs, files = step
            relative = Path(directory).relative_to(self.root)
            for name in sorted(files):
                if name.startswith(TEMP_PREFIX):
                    continue
                yield (relative / name).as_posix()

    async def close(self) -> None:
        """Nothing to release: every operation opens and closes its own files."""


def _directory_prefix(prefix: str) -> str:
    """``a/b/`` and ``a/b`` name the same directory; ``/`` alone is absolute and refused."""
    return check_key(prefix.removesuffix("/"))


def _regular_file_size(path: Path, key: str) -> int:
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise BlobNotFound(key) from exc
    if not stat.S_ISREG(st.st_mode):
        raise BlobNotFound(key)
    return st.st_size


def _read_range_sync(path: Path, key: str, start: int, end: int) -> bytes:
    """``os.pread`` the range: no seek state shared, nothing outside the range read.

    A range running past the end is cut short at the end (as an HTTP range is); one starting at or
    after the end of a non-empty request is an error, as object stores answer 416 to it.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise BlobNotFound(key) from exc
    try:
        if end > start and start >= os.fstat(fd).st_size:
            raise ValueError(f"byte range [{start}, {end}) starts past the end of {key}")
        parts: list[bytes] = []
        offset = start
        while offset < end:
            chunk = os.pread(fd, end - offset, offset)
            if not chunk:
                break
            parts.append(chunk)
            offset += len(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def _put_file_sync(dest: Path, source: Path) -> None:
    if _same_content(dest, source):
        return
    with source.open("rb") as src:
        fd, tmp_name = _make_temp(dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                _copy(src, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _fsync_dir(dest.parent)


def _move_file_sync(dest: Path, source: Path) -> None:
    """Rename a spool file into place (same filesystem): no second copy of a 500 MB instance.

    The source is fsynced first so the renamed blob's bytes are durable before its name is.
    Falls back to copying when the spool lies on another filesystem.
    """
    if _same_content(dest, source):
        return
    fd = os.open(source, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for _ in range(_MKDIR_ATTEMPTS):
        try:
            _make_dirs(dest.parent)
            os.replace(source, dest)
            break
        except FileNotFoundError:  # a concurrent delete pruned the directory: make it again
            if not source.exists():
                raise
            continue
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _put_file_sync(dest, source)
            return
    else:
        raise OSError(f"could not create the directory of {dest.name}: pruned again each time")
    _fsync_dir(dest.parent)


def _copy(src: BufferedReader, out: BufferedWriter) -> None:
    """Copy with a large buffer; a blob is never held in memory whole."""
    buffer = bytearray(COPY_BUFFER)
    view = memoryview(buffer)
    while n := src.readinto(buffer):
        out.write(view[:n])


def _same_content(dest: Path, source: Path) -> bool:
    """True when ``dest`` already holds exactly the bytes of ``source`` (an idempotent re-send)."""
    try:
        if dest.stat().st_size != source.stat().st_size:
            return False
        with dest.open("rb") as a, source.open("rb") as b:
            while True:
                chunk_a, chunk_b = a.read(COPY_BUFFER), b.read(COPY_BUFFER)
                if chunk_a != chunk_b:
                    return False
                if not chunk_a:
                    return True
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False


def _make_temp(directory: Path) -> tuple[int, str]:
    """Create the destination directory and a temp file in it.

    A concurrent delete may prune a freshly made directory (or one of its parents) before the
    temp file appears in it, so creation is retried; once the temp file exists, the directories
    above it are not empty and stay.
    """
    for _ in range(_MKDIR_ATTEMPTS):
        try:
            _make_dirs(directory)
            return tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX)
        except FileNotFoundError:  # a parent was pruned under us: start again from the top
            continue
    raise OSError(errno.ENOENT, "blob directory keeps disappearing", str(directory))


def _make_dirs(directory: Path) -> None:
    """``mkdir -p``, fsyncing each parent that gained an entry so the new path survives a crash.

    The root itself is made too on the first put, so a fresh data directory needs no set-up.
    """
    missing: list[Path] = []
    current = directory
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for new in reversed(missing):
        with contextlib.suppress(FileExistsError):
            new.mkdir()
        _fsync_dir(new.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _delete_sync(root: Path, dest: Path) -> None:
    try:
        dest.unlink()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return
    for parent in _parents_below(root, dest):
        try:
            parent.rmdir()
        except OSError:  # not empty, or a concurrent put/delete got there first
            return


def _parents_below(root: Path, path: Path) -> Iterator[Path]:
    for parent in path.parents:
        if parent == root or not parent.is_relative_to(root):
            return
        yield parent

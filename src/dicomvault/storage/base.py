"""The BlobStore contract: immutable DICOM blobs addressed by key.

One contract test suite (tests/storage) runs against every implementation.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

from dicomvault.config import is_valid_tenant_name
from dicomvault.errors import NotFound

# Matched with fullmatch: "$" alone would also accept a value ending in a newline.
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_HEX = re.compile(r"[0-9a-f]{16,64}")
_PUT_ID = re.compile(r"[0-9a-f]{8,32}")


class BlobNotFound(NotFound):
    """The key names no blob.

    A :class:`NotFound`, so that a blob gone under a reader (a DELETE racing a retrieve, a
    blob lost from the store) answers 404 like an instance that was never there, not 500. The
    key stays out of the message a client may see.
    """

    def __init__(self, key: str) -> None:
        super().__init__("no such study, series or instance")
        self.key = key

    def __str__(self) -> str:
        # For logs and tracebacks (a blob missing under its index row is an integrity problem
        # to trace); a client sees ``message`` only. Keys hold UIDs and a tenant, never PHI.
        return f"no blob under key {self.key}"


class InvalidBlobKey(ValueError):
    """A key part would let a value escape the blob root or is not what it claims to be."""


def blob_key(
    tenant: str,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    sha256: str,
    put_id: str | None = None,
) -> str:
    """Build ``{tenant}/{study}/{series}/{sop}/{sha256[:16]}[-{put_id}].dcm`` (DESIGN.md data
    flow, step 3).

    Ingest gives every put its own ``put_id``, so that no two requests ever share a blob: a
    delete (of a replaced or deleted instance, of a duplicate's copy, by the sweep) can then
    only remove the blob of the row it acted on, never one that a concurrent store of the same
    bytes has just committed a row for. Every part is checked against a strict pattern so that
    no value (``..``, ``/``, NUL) can address anything outside the blob root, whatever validated
    it before.
    """
    if not is_valid_tenant_name(tenant):
        raise InvalidBlobKey("tenant")
    for uid in (study_uid, series_uid, sop_uid):
        if not _UID.fullmatch(uid) or len(uid) > 64:
            raise InvalidBlobKey("uid")
    if not _HEX.fullmatch(sha256):
        raise InvalidBlobKey("sha256")
    if put_id is not None and not _PUT_ID.fullmatch(put_id):
        raise InvalidBlobKey("put_id")
    name = sha256[:16] if put_id is None else f"{sha256[:16]}-{put_id}"
    return f"{tenant}/{study_uid}/{series_uid}/{sop_uid}/{name}.dcm"


def check_key(key: str) -> str:
    """Refuse keys that are absolute, empty, or walk out of the root through ``..``."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in key:
        raise InvalidBlobKey(key)
    return key


class BlobStore(Protocol):
    """Immutable blob storage. Implementations: ``LocalBlobStore``, ``ObjectBlobStore``.

    Every method refuses an unsafe key (see ``check_key``) with ``InvalidBlobKey`` before it
    touches storage. A key that is only a prefix of other keys (a "directory") is not a blob.
    """

    async def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        """Store the file at ``path`` under ``key`` atomically: readers see all of it or nothing.

        Local disk: temp file → fsync → rename → fsync dir. Putting the same key twice with the
        same bytes is harmless (keys contain a content hash). With ``move=True`` the store may
        take the file itself (a rename on local disk): afterwards the caller only removes
        ``path`` if it still exists.
        """
        ...

    def open_stream(self, key: str, chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
        """Yield the blob's bytes in chunks; raise ``BlobNotFound`` (at first iteration)."""
        ...

    async def read_range(self, key: str, start: int, end: int) -> bytes:
        """Return bytes ``[start, end)`` without reading the rest of the blob.

        As an HTTP range: a range running past the end is cut short at the end; ``start == end``
        gives ``b""``. ``ValueError`` for ``start < 0``, ``end < start``, or a non-empty range
        starting at or past the end (a truncated blob, not a short read). ``BlobNotFound`` when
        absent.
        """
        ...

    def blocking_range_reader(self, key: str, start: int, end: int) -> Callable[[], bytes] | None:
        """A blocking ``read_range`` for a worker thread that is about to use the bytes itself,
        or None when the store has no cheap blocking read (an object store: use ``read_range``).

        Local disk answers with a page-cache ``pread``: reading inside the thread that renders
        the frame saves a hand-over between threads per cold rendered image.
        """
        ...

    async def size(self, key: str) -> int:
        """Size in bytes; ``BlobNotFound`` when absent."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove the blob; a missing key is not an error (deletes are retried)."""
        ...

    def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield every key under ``prefix`` (used by verify and sweeps, not on hot paths).

        ``prefix`` matches whole path segments, as object stores list: ``t1/1.2`` (or
        ``t1/1.2/``) yields ``t1/1.2/...`` but not ``t1/1.23/...``. Order is unspecified.
        """
        ...

    async def close(self) -> None: ...

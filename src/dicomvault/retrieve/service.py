"""Reading instances back (PS3.18 10.4, WADO-RS): whole files, metadata, frames, bulk data.

Everything starts with the scoped index lookup: an instance outside the caller's tenants is
indistinguishable from an unknown one (404).
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import orjson
from pydicom.dataset import Dataset

from dicomvault.dicom.dicomjson import read_bulk_value
from dicomvault.dicom.parse import ParseLimits
from dicomvault.dicom.problems import DicomProblem
from dicomvault.errors import BadRequest, DicomVaultError, NotAcceptable, NotFound
from dicomvault.index.repository import IndexRepository, StoredInstance, StudyOwner
from dicomvault.index.scope import Scope
from dicomvault.retrieve.frames import decode_frame_native, frame_ranges, read_deflated_frames
from dicomvault.retrieve.syntaxes import (  # re-exported: retrieve/rendered.py imports it here
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN as DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
)
from dicomvault.storage.base import BlobStore

BULK_PLACEHOLDER = b"@@BULK_BASE@@"


class UnprocessableInstance(DicomVaultError):
    """The stored instance cannot be turned into what was asked for: its header and pixels
    disagree, its pixels do not decode, or they exceed the configured caps (RFC 9110 15.5.21:
    the request is understood, the target cannot be processed)."""

    http_status = 422


@dataclass(frozen=True)
class Frame:
    number: int
    data: bytes


@dataclass(frozen=True)
class Metadata:
    """A WADO-RS metadata answer: the DICOM JSON array and the studies' owners."""

    body: bytes
    owners: tuple[StudyOwner, ...]


class Retriever:
    def __init__(
        self,
        repository: IndexRepository,
        store: BlobStore,
        limits: ParseLimits,
        spool_dir: Path,
    ) -> None:
        self._repository = repository
        self._store = store
        self._limits = limits
        self._spool_dir = spool_dir

    async def instances(
        self,
        scope: Scope,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> list[StoredInstance]:
        found = await self._repository.find_instances(scope, study_uid, series_uid, sop_uid)
        if not found:
            raise NotFound("no such study, series or instance")
        return found

    def blob_chunks(self, instance: StoredInstance) -> AsyncIterator[bytes]:
        return self._store.open_stream(instance.blob_key)

    async def metadata(
        self,
        scope: Scope,
        base_url: str,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> Metadata:
        """The DICOM JSON array of the instances' data sets (PS3.18 10.4.1.1.2), from the index,
        with whose data they are (for the audit record, read by the same query).

        BulkDataURIs are stored relative to a placeholder and completed here with the configured
        base URL (never the Host header); a byte replace keeps study metadata cheap.
        """
        documents = await self._repository.metadata_documents(scope, study_uid, series_uid, sop_uid)
        if not documents:
            raise NotFound("no such study, series or instance")
        pieces = []
        for found in documents:
            doc = found.document
            if BULK_PLACEHOLDER in doc:
                instance_url = (
                    f"{base_url}/studies/{found.study_uid}/series/{found.series_uid}"
                    f"/instances/{found.sop_uid}"
                )
                doc = doc.replace(BULK_PLACEHOLDER, instance_url.encode())
            pieces.append(doc)
        owners = tuple(dict.fromkeys(found.owner for found in documents))
        return Metadata(b"[" + b",".join(pieces) + b"]", owners)

    async def frames(self, instance: StoredInstance, numbers: Sequence[int]) -> list[Frame]:
        """Frames as stored: native frames by range read, encapsulated frames by fragments."""
        pixel = _pixel_info(instance)
        count = instance.number_of_frames or 1
        for n in numbers:
            if n < 1 or n > count:
                raise NotFound(f"frame {n} does not exist (the instance has {count})")
        if pixel is None and instance.transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            _header, data = await self.deflated_frames(instance, numbers)
            return [Frame(n, d) for n, d in zip(numbers, data, strict=True)]
        if pixel is None:
            raise NotAcceptable("this instance's frames cannot be served as stored")
        out = []
        for n in numbers:
            ranges = frame_ranges(pixel, n)
            if ranges is None:
                raise NotAcceptable("this instance's frames cannot be addressed as stored")
            parts = [await self._store.read_range(instance.blob_key, a, a + ln) for a, ln in ranges]
            out.append(Frame(n, b"".join(parts)))
        return out

    async def decoded_frames(self, instance: StoredInstance, numbers: Sequence[int]) -> list[Frame]:
        """Frames decoded to native little-endian pixels (for clients that cannot take the
        stored compressed syntax)."""
        count = instance.number_of_frames or 1
        for n in numbers:
            if n < 1 or n > count:
                raise NotFound(f"frame {n} does not exist (the instance has {count})")
        async with self.local_copy(instance) as path:
            return [
                Frame(n, await anyio.to_thread.run_sync(decode_frame_native, path, n - 1))
                for n in numbers
            ]

    async def deflated_frames(
        self, instance: StoredInstance, numbers: Sequence[int]
    ) -> tuple[Dataset, list[bytes]]:
        """Header and native frames of a Deflated Explicit VR Little Endian instance (PS3.5
        A.5): offsets into the deflated stream cannot be recorded at ingest, so the data set
        is inflated again, bounded by the configured ``max_inflated_bytes``."""
        async with self.local_copy(instance) as path:
            try:
                return await anyio.to_thread.run_sync(
                    read_deflated_frames, path, numbers, self._limits
                )
            except DicomProblem as exc:
                raise UnprocessableInstance(exc.message) from exc

    def blocking_range_reader(
        self, instance: StoredInstance, start: int, end: int
    ) -> Callable[[], bytes] | None:
        """See ``BlobStore.blocking_range_reader``: for a worker thread, or None."""
        return self._store.blocking_range_reader(instance.blob_key, start, end)

    async def read_range(self, instance: StoredInstance, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` of the stored file (for headers and pixel values)."""
        return await self._store.read_range(instance.blob_key, start, end)

    async def bulk_value(self, instance: StoredInstance, tag_path: str) -> bytes:
        async with self.local_copy(instance) as path:
            try:
                return await anyio.to_thread.run_sync(read_bulk_value, path, tag_path, self._limits)
            except (DicomProblem, KeyError, ValueError, IndexError) as exc:
                raise NotFound("no such bulk data") from exc

    def local_copy(self, instance: StoredInstance) -> _LocalCopy:
        return _LocalCopy(self._store, instance.blob_key, self._spool_dir)


class _LocalCopy:
    """The blob as a local temporary file, for work that needs a seekable file (decoding)."""

    def __init__(self, store: BlobStore, key: str, spool_dir: Path) -> None:
        self._store = store
        self._key = key
        self._dir = spool_dir
        self._path: Path | None = None

    async def __aenter__(self) -> Path:
        self._dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="out-", suffix=".dcm", dir=self._dir)
        self._path = Path(name)
        try:
            with open(fd, "wb") as f:  # noqa: ASYNC230 - local page-cache writes of a spool file
                async for chunk in self._store.open_stream(self._key):
                    f.write(chunk)
        except BaseException:
            # __aexit__ does not run when __aenter__ raises (a blob gone, a cancelled request).
            self._path.unlink(missing_ok=True)
            raise
        return self._path

    async def __aexit__(self, *exc: object) -> None:
        if self._path is not None:
            self._path.unlink(missing_ok=True)


def pixel_info(instance: StoredInstance) -> dict[str, Any] | None:
    """Where the instance's Pixel Data lies in its file (``dicom.pixels.PixelDataInfo`` as
    recorded at ingest); ``None`` without Pixel Data and for Deflated files."""
    return _pixel_info(instance)


def _pixel_info(instance: StoredInstance) -> dict[str, Any] | None:
    if instance.pixel_json is None:
        return None
    info: dict[str, Any] = orjson.loads(instance.pixel_json)
    return info


def parse_frame_list(text: str) -> list[int]:
    """``1,2,3`` → [1, 2, 3] (PS3.18 10.4.1.1.3; also tolerates percent-decoded ``%2C``)."""
    try:
        numbers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise BadRequest("frame list must be comma-separated positive integers") from exc
    if not numbers:
        raise BadRequest("frame list is empty")
    return numbers

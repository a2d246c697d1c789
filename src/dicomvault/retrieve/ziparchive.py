"""A study or series as one streamed ZIP archive (WADO-RS with ``Accept: application/zip``).

PS3.18 lists ``application/zip`` among the media types of the instance resources (study,
series, instance; PS3.18 8.7.3, 10.4.1): an archive of the Part-10 files. Browsers can ask for
it from a plain link with the ``accept`` query parameter (PS3.18 8.3.3.1).

The archive is written by the standard library's ``zipfile`` into a non-seekable sink, which
makes it use data descriptors (APPNOTE 4.3.9) instead of seeking back to fill sizes in, and
what it has written is handed on after every chunk: memory holds one blob chunk, never the
study. Members are stored, not deflated: pixel data is mostly compressed already, and the
CPU is better spent serving. Sizes above 4 GiB get ZIP64 records, decided from the indexed size.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterable

from dicomvault.index.repository import StoredInstance

ChunkSource = Callable[[StoredInstance], AsyncIterator[bytes]]


class _Sink:
    """Write-only, non-seekable: ``zipfile`` then streams (no ``tell``/``seek`` back)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def member_name(instance: StoredInstance) -> str:
    """``{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm``: UIDs only, no PHI.

    UIDs are digits and dots (validated at ingest), so no name can escape the archive root.
    """
    return f"{instance.study_uid}/{instance.series_uid}/{instance.sop_uid}.dcm"


async def zip_instances(
    instances: Iterable[StoredInstance], chunks: ChunkSource
) -> AsyncIterator[bytes]:
    """Yield the bytes of a ZIP archive holding each instance's stored Part-10 file."""
    sink = _Sink()
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for instance in instances:
            info = zipfile.ZipInfo(member_name(instance), date_time=stamp)
            info.compress_type = zipfile.ZIP_STORED
            # The expected size lets zipfile choose ZIP64 records before writing the member.
            info.file_size = instance.size
            with archive.open(info, mode="w") as member:
                async for chunk in chunks(instance):
                    member.write(chunk)
                    data = sink.take()
                    if data:
                        yield data
            data = sink.take()
            if data:
                yield data
    tail = sink.take()
    if tail:
        yield tail

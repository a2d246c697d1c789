"""Folder import: walk a tree, push every DICOM file through the one ingest pipeline.

Files without the Part-10 ``DICM`` marker are skipped and counted, not failed; the originals are
never modified (each is copied to a spool file first).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread

from dicomvault.errors import DicomVaultError
from dicomvault.index.scope import Scope
from dicomvault.ingest.pipeline import Ingestor, IngestStatus
from dicomvault.ingest.spool import spool_path


@dataclass
class ImportSummary:
    stored: int = 0
    duplicates: int = 0
    skipped_not_dicom: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def failure_reasons(self) -> Counter[str]:
        return Counter(reason for _, reason in self.failed)


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            for root, _dirs, files in os.walk(path):
                for name in sorted(files):
                    yield Path(root) / name
        elif path.is_file():
            yield path


def looks_like_part10(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


async def import_paths(
    ingestor: Ingestor,
    scope: Scope,
    paths: Iterable[Path],
    *,
    workers: int,
    on_progress: Callable[[], None] = lambda: None,
) -> ImportSummary:
    summary = ImportSummary()
    files = list(iter_files(paths))
    limiter = anyio.CapacityLimiter(workers)

    async def one(path: Path) -> None:
        async with limiter:
            try:
                await _import_file(ingestor, scope, path, summary)
            finally:
                on_progress()

    async with anyio.create_task_group() as tg:
        for path in files:
            tg.start_soon(one, path)
    return summary


async def _import_file(
    ingestor: Ingestor, scope: Scope, path: Path, summary: ImportSummary
) -> None:
    if not await anyio.to_thread.run_sync(looks_like_part10, path):
        summary.skipped_not_dicom += 1
        return
    settings = ingestor.settings
    try:
        spool, sha = await anyio.to_thread.run_sync(
            spool_path, settings.spool_dir, path, settings.max_instance_bytes
        )
        result = await ingestor.ingest_spooled(spool, sha, scope)
    except DicomVaultError as error:
        summary.failed.append((path, error.message))
        return
    except OSError as error:
        summary.failed.append((path, f"cannot read: {error.strerror}"))
        return
    if result.status is IngestStatus.DUPLICATE:
        summary.duplicates += 1
    else:
        summary.stored += 1

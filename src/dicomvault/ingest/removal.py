"""Deleting studies, series and instances: rows first (one transaction), then their blobs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from dicomvault.errors import NotFound
from dicomvault.index.repository import IndexRepository
from dicomvault.index.scope import Scope
from dicomvault.storage.base import BlobStore

log = logging.getLogger(__name__)


class Remover:
    def __init__(self, repository: IndexRepository, store: BlobStore) -> None:
        self._repository = repository
        self._store = store

    async def delete(
        self,
        scope: Scope,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> int:
        """Remove what the UIDs name within the scope; 404 when that is nothing."""
        keys = await self._repository.delete(scope, study_uid, series_uid, sop_uid)
        if not keys:
            raise NotFound("no such study, series or instance")
        for key in keys:
            try:
                await self._store.delete(key)
            except Exception:  # the row is gone; an orphan blob is the sweep's to remove
                log.warning("blob delete failed; left for the sweep", extra={"blob_key": key})
        return len(keys)


async def sweep_pending_writes(
    repository: IndexRepository, store: BlobStore, *, grace: timedelta = timedelta(hours=1)
) -> int:
    """Delete blobs whose put began but whose row never committed (DESIGN.md: a crash between
    steps 3 and 4). Only the pending-write records are read: no listing of the whole store."""
    cutoff = datetime.now(UTC) - grace
    removed = 0
    for pending_pk, key in await repository.pending_writes(cutoff):
        if not await repository.blob_is_referenced(key):
            await store.delete(key)
            removed += 1
        await repository.clear_pending_write(pending_pk)
    return removed

"""Deleting studies, series and instances: rows first (one transaction), then their blobs."""

from __future__ import annotations

import logging

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

"""Builds the services from settings: the one place that picks implementations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from dicomvault.config import Settings
from dicomvault.index.engine import Database, open_database
from dicomvault.index.migrate import upgrade_to_head
from dicomvault.index.repository import IndexRepository
from dicomvault.ingest.pipeline import Ingestor
from dicomvault.ingest.removal import Remover
from dicomvault.retrieve.service import Retriever
from dicomvault.storage.base import BlobStore
from dicomvault.storage.local import LocalBlobStore
from dicomvault.storage.objectstore import ObjectBlobStore


@dataclass
class Services:
    settings: Settings
    db: Database
    repository: IndexRepository
    store: BlobStore
    ingestor: Ingestor
    retriever: Retriever
    deleter: Remover

    async def close(self) -> None:
        await self.repository.close()
        await self.store.close()
        await self.db.dispose()


def open_blob_store(url: str) -> BlobStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(parsed.path))
    if parsed.scheme in ("s3", "gs", "az", "azure"):
        return ObjectBlobStore.from_url(url)
    raise ValueError(f"unsupported storage URL scheme: {parsed.scheme!r}")


def prepare(settings: Settings) -> None:
    """Create the data directory and bring the schema up to date (before any worker starts)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.spool_dir.mkdir(parents=True, exist_ok=True)
    upgrade_to_head(settings.effective_database_url)


def build_services(settings: Settings) -> Services:
    db = open_database(settings.effective_database_url)
    repository = IndexRepository(db)
    store = open_blob_store(settings.effective_storage_url)
    ingestor = Ingestor(settings=settings, db=db, repository=repository, store=store)
    retriever = Retriever(repository, store, ingestor.limits, settings.spool_dir)
    return Services(
        settings, db, repository, store, ingestor, retriever, Remover(repository, store)
    )

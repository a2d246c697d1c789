"""Builds the services from settings: the one place that picks implementations."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from dicomvault.audit.trail import AuditTrail
from dicomvault.auth.oidc import OidcVerifier
from dicomvault.auth.principal import RatePlan
from dicomvault.auth.ratelimit import InProcessRateLimiter, RateLimiter, RedisRateLimiter
from dicomvault.auth.service import AuthService
from dicomvault.auth.store import IdentityStore
from dicomvault.auth.tokens import TokenIssuer
from dicomvault.config import Mode, Settings
from dicomvault.index.engine import Database, open_database
from dicomvault.index.migrate import upgrade_to_head
from dicomvault.index.repository import IndexRepository
from dicomvault.index.writer import BatchWriter
from dicomvault.ingest.pipeline import Ingestor
from dicomvault.ingest.removal import Remover
from dicomvault.live.bus import EventBus
from dicomvault.live.inprocess import InProcessEventBus
from dicomvault.live.redis_bus import RedisEventBus
from dicomvault.retrieve.cache import MemoryRenderCache, RedisRenderCache, RenderCache
from dicomvault.retrieve.rendered import Renderer, RenderLimits
from dicomvault.retrieve.service import Retriever
from dicomvault.storage.base import BlobStore
from dicomvault.storage.local import LocalBlobStore
from dicomvault.storage.objectstore import ObjectBlobStore


@dataclass
class Services:
    settings: Settings
    db: Database
    writer: BatchWriter
    repository: IndexRepository
    store: BlobStore
    ingestor: Ingestor
    retriever: Retriever
    deleter: Remover
    identities: IdentityStore
    auth: AuthService
    rate_limiter: RateLimiter
    audit: AuditTrail
    events: EventBus
    renderer: Renderer
    render_cache: RenderCache

    @property
    def default_rate_plan(self) -> RatePlan:
        return RatePlan(self.settings.rate_limit_rate, self.settings.rate_limit_burst)

    @property
    def login_rate_plan(self) -> RatePlan:
        return RatePlan(self.settings.login_rate, self.settings.login_burst)

    async def close(self) -> None:
        await self.events.close()
        await self.render_cache.close()
        await self.writer.close()
        await self.rate_limiter.close()
        await self.store.close()
        await self.db.dispose()


class ConfigurationError(Exception):
    """The settings are unsafe or inconsistent; the server refuses to start."""


_PLACEHOLDER_SECRETS = {
    "",
    "secret",
    "changeme",
    "change-me",
    "change_me",
    "dev",
    "development",
    "dicomvault",
    "test",
    "password",
    "jwt-secret",
}


def signing_secret(settings: Settings) -> str:
    """The JWT signing secret: configured, or made once and kept in the data directory.

    Outside development mode a placeholder or short configured secret stops the server.
    """
    configured = settings.jwt_secret
    if configured:
        weak = configured.lower() in _PLACEHOLDER_SECRETS or len(configured) < 32
        if weak and settings.mode is not Mode.DEVELOPMENT:
            raise ConfigurationError(
                "DICOMVAULT_JWT_SECRET is a placeholder or shorter than 32 characters; "
                "refusing to start outside development mode"
            )
        return configured
    path = settings.data_dir / "jwt-secret"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def open_rate_limiter(settings: Settings) -> RateLimiter:
    if settings.redis_url:
        # A Redis outage degrades to per-process limits instead of failing requests.
        return RedisRateLimiter.from_url(settings.redis_url, fallback=InProcessRateLimiter())
    return InProcessRateLimiter()


def open_event_bus(settings: Settings) -> EventBus:
    """Live events: Redis pub/sub across replicas when configured, else this process only."""
    if settings.redis_url:
        return RedisEventBus.from_url(settings.redis_url, queue_size=settings.live_queue_size)
    return InProcessEventBus(settings.live_queue_size)


def open_render_cache(settings: Settings) -> RenderCache:
    """Rendered images: in Redis, shared by every replica, when configured; else in process."""
    if settings.redis_url:
        return RedisRenderCache.from_url(
            settings.redis_url, settings.render_cache_ttl, settings.max_render_pixels
        )
    return MemoryRenderCache(settings.render_cache_bytes)


def open_blob_store(url: str) -> BlobStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(parsed.path))
    if parsed.scheme in ("s3", "gs", "az", "azure"):
        return ObjectBlobStore.from_url(url)
    raise ValueError(f"unsupported storage URL scheme: {parsed.scheme!r}")


# Spool files older than this belong to no live request: a request spools, ingests and removes
# its file within one request's time.
SPOOL_LEFTOVER_AGE_SECONDS = 3600


def prepare(settings: Settings) -> None:
    """Create the data directory and bring the schema up to date (before any worker starts)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.spool_dir.mkdir(parents=True, exist_ok=True)
    remove_spool_leftovers(settings.spool_dir)
    upgrade_to_head(settings.effective_database_url)


def remove_spool_leftovers(spool_dir: Path, older_than: float = SPOOL_LEFTOVER_AGE_SECONDS) -> int:
    """Remove what a killed process left in the spool (received bodies, local copies of blobs).

    Only files older than ``older_than`` seconds: another process sharing this data directory may
    be spooling right now. Returns how many were removed.
    """
    cutoff = time.time() - older_than
    removed = 0
    for path in spool_dir.iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # removed meanwhile by its own request
            continue
    return removed


def build_services(settings: Settings) -> Services:
    db = open_database(settings.effective_database_url)
    writer = BatchWriter(db)
    repository = IndexRepository(db, writer)
    store = open_blob_store(settings.effective_storage_url)
    events = open_event_bus(settings)
    ingestor = Ingestor(settings=settings, db=db, repository=repository, store=store, events=events)
    retriever = Retriever(repository, store, ingestor.limits, settings.spool_dir)
    render_cache = open_render_cache(settings)
    renderer = Renderer(
        retriever,
        render_cache,
        RenderLimits(
            max_frame_samples=settings.max_render_pixels,
            max_frames=settings.max_rendered_frames,
            max_response_samples=settings.max_rendered_response_pixels,
            concurrency=settings.render_concurrency,
        ),
    )
    identities = IdentityStore(db, writer)
    issuer = TokenIssuer(
        signing_secret(settings),
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.access_token_ttl,
    )
    auth = AuthService(settings, identities, issuer, OidcVerifier(settings.oidc_providers))
    return Services(
        settings=settings,
        db=db,
        writer=writer,
        repository=repository,
        store=store,
        ingestor=ingestor,
        retriever=retriever,
        deleter=Remover(repository, store),
        identities=identities,
        auth=auth,
        rate_limiter=open_rate_limiter(settings),
        audit=AuditTrail(db, writer),
        events=events,
        renderer=renderer,
        render_cache=render_cache,
    )

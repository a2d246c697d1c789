"""The ``dicomvault`` command: serve, import, db."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click

from dicomvault.config import Settings


def _settings(**overrides: Any) -> Settings:
    """Command-line options win over DICOMVAULT_* environment variables, which win over defaults."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**given)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


@click.group()
@click.version_option(package_name="dicomvault")
def main() -> None:
    """dicomvault: a medical imaging archive (DICOMweb, DIMSE)."""


@main.command()
@click.option("--host", help="Address to listen on [env DICOMVAULT_HOST; default 127.0.0.1]")
@click.option("--port", type=int, help="HTTP port [env DICOMVAULT_PORT; default 8080]")
@click.option(
    "--data-dir", type=click.Path(path_type=Path), help="Data folder [DICOMVAULT_DATA_DIR]"
)
@click.option(
    "--database-url", help="SQLAlchemy URL, e.g. postgresql+asyncpg://... [default SQLite]"
)
@click.option(
    "--storage-url", help="Blob store, e.g. s3://bucket/prefix?endpoint=... [default disk]"
)
def serve(**options: Any) -> None:
    """Run the archive: HTTP API (DICOMweb under /dicom-web)."""
    import uvicorn

    from dicomvault.api.app import create_app
    from dicomvault.bootstrap import build_services, prepare

    settings = _settings(**options)
    _logging(settings.log_level)
    prepare(settings)
    app = create_app(build_services(settings))
    click.echo(
        f"dicomvault serving on http://{settings.host}:{settings.port}/ (DICOMweb at /dicom-web)"
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        # Query strings of QIDO carry patient data: no access log until it is redacted.
        access_log=False,
        # X-Forwarded-For is trusted only from configured proxies (none by default).
        proxy_headers=False,
        log_level=settings.log_level,
    )


@main.command(name="import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--data-dir", type=click.Path(path_type=Path))
@click.option("--database-url")
@click.option("--storage-url")
@click.option("--workers", type=int, help="Files ingested at once [default 4]")
def import_(paths: tuple[Path, ...], workers: int | None, **options: Any) -> None:
    """Load folder trees of DICOM files (recursive; non-DICOM files are skipped and counted)."""
    from tqdm import tqdm

    from dicomvault.bootstrap import build_services, prepare
    from dicomvault.index.scope import Scope
    from dicomvault.ingest.folder import import_paths, iter_files

    settings = _settings(import_workers=workers, **options)
    _logging("warning")
    prepare(settings)
    total = sum(1 for _ in iter_files(paths))

    async def run() -> Any:
        services = build_services(settings)
        try:
            with tqdm(total=total, unit="file", file=sys.stderr) as bar:
                return await import_paths(
                    services.ingestor,
                    Scope.single(settings.default_tenant),
                    paths,
                    workers=settings.import_workers,
                    on_progress=lambda: bar.update(1),
                )
        finally:
            await services.close()

    summary = asyncio.run(run())
    click.echo(
        f"stored {summary.stored}, already stored {summary.duplicates}, "
        f"skipped (not DICOM) {summary.skipped_not_dicom}, failed {len(summary.failed)}"
    )
    for reason, count in summary.failure_reasons.most_common():
        click.echo(f"  {count} x {reason}")
    for path, reason in summary.failed[:50]:
        click.echo(f"  failed: {path}: {reason}", err=True)
    if summary.failed:
        sys.exit(1)


@main.group()
def db() -> None:
    """Metadata database maintenance."""


@db.command()
@click.option("--data-dir", type=click.Path(path_type=Path))
@click.option("--database-url")
def upgrade(**options: Any) -> None:
    """Apply the Alembic migrations up to the newest schema."""
    from dicomvault.bootstrap import prepare

    prepare(_settings(**options))
    click.echo("schema is up to date")


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path))
@click.option("--database-url")
@click.option("--storage-url")
@click.option("--grace-minutes", type=int, default=60, show_default=True)
def gc(grace_minutes: int, **options: Any) -> None:
    """Remove blobs left by interrupted stores (pending writes older than the grace period)."""
    from datetime import timedelta

    from dicomvault.bootstrap import build_services, prepare
    from dicomvault.ingest.removal import sweep_pending_writes

    settings = _settings(**options)
    prepare(settings)

    async def run() -> int:
        services = build_services(settings)
        try:
            return await sweep_pending_writes(
                services.repository, services.store, grace=timedelta(minutes=grace_minutes)
            )
        finally:
            await services.close()

    click.echo(f"removed {asyncio.run(run())} orphan blob(s)")

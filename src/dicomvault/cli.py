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


def _run_with_services(settings: Settings, action: Any) -> Any:
    """Run ``action(services)`` against the configured database (migrated first)."""
    from dicomvault.bootstrap import build_services, prepare

    prepare(settings)

    async def run() -> Any:
        services = build_services(settings)
        try:
            return await action(services)
        finally:
            await services.close()

    return asyncio.run(run())


async def _audit_cli(services: Any, kind_name: str, detail: str) -> None:
    """Administrative commands run outside HTTP are audited too, as the operating-system user."""
    import getpass

    from dicomvault.audit import codes
    from dicomvault.audit.records import AuditEvent

    user = getpass.getuser()
    kind = getattr(codes, kind_name)
    await services.audit.append(
        AuditEvent.of(
            kind,
            principal_subject=f"cli:{user}",
            principal_name=user,
            role="admin",
            detail=f"dicomvault {detail}",
        )
    )


_db_options = [
    click.option("--data-dir", type=click.Path(path_type=Path)),
    click.option("--database-url"),
]


def _with_db_options(f: Any) -> Any:
    for option in reversed(_db_options):
        f = option(f)
    return f


@main.group()
def admin() -> None:
    """Manage tenants, users and partner clients (also available over /api/v1)."""


@admin.command("tenant-add")
@click.argument("name")
@click.option("--display-name", default="")
@_with_db_options
def tenant_add(name: str, display_name: str, **options: Any) -> None:
    """Create a tenant (facility)."""

    async def action(services: Any) -> None:
        await services.identities.create_tenant(name, display_name)
        await _audit_cli(services, "SECURITY_CONFIGURATION_CHANGE", "admin tenant-add")

    _run_with_services(_settings(**options), action)
    click.echo(f"tenant {name} created")


@admin.command("tenants")
@_with_db_options
def tenants(**options: Any) -> None:
    """List tenants."""

    async def action(services: Any) -> list[tuple[str, str]]:
        result: list[tuple[str, str]] = await services.identities.list_tenants()
        return result

    for name, display in _run_with_services(_settings(**options), action):
        click.echo(f"{name}\t{display}")


@admin.command("user-add")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True, help="admin, radiologist, ...")
@click.option("--tenant", "tenant_names", multiple=True, required=True)
@click.option("--default-tenant")
@click.password_option(envvar="DICOMVAULT_NEW_USER_PASSWORD")
@_with_db_options
def user_add(
    username: str,
    roles: tuple[str, ...],
    tenant_names: tuple[str, ...],
    default_tenant: str | None,
    password: str,
    **options: Any,
) -> None:
    """Create a user."""
    from dicomvault.auth.passwords import hash_secret
    from dicomvault.auth.principal import Role

    for role in roles:
        Role(role)  # refuse unknown roles before touching the database

    async def action(services: Any) -> None:
        if not await services.identities.tenants_exist(tenant_names):
            raise click.ClickException("unknown tenant")
        default = default_tenant or (tenant_names[0] if len(tenant_names) == 1 else None)
        await services.identities.create_user(
            username, hash_secret(password), roles, tenant_names, default
        )
        await _audit_cli(services, "USER_SECURITY_CHANGE", "admin user-add")

    _run_with_services(_settings(**options), action)
    click.echo(f"user {username} created")


@admin.command("user-password")
@click.argument("username")
@click.password_option(envvar="DICOMVAULT_NEW_USER_PASSWORD")
@_with_db_options
def user_password(username: str, password: str, **options: Any) -> None:
    """Set a user's password (and revoke the user's refresh tokens)."""
    from dicomvault.auth.passwords import hash_secret

    async def action(services: Any) -> None:
        user = await services.identities.update_user(username, password_hash=hash_secret(password))
        await services.identities.revoke_user_tokens(user.pk)
        await _audit_cli(services, "USER_SECURITY_CHANGE", "admin user-password")

    _run_with_services(_settings(**options), action)
    click.echo(f"password of {username} changed")


@admin.command("users")
@_with_db_options
def users(**options: Any) -> None:
    """List users."""

    async def action(services: Any) -> Any:
        return await services.identities.list_users()

    for user in _run_with_services(_settings(**options), action):
        state = "disabled" if user.disabled else "active"
        click.echo(f"{user.username}\t{','.join(user.roles)}\t{','.join(user.tenants)}\t{state}")


@admin.command("user-delete")
@click.argument("username")
@_with_db_options
def user_delete(username: str, **options: Any) -> None:
    """Delete a user."""

    async def action(services: Any) -> None:
        await services.identities.delete_user(username)
        await _audit_cli(services, "USER_SECURITY_CHANGE", "admin user-delete")

    _run_with_services(_settings(**options), action)
    click.echo(f"user {username} deleted")


@admin.command("client-add")
@click.argument("name")
@click.option("--tenant", "tenant_names", multiple=True, required=True)
@click.option("--role", "roles", multiple=True, default=("partner",), show_default=True)
@click.option("--scope", "scopes", multiple=True, help="e.g. dicom.search dicom.retrieve")
@click.option("--allow-ip", "allowed_ips", multiple=True, help="CIDR; repeatable")
@click.option("--rate", type=float)
@click.option("--burst", type=int)
@_with_db_options
def client_add(
    name: str,
    tenant_names: tuple[str, ...],
    roles: tuple[str, ...],
    scopes: tuple[str, ...],
    allowed_ips: tuple[str, ...],
    rate: float | None,
    burst: int | None,
    **options: Any,
) -> None:
    """Register a partner client; prints its id and secret (shown once)."""
    import ipaddress
    import secrets

    from dicomvault.auth.passwords import hash_secret
    from dicomvault.auth.principal import Role
    from dicomvault.auth.store import ClientRecord

    for role in roles:
        Role(role)
    for cidr in allowed_ips:
        ipaddress.ip_network(cidr, strict=False)
    secret = secrets.token_urlsafe(32)
    record = ClientRecord(
        pk=0,
        client_id="dv-" + secrets.token_hex(8),
        name=name,
        secret_hash=hash_secret(secret),
        roles=list(roles),
        tenants=list(tenant_names),
        default_tenant=tenant_names[0] if len(tenant_names) == 1 else None,
        scopes=list(scopes) or None,
        allowed_ips=list(allowed_ips) or None,
        rate=rate,
        burst=burst,
        disabled=False,
    )

    async def action(services: Any) -> None:
        if not await services.identities.tenants_exist(tenant_names):
            raise click.ClickException("unknown tenant")
        await services.identities.create_client(record)
        await _audit_cli(services, "USER_SECURITY_CHANGE", "admin client-add")

    _run_with_services(_settings(**options), action)
    click.echo(f"client_id: {record.client_id}\nclient_secret: {secret}  (shown once)")


@main.group()
def audit() -> None:
    """The audit trail."""


@audit.command()
@_with_db_options
def verify(**options: Any) -> None:
    """Check the hash chain of the audit trail; exit 1 on the first tampered record."""

    async def action(services: Any) -> Any:
        result = await services.audit.verify()
        await _audit_cli(services, "AUDIT_LOG_USED", "audit verify")
        return result

    result = _run_with_services(_settings(**options), action)
    if result.ok:
        click.echo(
            f"audit trail intact: {result.records_checked} records, "
            f"head {result.head_id} {result.head_hash}"
        )
        return
    click.echo(
        f"audit trail TAMPERED at record {result.first_bad_id}: {result.reason} "
        f"({result.records_checked} records checked)",
        err=True,
    )
    sys.exit(1)

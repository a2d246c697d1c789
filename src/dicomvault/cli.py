"""The ``dicomvault`` command: serve, import, db."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click

from dicomvault.config import Settings, is_valid_tenant_name


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

    from dicomvault.asgi import create_app
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
@click.option(
    "--tenant",
    help="Tenant (facility) the data belongs to; created if missing [default: default tenant]",
)
def import_(
    paths: tuple[Path, ...], workers: int | None, tenant: str | None, **options: Any
) -> None:
    """Load folder trees of DICOM files (recursive; non-DICOM files are skipped and counted).

    The run is one Import event in the audit trail (PS3.15 A.5.3), as the operating-system
    user, naming the tenant, the studies and the patients imported.
    """
    settings = _settings(import_workers=workers, **options)
    target = tenant or settings.default_tenant
    if not is_valid_tenant_name(target):
        raise click.BadParameter("letters, digits, '_' and '-' only", param_hint="--tenant")

    from tqdm import tqdm

    from dicomvault.bootstrap import build_services, prepare
    from dicomvault.index.scope import Scope
    from dicomvault.ingest.folder import import_paths, iter_files

    _logging("warning")
    prepare(settings)
    total = sum(1 for _ in iter_files(paths))

    async def run() -> Any:
        services = build_services(settings)
        try:
            await services.events.start()  # an earlier import or server may have lost events
            if not await services.identities.tenants_exist([target]):
                await services.identities.ensure_tenant(target)
                await _audit_cli(services, "SECURITY_CONFIGURATION_CHANGE", "import: new tenant")
                click.echo(f"tenant {target} created", err=True)
            scope = Scope.single(target)
            recording = _RecordingIngestor(services.ingestor)
            with tqdm(total=total, unit="file", file=sys.stderr) as bar:
                summary = await import_paths(
                    recording,  # type: ignore[arg-type]
                    scope,
                    paths,
                    workers=settings.import_workers,
                    on_progress=lambda: bar.update(1),
                )
            await _audit_import(services, scope, sorted(recording.studies), summary)
            return summary
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


class _RecordingIngestor:
    """The services' ingestor, noting which studies an import stored (for its audit record)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.settings = inner.settings
        self.studies: set[str] = set()

    async def ingest_spooled(self, *args: Any, **kwargs: Any) -> Any:
        result = await self._inner.ingest_spooled(*args, **kwargs)
        self.studies.add(result.study_instance_uid)
        return result


async def _audit_import(services: Any, scope: Any, studies: list[str], summary: Any) -> None:
    """One Import event (DCM 110107, action C) for the whole run; failures make it minor."""
    import getpass

    from dicomvault.audit import codes
    from dicomvault.audit.codes import EventOutcome
    from dicomvault.audit.records import AuditEvent, join_uids

    owners = await services.repository.study_owners(scope, studies, write_only=True)
    patients = sorted({o.patient_id for o in owners if o.patient_id})
    user = getpass.getuser()
    await services.audit.append(
        AuditEvent.of(
            codes.IMPORT,
            outcome=EventOutcome.MINOR_FAILURE if summary.failed else EventOutcome.SUCCESS,
            principal_subject=f"cli:{user}",
            principal_name=user,
            role="admin",
            tenant=scope.write_tenant,
            patient_id=join_uids(tuple(patients)) if patients else None,
            study_uids=tuple(studies),
            detail=(
                f"dicomvault import: stored {summary.stored}, already stored "
                f"{summary.duplicates}, skipped {summary.skipped_not_dicom}, "
                f"failed {len(summary.failed)}"
            ),
        )
    )


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

    from dicomvault.errors import NotFound

    async def action(services: Any) -> None:
        try:
            await services.identities.delete_user(username)
        except NotFound as exc:
            raise click.ClickException(f"no such user: {username}") from exc
        await _audit_cli(services, "USER_SECURITY_CHANGE", "admin user-delete")

    _run_with_services(_settings(**options), action)
    click.echo(f"user {username} deleted")


@admin.command("user-set")
@click.argument("username")
@click.option("--role", "roles", multiple=True, help="Replaces the roles; repeatable")
@click.option("--tenant", "tenant_names", multiple=True, help="Replaces the tenants; repeatable")
@click.option("--default-tenant")
@click.option("--disable/--enable", "disabled", default=None, help="Lock or unlock the account")
@_with_db_options
def user_set(
    username: str,
    roles: tuple[str, ...],
    tenant_names: tuple[str, ...],
    default_tenant: str | None,
    disabled: bool | None,
    **options: Any,
) -> None:
    """Change a user's roles, tenants, default tenant, or lock the account.

    Tokens already issued stop working: running servers check every request against the store
    (within seconds); role changes and locking also revoke the user's refresh tokens.
    """
    from dicomvault.auth.principal import Role

    for role in roles:
        Role(role)
    if not (roles or tenant_names or default_tenant or disabled is not None):
        raise click.UsageError("nothing to change")

    async def action(services: Any) -> Any:
        current = await services.identities.user_by_name(username)
        if current is None:
            raise click.ClickException(f"no such user: {username}")
        tenants = list(tenant_names) or current.tenants
        if not await services.identities.tenants_exist(tenants):
            raise click.ClickException("unknown tenant")
        default = default_tenant or current.default_tenant
        if default not in tenants:
            if default_tenant:
                raise click.ClickException("--default-tenant must be one of the tenants")
            default = tenants[0] if len(tenants) == 1 else None
        user = await services.identities.update_user(
            username,
            roles=list(roles) or None,
            tenants=list(tenant_names) or None,
            default_tenant=default,
            disabled=disabled,
        )
        if roles or disabled:
            await services.identities.revoke_user_tokens(user.pk)
        await _audit_cli(services, "USER_SECURITY_CHANGE", "admin user-set")
        return user

    user = _run_with_services(_settings(**options), action)
    state = "disabled" if user.disabled else "active"
    click.echo(
        f"user {user.username}: roles {','.join(user.roles)}, tenants {','.join(user.tenants)}"
        f" (default {user.default_tenant or '-'}), {state}"
    )


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


@admin.command("clients")
@_with_db_options
def clients(**options: Any) -> None:
    """List partner clients (never their secrets)."""

    async def action(services: Any) -> Any:
        return await services.identities.list_clients()

    for c in _run_with_services(_settings(**options), action):
        scopes = " ".join(c.scopes) if c.scopes is not None else "*"
        ips = ",".join(c.allowed_ips) if c.allowed_ips is not None else "*"
        click.echo(
            f"{c.client_id}\t{c.name}\t{','.join(c.roles)}\t{','.join(c.tenants)}\t"
            f"scopes={scopes}\tallow={ips}"
        )


@admin.command("client-delete")
@click.argument("client_id")
@_with_db_options
def client_delete(client_id: str, **options: Any) -> None:
    """Remove a partner client; its tokens stop working."""
    from dicomvault.errors import NotFound

    async def action(services: Any) -> None:
        try:
            await services.identities.delete_client(client_id)
        except NotFound as exc:
            raise click.ClickException(f"no such client: {client_id}") from exc
        await _audit_cli(services, "USER_SECURITY_CHANGE", "admin client-delete")

    _run_with_services(_settings(**options), action)
    click.echo(f"client {client_id} deleted")


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

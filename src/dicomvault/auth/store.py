"""Persistence of identities (users, clients, tenants, refresh tokens) in the metadata DB."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dicomvault.auth.models import Client, RefreshToken, Tenant, User
from dicomvault.errors import Conflict, NotFound
from dicomvault.index.engine import Database
from dicomvault.index.writer import BatchWriter


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0))


def join(values: Iterable[str]) -> str:
    return ",".join(sorted(set(values)))


def split(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


@dataclass(frozen=True)
class UserRecord:
    pk: int
    username: str
    password_hash: str
    roles: list[str]
    tenants: list[str]
    default_tenant: str | None
    disabled: bool

    @classmethod
    def of(cls, row: User) -> UserRecord:
        return cls(
            row.pk,
            row.username,
            row.password_hash,
            split(row.roles),
            split(row.tenants),
            row.default_tenant,
            row.disabled,
        )


@dataclass(frozen=True)
class ClientRecord:
    pk: int
    client_id: str
    name: str
    secret_hash: str
    roles: list[str]
    tenants: list[str]
    default_tenant: str | None
    scopes: list[str] | None
    allowed_ips: list[str] | None
    rate: float | None
    burst: int | None
    disabled: bool

    @classmethod
    def of(cls, row: Client) -> ClientRecord:
        return cls(
            row.pk,
            row.client_id,
            row.name,
            row.secret_hash,
            split(row.roles),
            split(row.tenants),
            row.default_tenant,
            row.scopes.split() if row.scopes is not None else None,
            split(row.allowed_ips) if row.allowed_ips is not None else None,
            row.rate,
            row.burst,
            row.disabled,
        )


class RefreshOutcome:
    OK = "ok"
    UNKNOWN = "unknown"
    REUSED = "reused"  # a rotated-out token came back: its family is revoked
    EXPIRED = "expired"


class IdentityStore:
    def __init__(self, db: Database, writer: BatchWriter) -> None:
        self._db = db
        self._writer = writer

    # -- tenants -------------------------------------------------------------------------------
    async def create_tenant(self, name: str, display_name: str = "") -> None:
        def work(session: Session) -> None:
            session.execute(insert(Tenant).values(name=name, display_name=display_name))

        await self._write_unique(work, f"tenant {name!r} exists")

    async def ensure_tenant(self, name: str) -> None:
        if name not in {t for t, _ in await self.list_tenants()}:
            with contextlib.suppress(Conflict):  # created concurrently: just as good
                await self.create_tenant(name)

    async def list_tenants(self) -> list[tuple[str, str]]:
        async with self._db.read() as session:
            rows = await session.execute(
                select(Tenant.name, Tenant.display_name).order_by(Tenant.name)
            )
            return [(n, d) for n, d in rows.all()]

    async def tenants_exist(self, names: Iterable[str]) -> bool:
        wanted = set(names)
        return wanted <= {t for t, _ in await self.list_tenants()}

    # -- users ---------------------------------------------------------------------------------
    async def create_user(
        self,
        username: str,
        password_hash: str,
        roles: Iterable[str],
        tenants: Iterable[str],
        default_tenant: str | None,
    ) -> UserRecord:
        def work(session: Session) -> None:
            session.execute(
                insert(User).values(
                    username=username,
                    password_hash=password_hash,
                    roles=join(roles),
                    tenants=join(tenants),
                    default_tenant=default_tenant,
                    disabled=False,
                )
            )

        await self._write_unique(work, f"user {username!r} exists")
        user = await self.user_by_name(username)
        assert user is not None
        return user

    async def user_by_name(self, username: str) -> UserRecord | None:
        async with self._db.read() as session:
            row = (
                await session.execute(select(User).where(User.username == username))
            ).scalar_one_or_none()
            return UserRecord.of(row) if row else None

    async def user_by_pk(self, pk: int) -> UserRecord | None:
        async with self._db.read() as session:
            row = (await session.execute(select(User).where(User.pk == pk))).scalar_one_or_none()
            return UserRecord.of(row) if row else None

    async def list_users(self) -> list[UserRecord]:
        async with self._db.read() as session:
            rows = (await session.execute(select(User).order_by(User.username))).scalars().all()
            return [UserRecord.of(r) for r in rows]

    async def update_user(self, username: str, **changes: object) -> UserRecord:
        values = dict(changes)
        for key in ("roles", "tenants"):
            if key in values and values[key] is not None:
                values[key] = join(values[key])  # type: ignore[arg-type]
        values = {k: v for k, v in values.items() if v is not None}

        def work(session: Session) -> int:
            return _rowcount(
                session.execute(update(User).where(User.username == username).values(**values))
            )

        if values and not await self._writer.run(work):
            raise NotFound("no such user")
        user = await self.user_by_name(username)
        if user is None:
            raise NotFound("no such user")
        return user

    async def delete_user(self, username: str) -> None:
        def work(session: Session) -> int:
            return _rowcount(session.execute(delete(User).where(User.username == username)))

        if not await self._writer.run(work):
            raise NotFound("no such user")

    # -- clients -------------------------------------------------------------------------------
    async def create_client(self, record: ClientRecord) -> None:
        def work(session: Session) -> None:
            session.execute(
                insert(Client).values(
                    client_id=record.client_id,
                    name=record.name,
                    secret_hash=record.secret_hash,
                    roles=join(record.roles),
                    tenants=join(record.tenants),
                    default_tenant=record.default_tenant,
                    scopes=" ".join(record.scopes) if record.scopes is not None else None,
                    allowed_ips=",".join(record.allowed_ips)
                    if record.allowed_ips is not None
                    else None,
                    rate=record.rate,
                    burst=record.burst,
                    disabled=False,
                )
            )

        await self._write_unique(work, f"client {record.client_id!r} exists")

    async def client_by_id(self, client_id: str) -> ClientRecord | None:
        async with self._db.read() as session:
            row = (
                await session.execute(select(Client).where(Client.client_id == client_id))
            ).scalar_one_or_none()
            return ClientRecord.of(row) if row else None

    async def list_clients(self) -> list[ClientRecord]:
        async with self._db.read() as session:
            rows = (await session.execute(select(Client).order_by(Client.name))).scalars().all()
            return [ClientRecord.of(r) for r in rows]

    async def delete_client(self, client_id: str) -> None:
        def work(session: Session) -> int:
            return _rowcount(session.execute(delete(Client).where(Client.client_id == client_id)))

        if not await self._writer.run(work):
            raise NotFound("no such client")

    # -- refresh tokens --------------------------------------------------------------------------
    async def add_refresh_token(
        self, token: str, family: str, user_pk: int, expires_at: datetime
    ) -> None:
        def work(session: Session) -> None:
            session.execute(
                insert(RefreshToken).values(
                    token_hash=token_digest(token),
                    family=family,
                    user_pk=user_pk,
                    expires_at=expires_at,
                    used=False,
                    revoked=False,
                )
            )

        await self._writer.run(work)

    async def use_refresh_token(
        self, token: str, reuse_grace: float = 0.0
    ) -> tuple[str, int | None, str | None]:
        """Mark a refresh token used; (outcome, user pk, family). Reuse revokes the family.

        A use within ``reuse_grace`` seconds of the first is the same client renewing again
        (two tabs sharing the cookie, a retry after a lost answer), not a thief: it rotates like
        the first, as often as it comes in that time. A revoked token never passes.

        On PostgreSQL the uses of one family are serialised by a transaction-scoped advisory
        lock on the family, taken before the token is read: two uses of one token cannot both
        see it unused, and two reuses in one family cannot deadlock revoking it. (SQLite has
        one writer: its write transactions are serial already.)
        """
        digest = token_digest(token)
        now = datetime.now(UTC)

        def work(session: Session) -> tuple[str, int | None, str | None]:
            by_digest = select(RefreshToken).where(RefreshToken.token_hash == digest)
            row = session.execute(by_digest).scalar_one_or_none()
            if row is None:
                return RefreshOutcome.UNKNOWN, None, None
            if session.get_bind().dialect.name == "postgresql":
                session.execute(select(func.pg_advisory_xact_lock(func.hashtext(row.family))))
                session.refresh(row)  # as it is now that no other use of the family is running
            if row.revoked or (row.used and not _within(row.used_at, now, reuse_grace)):
                session.execute(
                    update(RefreshToken)
                    .where(RefreshToken.family == row.family)
                    .values(revoked=True)
                )
                return RefreshOutcome.REUSED, row.user_pk, row.family
            if _aware(row.expires_at) <= now:
                return RefreshOutcome.EXPIRED, row.user_pk, row.family
            if not row.used:
                row.used = True
                row.used_at = now
            return RefreshOutcome.OK, row.user_pk, row.family

        return await self._writer.run(work)

    async def family_active(self, family: str) -> bool:
        """Whether a refresh-token family (a login session) still has an unrevoked member.

        Logout, reuse detection and credential changes revoke every member; a deleted user's
        tokens go with the user (ON DELETE CASCADE). Either way the session is over.
        """
        async with self._db.read() as session:
            found = await session.execute(
                select(RefreshToken.pk)
                .where(RefreshToken.family == family, RefreshToken.revoked.is_(False))
                .limit(1)
            )
            return found.first() is not None

    async def revoke_family(self, family: str) -> None:
        def work(session: Session) -> None:
            session.execute(
                update(RefreshToken).where(RefreshToken.family == family).values(revoked=True)
            )

        await self._writer.run(work)

    async def revoke_user_tokens(self, user_pk: int) -> None:
        def work(session: Session) -> None:
            session.execute(
                update(RefreshToken).where(RefreshToken.user_pk == user_pk).values(revoked=True)
            )

        await self._writer.run(work)

    async def _write_unique(self, work: object, message: str) -> None:
        try:
            await self._writer.run(work)  # type: ignore[arg-type]
        except IntegrityError as exc:
            raise Conflict(message) from exc


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _within(used_at: datetime | None, now: datetime, grace: float) -> bool:
    """Whether a used token's first use is recent enough for it to pass again."""
    return used_at is not None and (now - _aware(used_at)).total_seconds() <= grace

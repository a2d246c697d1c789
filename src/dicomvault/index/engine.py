"""Engine construction for both databases: SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers run beside the writer; synchronous=FULL makes a commit durable.

    ``isolation_level = None`` hands transaction control to the ``begin`` hook below, so that a
    write transaction can take the lock at its start (BEGIN IMMEDIATE) instead of failing with
    SQLITE_BUSY when it upgrades from reading to writing.
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


# SQL parameters carry patient names, IDs and birth dates (QIDO matching, index writes): an
# error message or echo of a statement must never include them (DESIGN.md: no PHI in logs).
_NO_PARAMETERS_IN_ERRORS = {"hide_parameters": True}


def make_engine(url: str, *, writer: bool = False, echo: bool = False) -> AsyncEngine:
    """An engine for ``url``; on SQLite ``writer=True`` gives the one-connection write engine."""
    if not is_sqlite(url):
        return create_async_engine(
            url,
            echo=echo,
            pool_size=10,
            max_overflow=20,
            pool_pre_ping=True,
            **_NO_PARAMETERS_IN_ERRORS,
        )
    # SQLite has one writer at a time: queue writers at a one-connection pool (cheap, fair)
    # rather than letting them spin on the file lock.
    pool = {"pool_size": 1, "max_overflow": 0} if writer else {"pool_size": 8, "max_overflow": 8}
    engine = create_async_engine(url, echo=echo, **pool, **_NO_PARAMETERS_IN_ERRORS)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    begin = "BEGIN IMMEDIATE" if writer else "BEGIN"
    event.listen(engine.sync_engine, "begin", lambda conn: conn.exec_driver_sql(begin))
    return engine


def make_sync_sqlite_writer(url: str) -> Engine:
    """The SQLite write engine: the plain ``sqlite3`` driver, used from one worker thread.

    A whole write transaction then runs in that thread in one hop; through aiosqlite every
    statement (and every cursor call) would be a round trip between the event loop and a thread.
    """
    sync_url = url.replace("sqlite+aiosqlite:", "sqlite:", 1)
    engine = create_engine(
        sync_url,
        pool_size=1,
        max_overflow=0,
        connect_args={"check_same_thread": False},
        **_NO_PARAMETERS_IN_ERRORS,
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine


# Concurrent SQLite reads: one pooled connection per worker thread.
READ_THREADS = 8


def make_sync_sqlite_reader(url: str) -> Engine:
    """SQLite read engine on the plain ``sqlite3`` driver, for ``Database.run_read``.

    Through aiosqlite every statement, fetch and transaction end is a round trip between the
    event loop and the connection's thread (about 3 ms per query on a busy 2-core machine); a
    whole read in one worker-thread hop costs a fraction of that. WAL lets these connections
    read beside the writer.
    """
    sync_url = url.replace("sqlite+aiosqlite:", "sqlite:", 1)
    engine = create_engine(
        sync_url,
        pool_size=READ_THREADS,
        max_overflow=0,
        connect_args={"check_same_thread": False},
        **_NO_PARAMETERS_IN_ERRORS,
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
    return engine


@dataclass
class Database:
    """Sessions for reading and for writing.

    PostgreSQL: one async engine for both. SQLite: async reads beside a synchronous writer
    (``sync_write``) that the index's BatchWriter drives from a worker thread, and synchronous
    readers (``sync_read``) that ``run_read`` drives the same way.
    """

    url: str
    read_engine: AsyncEngine
    write_engine: AsyncEngine
    read: async_sessionmaker[AsyncSession]
    write: async_sessionmaker[AsyncSession]
    sync_write_engine: Engine | None = None
    sync_write: sessionmaker[Session] | None = None
    sync_read_engine: Engine | None = None
    sync_read: sessionmaker[Session] | None = None
    _read_limiter: anyio.CapacityLimiter | None = field(default=None, repr=False)

    @property
    def dialect(self) -> str:
        return self.write_engine.dialect.name

    async def run_read(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` (plain synchronous SQLAlchemy) in one read-only transaction.

        The same function serves both databases: on SQLite it runs in a worker thread on the
        ``sqlite3`` driver, in one hop; on PostgreSQL through ``AsyncSession.run_sync`` on
        asyncpg. ``work`` must return plain values (rows, tuples, detached objects).
        """
        if self.sync_read is None:
            async with self.read() as session:
                return await session.run_sync(work)
        if self._read_limiter is None:
            self._read_limiter = anyio.CapacityLimiter(READ_THREADS)
        return await anyio.to_thread.run_sync(
            _read_in_session, self.sync_read, work, limiter=self._read_limiter
        )

    async def dispose(self) -> None:
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()
        if self.sync_write_engine is not None:
            self.sync_write_engine.dispose()
        if self.sync_read_engine is not None:
            self.sync_read_engine.dispose()


def _read_in_session(sessions: sessionmaker[Session], work: Callable[[Session], T]) -> T:
    with sessions() as session:
        try:
            return work(session)
        finally:
            session.rollback()


def open_database(url: str) -> Database:
    read_engine = make_engine(url)
    write_engine = make_engine(url, writer=True) if is_sqlite(url) else read_engine
    sync_engine = make_sync_sqlite_writer(url) if is_sqlite(url) else None
    read_sync_engine = make_sync_sqlite_reader(url) if is_sqlite(url) else None
    return Database(
        url=url,
        read_engine=read_engine,
        write_engine=write_engine,
        read=async_sessionmaker(read_engine, expire_on_commit=False),
        write=async_sessionmaker(write_engine, expire_on_commit=False),
        sync_write_engine=sync_engine,
        sync_write=sessionmaker(sync_engine, expire_on_commit=False) if sync_engine else None,
        sync_read_engine=read_sync_engine,
        sync_read=(
            sessionmaker(read_sync_engine, expire_on_commit=False) if read_sync_engine else None
        ),
    )

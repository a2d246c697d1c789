"""Engine construction for both databases: SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker


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


def make_engine(url: str, *, writer: bool = False, echo: bool = False) -> AsyncEngine:
    """An engine for ``url``; on SQLite ``writer=True`` gives the one-connection write engine."""
    if not is_sqlite(url):
        return create_async_engine(
            url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True
        )
    # SQLite has one writer at a time: queue writers at a one-connection pool (cheap, fair)
    # rather than letting them spin on the file lock.
    pool = {"pool_size": 1, "max_overflow": 0} if writer else {"pool_size": 8, "max_overflow": 8}
    engine = create_async_engine(url, echo=echo, **pool)
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
        sync_url, pool_size=1, max_overflow=0, connect_args={"check_same_thread": False}
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine


@dataclass
class Database:
    """Sessions for reading and for writing.

    PostgreSQL: one async engine for both. SQLite: async reads beside a synchronous writer
    (``sync_write``) that the index's BatchWriter drives from a worker thread.
    """

    url: str
    read_engine: AsyncEngine
    write_engine: AsyncEngine
    read: async_sessionmaker[AsyncSession]
    write: async_sessionmaker[AsyncSession]
    sync_write_engine: Engine | None = None
    sync_write: sessionmaker[Session] | None = None

    @property
    def dialect(self) -> str:
        return self.write_engine.dialect.name

    async def dispose(self) -> None:
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()
        if self.sync_write_engine is not None:
            self.sync_write_engine.dispose()


def open_database(url: str) -> Database:
    read_engine = make_engine(url)
    write_engine = make_engine(url, writer=True) if is_sqlite(url) else read_engine
    sync_engine = make_sync_sqlite_writer(url) if is_sqlite(url) else None
    return Database(
        url=url,
        read_engine=read_engine,
        write_engine=write_engine,
        read=async_sessionmaker(read_engine, expire_on_commit=False),
        write=async_sessionmaker(write_engine, expire_on_commit=False),
        sync_write_engine=sync_engine,
        sync_write=sessionmaker(sync_engine, expire_on_commit=False) if sync_engine else None,
    )

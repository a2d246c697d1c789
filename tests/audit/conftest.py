"""An audit trail on each test database (SQLite file and PostgreSQL), and raw-SQL tampering."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from dicomvault.audit.trail import AuditTrail
from dicomvault.index.engine import Database, open_database
from dicomvault.index.writer import BatchWriter


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = open_database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
async def trail(db: Database) -> AsyncIterator[AuditTrail]:
    writer = BatchWriter(db)
    yield AuditTrail(db, writer)
    await writer.close()


async def raw_sql(db: Database, *statements: str, **params: object) -> None:
    """Run statements as someone with direct database access would (bypassing the trail)."""
    async with db.read_engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement), params)


async def lift_append_only_triggers(db: Database) -> None:
    """What an attacker with DDL rights does first; the hash chain must still catch them."""
    if db.dialect == "postgresql":
        await raw_sql(db, "DROP TRIGGER audit_events_append_only ON audit_events")
    else:
        await raw_sql(
            db, "DROP TRIGGER audit_events_no_update", "DROP TRIGGER audit_events_no_delete"
        )

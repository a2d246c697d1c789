"""The migrations build the same schema on both databases as the models describe."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

import dicomvault.audit.models
import dicomvault.auth.models  # noqa: F401  (registers the tables on Base)
from dicomvault.index.models import Base

pytestmark = pytest.mark.anyio


async def test_migrated_schema_matches_models(engine: AsyncEngine) -> None:
    assert {"studies", "audit_events", "users", "clients", "refresh_tokens"} <= set(
        Base.metadata.tables
    )
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        for table in Base.metadata.tables.values():
            assert table.name in tables
            columns = await conn.run_sync(
                lambda c, name=table.name: {col["name"] for col in inspect(c).get_columns(name)}
            )
            assert columns == {c.name for c in table.columns}

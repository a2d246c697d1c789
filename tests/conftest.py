"""Shared fixtures: the databases every index test runs against."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from dicomvault.index.engine import make_engine
from dicomvault.index.migrate import upgrade_to_head
from tests.support.postgres import create_database, running_postgres


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    with running_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database: a SQLite file, or a fresh database on the PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'index.sqlite3'}"
    else:
        base: str = request.getfixturevalue("postgres_server")
        url = _fresh_postgres_database(base, request.node.name)
    upgrade_to_head(url)
    return url


def _fresh_postgres_database(base_url: str, test_name: str) -> str:
    """One database per test: isolation without relying on the code under test to roll back."""
    name = "t_" + hashlib.sha1(f"{test_name}{uuid.uuid4()}".encode()).hexdigest()[:20]
    return create_database(base_url, name)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(db_url)
    yield eng
    await eng.dispose()

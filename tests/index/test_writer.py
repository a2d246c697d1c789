"""Write transactions: SQLite pieces share a commit; a failing piece rolls back only itself."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.orm import Session

from dicomvault.index.engine import open_database
from dicomvault.index.models import PendingWrite
from dicomvault.index.writer import BatchWriter

pytestmark = pytest.mark.anyio


async def test_failures_are_isolated_and_successes_committed(db_url: str) -> None:
    db = open_database(db_url)
    writer = BatchWriter(db)
    commits = 0

    def count_commit(*_: object) -> None:
        nonlocal commits
        commits += 1

    engine = db.sync_write_engine or db.write_engine.sync_engine
    event.listen(engine, "commit", count_commit)

    def add(session: Session, key: str) -> int:
        pk = session.execute(
            insert(PendingWrite).values(blob_key=key).returning(PendingWrite.pk)
        ).scalar_one()
        if key.startswith("bad"):
            raise ValueError(key)
        return int(pk)

    try:
        keys = [f"good-{i}" if i % 3 else f"bad-{i}" for i in range(30)]
        results = await asyncio.gather(
            *[writer.run(lambda s, k=k: add(s, k)) for k in keys], return_exceptions=True
        )
        for key, result in zip(keys, results, strict=True):
            assert isinstance(result, ValueError if key.startswith("bad") else int)
        async with db.read() as session:
            stored = set((await session.execute(select(PendingWrite.blob_key))).scalars().all())
            count = (await session.execute(select(func.count(PendingWrite.pk)))).scalar_one()
        assert stored == {k for k in keys if k.startswith("good")}
        assert count == 20
        if db.dialect == "sqlite":
            assert commits < 20  # commits were shared
        else:
            assert commits == 20  # one per successful transaction
    finally:
        await writer.close()
        await db.dispose()

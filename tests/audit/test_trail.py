"""Appending, querying and verifying on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import DBAPIError

from dicomvault.audit import codes
from dicomvault.audit.records import GENESIS_HASH, AuditEvent
from dicomvault.audit.trail import AuditTrail
from dicomvault.index.engine import Database, open_database
from dicomvault.index.writer import BatchWriter
from tests.audit.conftest import raw_sql

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def query_event(n: int = 0, **fields: object) -> AuditEvent:
    defaults: dict[str, object] = {
        "principal_subject": "user:1",
        "principal_name": "rad1",
        "role": "radiologist",
        "tenant": "north",
        "detail": f"QIDO-RS studies #{n}",
    }
    return AuditEvent.of(codes.QUERY, **(defaults | fields))


async def test_append_returns_the_committed_record_chained_from_genesis(
    trail: AuditTrail,
) -> None:
    first = await trail.append(query_event(1, patient_id="PID-1", study_uids=("1.2.3",)))
    second = await trail.append(query_event(2))
    assert (first.id, second.id) == (1, 2)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash != second.hash
    assert first.time.tzinfo is not None and first.time <= second.time
    # Committed and readable through a fresh read session, field for field.
    stored = await trail.query(limit=10)
    assert stored == [second, first]
    result = await trail.verify()
    assert result.ok and result.records_checked == 2
    assert (result.head_id, result.head_hash) == (2, second.hash)


async def test_empty_trail_verifies(trail: AuditTrail) -> None:
    result = await trail.verify()
    assert result.ok and result.records_checked == 0 and result.head_hash == GENESIS_HASH


async def test_concurrent_appends_never_fork_the_chain(trail: AuditTrail) -> None:
    records = await asyncio.gather(*(trail.append(query_event(n)) for n in range(40)))
    assert sorted(r.id for r in records) == list(range(1, 41))
    assert len({r.prev_hash for r in records}) == 40
    result = await trail.verify(page_size=7)  # several pages, one partial
    assert result.ok and result.records_checked == 40


async def test_two_processes_appending_to_one_database_stay_one_chain(
    db_url: str, trail: AuditTrail
) -> None:
    """A second Database + writer stands for another replica (advisory lock / SQLite lock)."""
    other_db = open_database(db_url)
    other_writer = BatchWriter(other_db)
    other = AuditTrail(other_db, other_writer)
    try:
        await asyncio.gather(
            *(trail.append(query_event(n)) for n in range(15)),
            *(other.append(query_event(100 + n)) for n in range(15)),
        )
    finally:
        await other_writer.close()
        await other_db.dispose()
    result = await trail.verify()
    assert result.ok and result.records_checked == 30


async def test_the_table_refuses_update_and_delete(db: Database, trail: AuditTrail) -> None:
    await trail.append(query_event())
    with pytest.raises(DBAPIError, match="append-only"):
        await raw_sql(db, "UPDATE audit_events SET outcome = 4")
    with pytest.raises(DBAPIError, match="append-only"):
        await raw_sql(db, "DELETE FROM audit_events")
    if db.dialect == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            await raw_sql(db, "TRUNCATE audit_events")
    assert (await trail.verify()).records_checked == 1


async def test_query_filters(trail: AuditTrail) -> None:
    await trail.append(query_event(1, patient_id="PID-A", time=T0))
    await trail.append(
        AuditEvent.of(
            codes.RETRIEVE,
            principal_subject="user:2",
            principal_name="tech1",
            role="technician",
            tenant="south",
            patient_id="PID-B",
            time=T0 + timedelta(hours=1),
        )
    )
    await trail.append(
        AuditEvent.of(
            codes.STUDY_DELETE,
            principal_subject="user:3",
            principal_name="admin",
            role="admin",
            tenant="north",
            patient_id="PID-A",
            time=T0 + timedelta(hours=2),
        )
    )

    async def ids(**filters: object) -> list[int]:
        return [r.id for r in await trail.query(**filters)]  # type: ignore[arg-type]

    assert await ids() == [3, 2, 1]  # newest first
    assert await ids(patient_id="PID-A") == [3, 1]
    assert await ids(patient_id="PID-C") == []
    assert await ids(principal="tech1") == [2]  # by name
    assert await ids(principal="user:3") == [3]  # by subject id
    assert await ids(action=codes.EventID.QUERY) == [1]
    assert await ids(action="110105") == [3]
    assert await ids(tenant="north") == [3, 1]
    assert await ids(since=T0 + timedelta(hours=1)) == [3, 2]  # inclusive
    assert await ids(until=T0 + timedelta(hours=1)) == [1]  # exclusive
    assert await ids(since=T0, until=T0 + timedelta(hours=2), tenant="north") == [1]
    assert await ids(patient_id="PID-A", principal="admin", action="110105") == [3]
    assert await ids(limit=1) == [3]
    assert await ids(limit=2, offset=1) == [2, 1]
    with pytest.raises(ValueError):
        await trail.query(limit=0)


async def test_records_stream_in_chain_order_across_pages(trail: AuditTrail) -> None:
    for n in range(5):
        await trail.append(query_event(n))
    assert [r.id async for r in trail.records(page_size=2)] == [1, 2, 3, 4, 5]

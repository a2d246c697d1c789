"""Someone with database access edits the trail: verify reports the first bad record."""

from __future__ import annotations

import pytest

from dicomvault.audit import codes
from dicomvault.audit.records import AuditEvent
from dicomvault.audit.trail import AuditTrail
from dicomvault.index.engine import Database
from tests.audit.conftest import lift_append_only_triggers, raw_sql

pytestmark = pytest.mark.anyio

N = 8


@pytest.fixture
async def filled(db: Database, trail: AuditTrail) -> AuditTrail:
    for n in range(N):
        await trail.append(
            AuditEvent.of(
                codes.RETRIEVE,
                principal_subject=f"user:{n % 3}",
                role="technician",
                patient_id=f"PID-{n}",
                study_uids=(f"1.2.826.0.1.{n}",),
                detail=f"WADO-RS #{n}",
            )
        )
    assert (await trail.verify()).ok
    await lift_append_only_triggers(db)
    assert (await trail.verify()).ok  # lifting the triggers alone changes nothing
    return trail


async def assert_first_bad(
    trail: AuditTrail, bad_id: int, reason: str, checked: int | None = None
) -> None:
    """``checked``: the intact records before the bad one (default: all ids below it)."""
    checked = bad_id - 1 if checked is None else checked
    result = await trail.verify(page_size=3)
    assert not result.ok
    assert result.first_bad_id == bad_id
    assert result.reason is not None and result.reason.startswith(reason)
    assert result.records_checked == checked


@pytest.mark.parametrize(
    "assignment",
    [
        "outcome = 4",
        "detail = 'nothing happened'",
        "patient_id = 'PID-OTHER'",
        "principal_subject = 'user:99'",
        "time_us = time_us + 1",
        "study_uids = '1.2.826.0.1.99'",
    ],
)
async def test_a_changed_field_is_reported_at_its_record(
    db: Database, filled: AuditTrail, assignment: str
) -> None:
    await raw_sql(db, f"UPDATE audit_events SET {assignment} WHERE id = 4")
    await assert_first_bad(filled, 4, "hash mismatch")


async def test_a_deleted_middle_record_is_reported_at_the_next(
    db: Database, filled: AuditTrail
) -> None:
    await raw_sql(db, "DELETE FROM audit_events WHERE id = 5")
    await assert_first_bad(filled, 6, "sequence gap", checked=4)


async def test_a_deleted_first_record_is_reported(db: Database, filled: AuditTrail) -> None:
    await raw_sql(db, "DELETE FROM audit_events WHERE id = 1")
    await assert_first_bad(filled, 2, "sequence gap", checked=0)


async def test_reordered_records_are_reported(db: Database, filled: AuditTrail) -> None:
    await raw_sql(
        db,
        "UPDATE audit_events SET id = 1000 WHERE id = 3",
        "UPDATE audit_events SET id = 3 WHERE id = 4",
        "UPDATE audit_events SET id = 4 WHERE id = 1000",
    )
    await assert_first_bad(filled, 3, "chain broken")


async def test_a_rehashed_record_breaks_the_link_to_the_next(
    db: Database, filled: AuditTrail
) -> None:
    """Recomputing the changed record's hash hides it, but not from its successor."""
    record = next(r for r in await filled.query(limit=N) if r.id == 4)
    forged = type(record)(**(record.__dict__ | {"detail": "edited"}))
    await raw_sql(
        db,
        "UPDATE audit_events SET detail = 'edited', hash = :hash WHERE id = 4",
        hash=forged.computed_hash(),
    )
    await assert_first_bad(filled, 5, "chain broken")


async def test_a_replaced_chain_tail_is_reported(db: Database, filled: AuditTrail) -> None:
    """Deleting the newest records and appending new ones leaves the old head unreachable."""
    before = await filled.verify()
    await raw_sql(db, "DELETE FROM audit_events WHERE id > 6")
    after = await filled.verify()
    # The chain alone still holds; the externally kept head is what shows the loss.
    assert after.ok and after.head_id == 6 and after.head_hash != before.head_hash

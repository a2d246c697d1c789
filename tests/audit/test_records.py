"""Events are validated strictly; a record's hash covers every field (no database needed)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from dicomvault.audit import codes
from dicomvault.audit.records import (
    GENESIS_HASH,
    HASHED_FIELDS,
    AuditEvent,
    AuditRecord,
    canonical_bytes,
)

WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def sealed(**fields: object) -> AuditRecord:
    event = AuditEvent.of(
        codes.RETRIEVE,
        principal_subject="user:7",
        principal_name="tech1",
        role="technician",
        tenant="north",
        patient_id="PID-0001",
        study_uids=("1.2.3.4",),
        series_uids=("1.2.3.4.5", "1.2.3.4.6"),
        source_ip="192.0.2.10",
        correlation_id="req-1",
        detail="WADO-RS study",
        **fields,
    )
    return AuditRecord.seal(event, id=1, time=WHEN, prev_hash=GENESIS_HASH)


def test_hash_is_sha256_of_sorted_compact_json_including_prev_hash() -> None:
    record = sealed()
    document = json.loads(canonical_bytes(record.hashed_fields()))
    assert document["prev_hash"] == GENESIS_HASH
    assert document["time"] == 1767323045678901  # microseconds since the epoch, UTC
    assert document["series_uids"] == ["1.2.3.4.5", "1.2.3.4.6"]
    raw = canonical_bytes(record.hashed_fields())
    assert raw == json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    assert record.hash == hashlib.sha256(raw).hexdigest() == record.computed_hash()


CHANGES: dict[str, Any] = {
    "id": 2,
    "time": datetime(2026, 1, 2, 3, 4, 5, 678902, tzinfo=UTC),
    "principal_subject": "user:8",
    "principal_name": "tech2",
    "role": "admin",
    "tenant": "south",
    "event_id": "110112",
    "event_type": "110122",
    "action": "C",
    "outcome": 4,
    "patient_id": "PID-0002",
    "study_uids": ("1.2.3.5",),
    "series_uids": ("1.2.3.4.5",),
    "source_ip": "192.0.2.11",
    "correlation_id": "req-2",
    "detail": "WADO-RS series",
    "prev_hash": "f" * 64,
}


def test_every_hashed_field_is_covered() -> None:
    assert set(CHANGES) == set(HASHED_FIELDS)


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_changing_any_field_changes_the_hash(field: str) -> None:
    record = sealed()
    changed = dataclasses.replace(record, **{field: CHANGES[field]})
    assert changed.computed_hash() != record.hash


def test_seal_rounds_time_to_utc_microseconds_and_keeps_event_time() -> None:
    record = sealed(time=WHEN)
    assert record.time == WHEN and record.time.tzinfo is not None
    assert record.time_us == 1767323045678901


@pytest.mark.parametrize(
    "fields",
    [
        {"event_id": "999999", "action": "R"},
        {"event_id": "110112", "action": "X"},
        {"event_id": "110112", "action": "E", "outcome": 5},
        {"event_id": "110112", "action": "E", "event_type": "123"},
        {"event_id": "110112", "action": "E", "detail": "x" * 1025},
        {"event_id": "110112", "action": "E", "study_uids": ("1.2\\3",)},
        {"event_id": "110112", "action": "E", "time": datetime(2026, 1, 1)},
    ],
)
def test_invalid_events_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        AuditEvent(**fields)  # type: ignore[arg-type]


def test_operation_kinds_use_dcm_codes_from_cid_400_and_401() -> None:
    kinds = [v for v in vars(codes).values() if isinstance(v, codes.EventKind)]
    assert len(kinds) >= 15
    for kind in kinds:
        assert kind.event_id in codes.EVENT_ID_MEANING
        assert kind.event_type is None or kind.event_type in codes.EVENT_TYPE_MEANING
    assert codes.QUERY.event_id == "110112"
    assert codes.RETRIEVE.event_id == "110104"
    assert (codes.STUDY_DELETE.event_id, codes.STUDY_DELETE.action) == ("110105", "D")
    assert codes.LOGIN.event_id == "110114" and codes.LOGIN.event_type == "110122"
    assert codes.AUTHORIZATION_DENIED.event_id == "110113"
    assert codes.AUDIT_LOG_USED.event_id == "110101"

"""What an audit event says, and how a stored record is sealed into the hash chain.

An ``AuditEvent`` is what a caller reports (PS3.15 A.5.1: event identification, active
participant, participant objects, outcome). An ``AuditRecord`` is that event once appended:
it has its sequence ``id``, its ``time``, the ``prev_hash`` of the record before it and its own
``hash`` = SHA-256 of the canonical serialisation of all its fields, ``prev_hash`` included.

No PHI rule: ``patient_id`` is the one field that may identify a patient (the audit trail's
purpose is "who touched which patient's images"). ``detail`` is free text shown to auditors and
exported to FHIR: callers must never put patient names, birth dates or other PHI there — write
what happened ("C-FIND at STUDY level", "role lacks delete"), not whom it was about.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dicomvault.audit.codes import (
    EVENT_ACTION_MEANING,
    EVENT_ID_MEANING,
    EVENT_TYPE_MEANING,
    EventKind,
    EventOutcome,
)

# The prev_hash of the first record: a fixed, documented value, so verification needs no secret.
GENESIS_HASH = "0" * 64
# Bumped if the canonical serialisation ever changes; part of every hashed document.
RECORD_FORMAT = 1
MAX_DETAIL_LENGTH = 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MULTI_VALUE_DELIMITER = "\\"


@dataclass(frozen=True)
class AuditEvent:
    """One thing that happened, as the caller reports it (validated strictly on creation).

    Plain strings for principal and role keep ``audit`` independent of ``auth`` (same layer).
    ``time`` defaults to the moment the event is appended.
    """

    event_id: str
    action: str
    outcome: int = EventOutcome.SUCCESS
    event_type: str | None = None
    principal_subject: str = ""
    principal_name: str = ""
    role: str = ""
    tenant: str | None = None
    # The one place a patient ID may be recorded (PS3.15 A.5: the patient participant object).
    patient_id: str | None = None
    study_uids: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    source_ip: str | None = None
    correlation_id: str | None = None
    # Free text for auditors, NEVER PHI: no patient names, birth dates, query strings with names.
    detail: str = ""
    time: datetime | None = None

    @classmethod
    def of(cls, kind: EventKind, **fields: Any) -> AuditEvent:
        """An event of one of the operation kinds in ``codes`` (e.g. ``codes.QUERY``)."""
        return cls(event_id=kind.event_id, action=kind.action, event_type=kind.event_type, **fields)

    def __post_init__(self) -> None:
        _require(self.event_id in EVENT_ID_MEANING, f"unknown event ID {self.event_id!r}")
        _require(self.action in EVENT_ACTION_MEANING, f"unknown action code {self.action!r}")
        _require(
            self.event_type is None or self.event_type in EVENT_TYPE_MEANING,
            f"unknown event type code {self.event_type!r}",
        )
        _require(self.outcome in set(EventOutcome), f"unknown outcome {self.outcome!r}")
        _require(len(self.detail) <= MAX_DETAIL_LENGTH, "detail is too long")
        for uid in (*self.study_uids, *self.series_uids):
            _require(_MULTI_VALUE_DELIMITER not in uid, "a UID cannot contain a backslash")
        _require(
            self.time is None or self.time.utcoffset() is not None, "time must be timezone-aware"
        )


@dataclass(frozen=True)
class AuditRecord:
    """An appended event: plain values exactly as stored, so a tampered row still loads."""

    id: int
    time: datetime
    principal_subject: str
    principal_name: str
    role: str
    tenant: str | None
    event_id: str
    event_type: str | None
    action: str
    outcome: int
    patient_id: str | None
    study_uids: tuple[str, ...]
    series_uids: tuple[str, ...]
    source_ip: str | None
    correlation_id: str | None
    detail: str
    prev_hash: str
    hash: str

    @classmethod
    def seal(cls, event: AuditEvent, *, id: int, time: datetime, prev_hash: str) -> AuditRecord:
        """The record for ``event`` at position ``id`` in the chain, with its hash computed."""
        fields: dict[str, Any] = {
            "id": id,
            # Round to what the database stores (whole microseconds, UTC).
            "time": time_from_micros(micros_from_time(event.time or time)),
            "principal_subject": event.principal_subject,
            "principal_name": event.principal_name,
            "role": event.role,
            "tenant": event.tenant,
            "event_id": str(event.event_id),
            "event_type": None if event.event_type is None else str(event.event_type),
            "action": str(event.action),
            "outcome": int(event.outcome),
            "patient_id": event.patient_id,
            "study_uids": tuple(event.study_uids),
            "series_uids": tuple(event.series_uids),
            "source_ip": event.source_ip,
            "correlation_id": event.correlation_id,
            "detail": event.detail,
            "prev_hash": prev_hash,
        }
        return cls(**fields, hash=record_hash(fields))

    @property
    def time_us(self) -> int:
        return micros_from_time(self.time)

    def columns(self) -> dict[str, Any]:
        """The row of ``audit_events`` that stores this record."""
        row = {name: getattr(self, name) for name in HASHED_FIELDS if name != "time"}
        row["time_us"] = self.time_us
        row["study_uids"] = join_uids(self.study_uids)
        row["series_uids"] = join_uids(self.series_uids)
        row["hash"] = self.hash
        return row

    def hashed_fields(self) -> dict[str, Any]:
        """Every field except ``hash`` itself: the input of ``record_hash``."""
        return {name: getattr(self, name) for name in HASHED_FIELDS}

    def computed_hash(self) -> str:
        """The hash the record's current fields give; differs from ``hash`` after tampering."""
        return record_hash(self.hashed_fields())


HASHED_FIELDS = (
    "id",
    "time",
    "principal_subject",
    "principal_name",
    "role",
    "tenant",
    "event_id",
    "event_type",
    "action",
    "outcome",
    "patient_id",
    "study_uids",
    "series_uids",
    "source_ip",
    "correlation_id",
    "detail",
    "prev_hash",
)


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    """The serialisation that is hashed: sorted-key, compact, ASCII-only JSON.

    Times enter as integer microseconds since the epoch, so no clock formatting can change a hash.
    """
    document = {name: fields[name] for name in HASHED_FIELDS}
    document["time"] = micros_from_time(fields["time"])
    document["study_uids"] = list(fields["study_uids"])
    document["series_uids"] = list(fields["series_uids"])
    document["format"] = RECORD_FORMAT
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def record_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(fields)).hexdigest()


def micros_from_time(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def time_from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def join_uids(uids: tuple[str, ...]) -> str:
    return _MULTI_VALUE_DELIMITER.join(uids)


def split_uids(joined: str) -> tuple[str, ...]:
    return tuple(joined.split(_MULTI_VALUE_DELIMITER)) if joined else ()


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)

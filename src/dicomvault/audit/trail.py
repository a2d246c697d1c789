"""The append-only, hash-chained audit trail (DESIGN.md, security model; PS3.15 A.5).

Appends are serialised so the chain never forks: on SQLite every write runs in the index's
BatchWriter thread, one after another (and several appends share one durable commit); on
PostgreSQL each append takes a transaction-level advisory lock before it reads the last hash,
held until its commit. ``append`` returns only once the record is committed, so the API can await
it before it answers. A unique ``prev_hash`` in the schema refuses a fork even if the lock were
bypassed.

``verify`` re-reads the whole chain in pages (keyset on ``id``) and reports the first record that
does not hold: a changed field (hash mismatch), a deleted record (sequence gap), a record moved or
re-hashed (``prev_hash`` not the hash of its predecessor). What a chain cannot show by itself is
the loss of its newest records: keep ``VerifyResult.head_hash`` somewhere else to detect that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Select, insert, or_, select, text
from sqlalchemy.orm import Session

from dicomvault.audit.models import AuditEventRow
from dicomvault.audit.records import (
    GENESIS_HASH,
    AuditEvent,
    AuditRecord,
    micros_from_time,
    split_uids,
    time_from_micros,
)
from dicomvault.index.engine import Database
from dicomvault.index.writer import BatchWriter

# pg_advisory_xact_lock key for "the audit chain": the ASCII bytes of "dicomaud".
APPEND_LOCK_KEY = 0x6469636F6D617564
MAX_QUERY_LIMIT = 1000
VERIFY_PAGE_SIZE = 1000


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of ``AuditTrail.verify``: ``ok``, or the first bad record and why."""

    ok: bool
    records_checked: int
    first_bad_id: int | None = None
    reason: str | None = None
    # The newest verified record: store it elsewhere to detect later truncation of the tail.
    head_id: int = 0
    head_hash: str = GENESIS_HASH


class AuditTrail:
    """Append, search and verify audit records in the metadata database."""

    def __init__(self, db: Database, writer: BatchWriter) -> None:
        self._db = db
        self._writer = writer

    async def append(self, event: AuditEvent) -> AuditRecord:
        """Append ``event`` to the chain; return once the record is durably committed."""
        return await self._writer.run(lambda session: _append_in(session, event))

    async def query(
        self,
        *,
        patient_id: str | None = None,
        principal: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        action: str | None = None,
        tenant: str | None = None,
        correlation_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditRecord]:
        """Records matching every filter given, newest first.

        ``principal`` matches the subject id or the name; ``action`` is an event ID
        (``codes.EventID``, e.g. "110112"); ``since`` is inclusive, ``until`` exclusive;
        ``patient_id`` also matches one value of a multi-patient record (backslash-joined).
        """
        if not 1 <= limit <= MAX_QUERY_LIMIT or offset < 0:
            raise ValueError(f"limit must be 1..{MAX_QUERY_LIMIT} and offset >= 0")
        statement = _filtered(
            select(AuditEventRow),
            patient_id=patient_id,
            principal=principal,
            since=since,
            until=until,
            action=action,
            tenant=tenant,
            correlation_id=correlation_id,
        )
        statement = statement.order_by(AuditEventRow.id.desc()).limit(limit).offset(offset)
        async with self._db.read() as session:
            rows = (await session.scalars(statement)).all()
        return [record_from_row(row) for row in rows]

    async def records(self, page_size: int = VERIFY_PAGE_SIZE) -> AsyncIterator[AuditRecord]:
        """Every record in chain order, read a page at a time (for verify and full exports)."""
        after = 0
        while True:
            statement: Select[AuditEventRow] = (
                select(AuditEventRow)
                .where(AuditEventRow.id > after)
                .order_by(AuditEventRow.id)
                .limit(page_size)
            )
            async with self._db.read() as session:
                rows = (await session.scalars(statement)).all()
            for row in rows:
                yield record_from_row(row)
            if len(rows) < page_size:
                return
            after = rows[-1].id

    async def verify(self, page_size: int = VERIFY_PAGE_SIZE) -> VerifyResult:
        """Walk the chain from genesis; stop at the first record that breaks it."""
        checked, head_id, head_hash = 0, 0, GENESIS_HASH
        async for record in self.records(page_size):
            reason = chain_fault(record, head_id, head_hash)
            if reason is not None:
                return VerifyResult(False, checked, record.id, reason, head_id, head_hash)
            checked, head_id, head_hash = checked + 1, record.id, record.hash
        return VerifyResult(True, checked, head_id=head_id, head_hash=head_hash)


def chain_fault(record: AuditRecord, prev_id: int, prev_hash: str) -> str | None:
    """Why ``record`` does not follow the record (``prev_id``, ``prev_hash``), or None."""
    if record.id != prev_id + 1:
        return f"sequence gap: expected id {prev_id + 1}, records are missing or moved"
    if record.prev_hash != prev_hash:
        return "chain broken: prev_hash is not the hash of the previous record"
    if record.computed_hash() != record.hash:
        return "hash mismatch: the record's fields were changed after it was written"
    return None


# Built once: every request appends a record, and a statement with its values bound in
# (``insert().values(...)``) is compiled anew each time, where parameters leave it cached.
_HEAD = select(AuditEventRow.id, AuditEventRow.hash).order_by(AuditEventRow.id.desc()).limit(1)
_INSERT = insert(AuditEventRow)
_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


def _append_in(session: Session, event: AuditEvent) -> AuditRecord:
    """Inside one write transaction: lock the chain, read its head, insert the next record."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_LOCK, {"key": APPEND_LOCK_KEY})
    head = session.execute(_HEAD).first()
    prev_id, prev_hash = (head[0], head[1]) if head is not None else (0, GENESIS_HASH)
    record = AuditRecord.seal(event, id=prev_id + 1, time=datetime.now(UTC), prev_hash=prev_hash)
    session.execute(_INSERT, [record.columns()])
    return record


def _filtered(
    statement: Select[AuditEventRow],
    *,
    patient_id: str | None,
    principal: str | None,
    since: datetime | None,
    until: datetime | None,
    action: str | None,
    tenant: str | None,
    correlation_id: str | None = None,
) -> Select[AuditEventRow]:
    row = AuditEventRow
    if patient_id is not None:
        statement = statement.where(_has_patient(patient_id))
    if principal is not None:
        statement = statement.where(
            or_(row.principal_subject == principal, row.principal_name == principal)
        )
    if since is not None:
        statement = statement.where(row.time_us >= micros_from_time(since))
    if until is not None:
        statement = statement.where(row.time_us < micros_from_time(until))
    if action is not None:
        statement = statement.where(row.event_id == str(action))
    if tenant is not None:
        statement = statement.where(row.tenant == tenant)
    if correlation_id is not None:
        statement = statement.where(row.correlation_id == correlation_id)
    return statement


def _has_patient(patient_id: str) -> ColumnElement[bool]:
    """``patient_id`` is the record's patient, or one of its backslash-joined patients."""
    column = AuditEventRow.patient_id
    literal = patient_id.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    sep = "\\"
    return or_(
        column == patient_id,
        column.like(f"{literal}{sep}%", escape="!"),
        column.like(f"%{sep}{literal}", escape="!"),
        column.like(f"%{sep}{literal}{sep}%", escape="!"),
    )


def record_from_row(row: AuditEventRow) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        time=time_from_micros(row.time_us),
        principal_subject=row.principal_subject,
        principal_name=row.principal_name,
        role=row.role,
        tenant=row.tenant,
        event_id=row.event_id,
        event_type=row.event_type,
        action=row.action,
        outcome=row.outcome,
        patient_id=row.patient_id,
        study_uids=split_uids(row.study_uids),
        series_uids=split_uids(row.series_uids),
        source_ip=row.source_ip,
        correlation_id=row.correlation_id,
        detail=row.detail,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )

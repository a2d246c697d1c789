"""The audit table: one row per event, each chained to the previous one by its hash.

``id`` is assigned by the appender (previous id + 1, under the append lock), not by a database
sequence, so the chain has no gaps and a missing row shows as a gap. ``time_us`` is microseconds
since the Unix epoch (UTC): exact on both databases, where a SQLite DATETIME loses its zone.
UID lists are backslash-joined (the DICOM multi-value delimiter, never part of a UI value).

This is the one table that may hold a patient ID (who touched which patient's images is the
audit's purpose); ``detail`` is free text that callers must keep free of PHI.
Migration 0002 adds triggers that refuse UPDATE and DELETE on this table.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dicomvault.index.models import Base


class AuditEventRow(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_time", "time_us"),
        Index("ix_audit_events_patient_id", "patient_id"),
        Index("ix_audit_events_principal", "principal_subject"),
        Index("ix_audit_events_tenant_time", "tenant", "time_us"),
        Index("ix_audit_events_event_id", "event_id"),
        # A unique prev_hash makes a fork (two records after the same one) impossible.
        UniqueConstraint("prev_hash", name="uq_audit_events_prev_hash"),
        UniqueConstraint("hash", name="uq_audit_events_hash"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time_us: Mapped[int] = mapped_column(BigInteger)
    principal_subject: Mapped[str] = mapped_column(Text)
    principal_name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(32))
    tenant: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(16))
    event_type: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(1))
    outcome: Mapped[int] = mapped_column(SmallInteger)
    patient_id: Mapped[str | None] = mapped_column(Text)
    study_uids: Mapped[str] = mapped_column(Text)
    series_uids: Mapped[str] = mapped_column(Text)
    source_ip: Mapped[str | None] = mapped_column(String(64))
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

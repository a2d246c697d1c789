"""Tables of the metadata index (Study Root: patient attributes live on the study row).

Columns hold what QIDO matches on; ``attributes_json`` holds the level's DICOM JSON so QIDO answers
without reading blobs; ``instances.metadata_json`` is the whole data set for WADO-RS /metadata.
Every row carries its tenant, and every unique key includes it, so the same UID in two tenants
never collides.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

UID = String(64)


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "studies"
    __table_args__ = (
        UniqueConstraint("tenant", "study_uid", name="uq_studies_tenant_uid"),
        Index("ix_studies_tenant_patient_id", "tenant", "patient_id"),
        Index("ix_studies_tenant_date", "tenant", "study_date"),
        Index("ix_studies_tenant_accession", "tenant", "accession_number"),
        # A study list, newest stored first, read in index order instead of sorted.
        Index("ix_studies_tenant_pk", "tenant", "pk"),
        # PatientName=Prefix* (wildcard matching is GLOB/LIKE with a literal prefix; on
        # PostgreSQL a LIKE prefix uses a btree in any locale only with text_pattern_ops).
        Index(
            "ix_studies_tenant_patient_name",
            "tenant",
            "patient_name",
            postgresql_ops={"patient_name": "text_pattern_ops"},
        ),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    study_uid: Mapped[str] = mapped_column(UID)
    patient_id: Mapped[str | None] = mapped_column(Text)
    patient_name: Mapped[str | None] = mapped_column(Text)
    # Upper-cased, for case-insensitive fuzzy matching per name component (PS3.18 8.3.4.6.1).
    patient_name_fuzzy: Mapped[str | None] = mapped_column(Text)
    patient_birth_date: Mapped[str | None] = mapped_column(Text)
    patient_sex: Mapped[str | None] = mapped_column(Text)
    study_date: Mapped[str | None] = mapped_column(Text)
    study_time: Mapped[str | None] = mapped_column(Text)
    accession_number: Mapped[str | None] = mapped_column(Text)
    study_id: Mapped[str | None] = mapped_column(Text)
    study_description: Mapped[str | None] = mapped_column(Text)
    referring_physician_name: Mapped[str | None] = mapped_column(Text)
    # Backslash-joined, sorted; recomputed when series come and go.
    modalities_in_study: Mapped[str] = mapped_column(Text, default="")
    num_series: Mapped[int] = mapped_column(Integer, default=0)
    num_instances: Mapped[int] = mapped_column(Integer, default=0)
    attributes_json: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Series(Base):
    __tablename__ = "series"
    __table_args__ = (
        UniqueConstraint("tenant", "series_uid", name="uq_series_tenant_uid"),
        Index("ix_series_study", "study_pk"),
        Index("ix_series_tenant_modality", "tenant", "modality"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.pk", ondelete="CASCADE"))
    tenant: Mapped[str] = mapped_column(String(64))
    series_uid: Mapped[str] = mapped_column(UID)
    modality: Mapped[str | None] = mapped_column(Text)
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str | None] = mapped_column(Text)
    series_date: Mapped[str | None] = mapped_column(Text)
    series_time: Mapped[str | None] = mapped_column(Text)
    body_part_examined: Mapped[str | None] = mapped_column(Text)
    performed_procedure_step_start_date: Mapped[str | None] = mapped_column(Text)
    num_instances: Mapped[int] = mapped_column(Integer, default=0)
    attributes_json: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (
        UniqueConstraint("tenant", "sop_uid", name="uq_instances_tenant_uid"),
        Index("ix_instances_series", "series_pk", "instance_number"),
        Index("ix_instances_study", "study_pk"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.pk", ondelete="CASCADE"))
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.pk", ondelete="CASCADE"))
    tenant: Mapped[str] = mapped_column(String(64))
    sop_uid: Mapped[str] = mapped_column(UID)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    instance_number: Mapped[int | None] = mapped_column(Integer)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    number_of_frames: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(Text)
    attributes_json: Mapped[bytes] = mapped_column(LargeBinary)
    # Whole data set as DICOM JSON, BulkDataURIs relative to a placeholder (see retrieve/).
    metadata_json: Mapped[bytes] = mapped_column(LargeBinary)
    # Where Pixel Data and its frames lie in the blob (JSON), for range-read frame retrieval.
    pixel_json: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PendingWrite(Base):
    """A blob put that has started but whose row is not committed yet.

    Made before the put, removed in the commit's transaction; what remains after a crash names the
    orphan blobs a sweep deletes, without listing a whole bucket (DESIGN.md data flow).
    """

    __tablename__ = "pending_writes"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    blob_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

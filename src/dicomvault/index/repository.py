"""Writes and reads of the index that ingest, retrieve and delete need; every call takes a Scope.

QIDO's searches live in ``index/search.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as replace_field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dicomvault.errors import Conflict
from dicomvault.index.engine import Database
from dicomvault.index.models import Instance, PendingWrite, Series, Study
from dicomvault.index.scope import Scope
from dicomvault.index.writer import BatchWriter


@dataclass(frozen=True)
class InstanceRecord:
    """Everything the index keeps about one stored instance (built by ingest/)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    values: Mapping[str, str | int | None]
    study_json: bytes
    series_json: bytes
    instance_json: bytes
    metadata_json: bytes
    pixel_json: bytes | None
    size: int
    sha256: str
    blob_key: str


class StoreOutcome(StrEnum):
    STORED = "stored"
    ALREADY_STORED = "already_stored"  # identical bytes: idempotent re-send
    CONFLICT = "conflict"  # different bytes, policy says keep the stored one
    REPLACED = "replaced"


@dataclass(frozen=True)
class StoreResult:
    outcome: StoreOutcome
    # The blob the index no longer references (replaced) or never will (conflict/duplicate).
    unreferenced_blob_key: str | None = None
    # The Patient ID of the study row the instance went into: the study keeps the patient of
    # its first instance, and every read names that one (for the audit record of the store).
    study_patient_id: str | None = field(default=None, repr=False)  # PHI: kept out of reprs


@dataclass(frozen=True)
class StoredInstance:
    """What retrieve/ needs to serve an instance."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    size: int
    sha256: str
    blob_key: str
    number_of_frames: int | None
    pixel_json: bytes | None
    # Whose data it is, for the audit record of the request that reads it (PS3.15 A.5.3):
    # read by the same lookup, so that auditing a retrieve costs no second query.
    tenant: str = ""
    patient_id: str | None = field(default=None, repr=False)  # PHI: kept out of reprs

    @property
    def owner(self) -> StudyOwner:
        return StudyOwner(self.tenant, self.study_uid, self.patient_id)


@dataclass(frozen=True)
class StudyOwner:
    """Who a stored study belongs to: its tenant and its patient (for audit records)."""

    tenant: str
    study_uid: str
    patient_id: str | None = field(repr=False)  # PHI: kept out of reprs


@dataclass(frozen=True)
class MetadataDocument:
    """One instance's stored DICOM JSON (WADO-RS /metadata) and whose data it is."""

    study_uid: str
    series_uid: str
    sop_uid: str
    document: bytes
    owner: StudyOwner


def _upsert(dialect: str, model: Any, values: dict[str, Any], keys: list[str]) -> Any:
    ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return ins(model).values(**values).on_conflict_do_nothing(index_elements=keys)


def _text(values: Mapping[str, str | int | None], keyword: str) -> str | None:
    value = values.get(keyword)
    return None if value is None else str(value)


def _int(values: Mapping[str, str | int | None], keyword: str) -> int | None:
    value = values.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class IndexRepository:
    def __init__(self, db: Database, writer: BatchWriter) -> None:
        self._db = db
        self._writer = writer

    # -- pending writes: the sweep's list of blobs that may be orphans ------------------------
    async def begin_pending_write(self, blob_key: str) -> int:
        def work(session: Session) -> int:
            inserted = session.execute(
                insert(PendingWrite).values(blob_key=blob_key).returning(PendingWrite.pk)
            )
            return int(inserted.scalar_one())

        return await self._writer.run(work)

    async def clear_pending_write(self, pending_pk: int) -> None:
        def work(session: Session) -> None:
            session.execute(delete(PendingWrite).where(PendingWrite.pk == pending_pk))

        await self._writer.run(work)

    async def pending_writes(self, older_than: datetime) -> list[tuple[int, str]]:
        """Pending writes begun before ``older_than``: their puts crashed or are long dead."""
        query = select(PendingWrite.pk, PendingWrite.blob_key).where(
            PendingWrite.created_at < older_than
        )
        rows = await self._db.run_read(lambda session: session.execute(query).all())
        return [(pk, key) for pk, key in rows]

    async def blob_is_referenced(self, blob_key: str) -> bool:
        query = select(Instance.pk).where(Instance.blob_key == blob_key).limit(1)
        found = await self._db.run_read(lambda session: session.execute(query).first())
        return found is not None

    # -- store ---------------------------------------------------------------------------------
    async def store_instance(
        self, scope: Scope, record: InstanceRecord, *, pending_pk: int, replace: bool
    ) -> StoreResult:
        """One transaction: upsert study and series, insert (or replace) the instance, clear the
        pending write. Only after this commit does the instance exist for anyone (DESIGN.md, 4)."""
        tenant = scope.write_tenant
        dialect = self._db.dialect

        def work(session: Session) -> StoreResult:
            kept = _kept_instance(session, tenant, record, replace)
            if kept is not None:
                # Nothing of this instance is written (no study or series row either).
                session.execute(delete(PendingWrite).where(PendingWrite.pk == pending_pk))
                return kept
            study_pk, study_patient_id = _ensure_study(session, dialect, tenant, record)
            series_pk, new_series = _ensure_series(session, tenant, study_pk, record)
            result = _put_instance(session, dialect, tenant, study_pk, series_pk, record, replace)
            if result.outcome is StoreOutcome.STORED:
                _count_new_instance(session, study_pk, series_pk, new_series)
            session.execute(delete(PendingWrite).where(PendingWrite.pk == pending_pk))
            return replace_field(result, study_patient_id=study_patient_id)

        return await self._writer.run(work)

    # -- read ----------------------------------------------------------------------------------
    async def find_instances(
        self,
        scope: Scope,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> list[StoredInstance]:
        """Instances of a study/series/instance within the scope, in series/instance order."""
        query = (
            select(
                Study.study_uid,
                Series.series_uid,
                Instance.sop_uid,
                Instance.sop_class_uid,
                Instance.transfer_syntax_uid,
                Instance.size,
                Instance.sha256,
                Instance.blob_key,
                Instance.number_of_frames,
                Instance.pixel_json,
                Study.tenant,
                Study.patient_id,
            )
            .join(Series, Instance.series_pk == Series.pk)
            .join(Study, Instance.study_pk == Study.pk)
            .where(Study.tenant.in_(scope.tenants), Study.study_uid == study_uid)
            .order_by(Series.series_number, Series.pk, Instance.instance_number, Instance.pk)
        )
        if series_uid is not None:
            query = query.where(Series.series_uid == series_uid)
        if sop_uid is not None:
            query = query.where(Instance.sop_uid == sop_uid)
        rows = await self._db.run_read(lambda session: session.execute(query).all())
        return [StoredInstance(**row._asdict()) for row in rows]

    async def metadata_documents(
        self,
        scope: Scope,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> list[MetadataDocument]:
        """The stored DICOM JSON for WADO-RS /metadata, without blob reads."""
        query = (
            select(
                Study.study_uid,
                Series.series_uid,
                Instance.sop_uid,
                Instance.metadata_json,
                Study.tenant,
                Study.patient_id,
            )
            .join(Series, Instance.series_pk == Series.pk)
            .join(Study, Instance.study_pk == Study.pk)
            .where(Study.tenant.in_(scope.tenants), Study.study_uid == study_uid)
            .order_by(Series.series_number, Series.pk, Instance.instance_number, Instance.pk)
        )
        if series_uid is not None:
            query = query.where(Series.series_uid == series_uid)
        if sop_uid is not None:
            query = query.where(Instance.sop_uid == sop_uid)
        rows = await self._db.run_read(lambda session: session.execute(query).all())
        return [
            MetadataDocument(study, series, sop, bytes(doc), StudyOwner(tenant, study, patient))
            for study, series, sop, doc, tenant, patient in rows
        ]

    # -- delete --------------------------------------------------------------------------------
    async def delete(
        self,
        scope: Scope,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> list[str]:
        """Remove the rows of a study/series/instance; return the blob keys to delete.

        A delete is a write: it acts on the scope's write tenant only (DESIGN.md, "writes go to
        its default tenant"), never on a study of the same UID in another tenant the caller can
        read. Rows go first (in one transaction) so that nothing can be served from a blob that
        is about to disappear; a crash before the blobs are removed leaves orphans for the sweep.
        """
        if not scope.can_write():
            return []
        tenant = scope.write_tenant

        dialect = self._db.dialect

        def work(session: Session) -> list[str]:
            # (tenant, study_uid) is unique: at most one row. Locked on PostgreSQL, as a store
            # into the study locks it: a store in flight commits before this counts what is
            # left (or waits for it), so the delete never cascades over an instance it missed.
            query = select(Study.pk).where(Study.tenant == tenant, Study.study_uid == study_uid)
            if dialect == "postgresql":
                query = query.with_for_update()
            study = session.execute(query).scalar_one_or_none()
            if study is None:
                return []
            target = select(Instance.pk, Instance.blob_key).where(Instance.study_pk == study)
            if series_uid is not None:
                target = target.join(Series, Instance.series_pk == Series.pk).where(
                    Series.series_uid == series_uid
                )
            if sop_uid is not None:
                target = target.where(Instance.sop_uid == sop_uid)
            victims = session.execute(target).all()
            if not victims:
                return []
            session.execute(delete(Instance).where(Instance.pk.in_([v.pk for v in victims])))
            _recount_study(session, study)
            return [v.blob_key for v in victims]

        return await self._writer.run(work)

    async def study_owners(
        self, scope: Scope, study_uids: Sequence[str], *, write_only: bool = False
    ) -> list[StudyOwner]:
        """Tenant and PatientID of each study with one of these UIDs within the scope.

        For the audit trail (PS3.15 A.5.3: the patient participant object of a transfer or a
        deletion, and the tenant holding the data). ``write_only`` narrows to the write tenant,
        as a delete does. A UID present in several tenants of the scope gives one row each.
        """
        tenants = {scope.write_tenant} if write_only else set(scope.tenants)
        wanted = sorted(set(study_uids))
        if not wanted or not tenants:
            return []
        query = (
            select(Study.tenant, Study.study_uid, Study.patient_id)
            .where(Study.tenant.in_(tenants), Study.study_uid.in_(wanted))
            .order_by(Study.tenant, Study.study_uid)
        )
        rows = await self._db.run_read(lambda session: session.execute(query).all())
        return [StudyOwner(tenant, study, patient) for tenant, study, patient in rows]

    async def instance_count(self, scope: Scope) -> int:
        query = select(func.count(Instance.pk)).where(Instance.tenant.in_(scope.tenants))
        return int(await self._db.run_read(lambda session: session.execute(query).scalar_one()))


# -- write steps (synchronous: they run inside the writer's transaction) -------------------------
def _kept_instance(
    session: Session, tenant: str, r: InstanceRecord, replace: bool
) -> StoreResult | None:
    """The outcome when an instance of this SOP Instance UID is stored already and stays as it
    is (identical bytes; or different ones that the policy, or another study or series, keeps
    out): decided before any row is written, so that a refused instance leaves no empty study
    or series behind. None when the instance is new or is to replace the stored one. (Two
    stores of a new instance racing each other are settled by ``_put_instance``.)"""
    existing = session.execute(
        select(Instance.sha256, Instance.blob_key, Series.series_uid, Study.study_uid)
        .add_columns(Study.patient_id)
        .join(Series, Instance.series_pk == Series.pk)
        .join(Study, Instance.study_pk == Study.pk)
        .where(Instance.tenant == tenant, Instance.sop_uid == r.sop_uid)
    ).first()
    if existing is None:
        return None
    unused = None if existing.blob_key == r.blob_key else r.blob_key
    if existing.sha256 == r.sha256:
        return StoreResult(StoreOutcome.ALREADY_STORED, unused, existing.patient_id)
    elsewhere = (existing.study_uid, existing.series_uid) != (r.study_uid, r.series_uid)
    if elsewhere or not replace:
        return StoreResult(StoreOutcome.CONFLICT, unused, existing.patient_id)
    return None


def _ensure_study(
    session: Session, dialect: str, tenant: str, r: InstanceRecord
) -> tuple[int, str | None]:
    """The study row's primary key and Patient ID, the row created if it did not exist.

    On PostgreSQL the row is locked for the rest of the transaction (a delete locks it too), and
    a study deleted while this waited for the lock is created afresh."""
    v = r.values
    name = _text(v, "PatientName")
    upsert = _upsert(
        dialect,
        Study,
        {
            "tenant": tenant,
            "study_uid": r.study_uid,
            "patient_id": _text(v, "PatientID"),
            "patient_name": name,
            "patient_name_fuzzy": name.upper() if name else None,
            "patient_birth_date": _text(v, "PatientBirthDate"),
            "patient_sex": _text(v, "PatientSex"),
            "study_date": _text(v, "StudyDate"),
            "study_time": _text(v, "StudyTime"),
            "accession_number": _text(v, "AccessionNumber"),
            "study_id": _text(v, "StudyID"),
            "study_description": _text(v, "StudyDescription"),
            "referring_physician_name": _text(v, "ReferringPhysicianName"),
            "modalities_in_study": "",
            "num_series": 0,
            "num_instances": 0,
            "attributes_json": r.study_json,
        },
        ["tenant", "study_uid"],
    )
    session.execute(upsert)
    # Lock the study row: counters and ModalitiesInStudy of one study change one at a time.
    query = select(Study.pk, Study.patient_id).where(
        Study.tenant == tenant, Study.study_uid == r.study_uid
    )
    if dialect == "postgresql":
        query = query.with_for_update()
    found = session.execute(query).first()
    if found is None:  # deleted by a transaction that held the lock: make it again
        session.execute(upsert)
        found = session.execute(query).one()
    pk, patient_id = found
    return int(pk), patient_id


def _ensure_series(
    session: Session, tenant: str, study_pk: int, r: InstanceRecord
) -> tuple[int, bool]:
    existing = session.execute(
        select(Series.pk, Series.study_pk).where(
            Series.tenant == tenant, Series.series_uid == r.series_uid
        )
    ).first()
    if existing is not None:
        if existing.study_pk != study_pk:
            raise Conflict("SeriesInstanceUID already belongs to another study")
        return int(existing.pk), False
    v = r.values
    inserted = session.execute(
        insert(Series)
        .values(
            study_pk=study_pk,
            tenant=tenant,
            series_uid=r.series_uid,
            modality=_text(v, "Modality"),
            series_number=_int(v, "SeriesNumber"),
            series_description=_text(v, "SeriesDescription"),
            series_date=_text(v, "SeriesDate"),
            series_time=_text(v, "SeriesTime"),
            body_part_examined=_text(v, "BodyPartExamined"),
            performed_procedure_step_start_date=_text(v, "PerformedProcedureStepStartDate"),
            num_instances=0,
            attributes_json=r.series_json,
        )
        .returning(Series.pk)
    )
    return int(inserted.scalar_one()), True


def _put_instance(
    session: Session,
    dialect: str,
    tenant: str,
    study_pk: int,
    series_pk: int,
    r: InstanceRecord,
    replace: bool,
) -> StoreResult:
    fields = _instance_fields(r)
    inserted = session.execute(
        _upsert(
            dialect,
            Instance,
            {"tenant": tenant, "study_pk": study_pk, "series_pk": series_pk, **fields},
            ["tenant", "sop_uid"],
        ).returning(Instance.pk)
    ).first()
    if inserted is not None:
        return StoreResult(StoreOutcome.STORED)
    existing = session.execute(
        select(Instance.pk, Instance.sha256, Instance.blob_key, Instance.series_pk).where(
            Instance.tenant == tenant, Instance.sop_uid == r.sop_uid
        )
    ).one()
    if existing.sha256 == r.sha256:
        unused = None if existing.blob_key == r.blob_key else r.blob_key
        return StoreResult(StoreOutcome.ALREADY_STORED, unused)
    if existing.series_pk != series_pk or not replace:
        return StoreResult(StoreOutcome.CONFLICT, r.blob_key)
    session.execute(update(Instance).where(Instance.pk == existing.pk).values(**fields))
    old_key: str = existing.blob_key
    return StoreResult(StoreOutcome.REPLACED, old_key if old_key != r.blob_key else None)


def _instance_fields(r: InstanceRecord) -> dict[str, Any]:
    v = r.values
    return {
        "sop_uid": r.sop_uid,
        "sop_class_uid": r.sop_class_uid,
        "instance_number": _int(v, "InstanceNumber"),
        "rows": _int(v, "Rows"),
        "columns": _int(v, "Columns"),
        "number_of_frames": _int(v, "NumberOfFrames"),
        "transfer_syntax_uid": r.transfer_syntax_uid,
        "size": r.size,
        "sha256": r.sha256,
        "blob_key": r.blob_key,
        "attributes_json": r.instance_json,
        "metadata_json": r.metadata_json,
        "pixel_json": r.pixel_json,
    }


def _count_new_instance(session: Session, study_pk: int, series_pk: int, new_series: bool) -> None:
    session.execute(
        update(Series).where(Series.pk == series_pk).values(num_instances=Series.num_instances + 1)
    )
    study_values: dict[str, Any] = {
        "num_instances": Study.num_instances + 1,
        "updated_at": func.now(),
    }
    if new_series:
        study_values["num_series"] = Study.num_series + 1
        study_values["modalities_in_study"] = _modalities(session, study_pk)
    session.execute(update(Study).where(Study.pk == study_pk).values(**study_values))


def _modalities(session: Session, study_pk: int) -> str:
    rows = session.execute(select(Series.modality).where(Series.study_pk == study_pk).distinct())
    return "\\".join(sorted({m for (m,) in rows.all() if m}))


def _recount_study(session: Session, study_pk: int) -> None:
    per_series = session.execute(
        select(Series.pk, func.count(Instance.pk))
        .outerjoin(Instance, Instance.series_pk == Series.pk)
        .where(Series.study_pk == study_pk)
        .group_by(Series.pk)
    ).all()
    empty = [pk for pk, count in per_series if count == 0]
    if empty:
        session.execute(delete(Series).where(Series.pk.in_(empty)))
    live = [(pk, count) for pk, count in per_series if count > 0]
    if not live:
        session.execute(delete(Study).where(Study.pk == study_pk))
        return
    for pk, count in live:
        session.execute(update(Series).where(Series.pk == pk).values(num_instances=count))
    session.execute(
        update(Study)
        .where(Study.pk == study_pk)
        .values(
            num_series=len(live),
            num_instances=sum(count for _, count in live),
            modalities_in_study=_modalities(session, study_pk),
        )
    )

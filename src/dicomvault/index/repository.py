"""Writes and reads of the index that ingest, retrieve and delete need; every call takes a Scope.

QIDO's searches live in ``index/search.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from dicomvault.errors import Conflict
from dicomvault.index.engine import Database
from dicomvault.index.models import Instance, PendingWrite, Series, Study
from dicomvault.index.scope import Scope


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
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- pending writes: the sweep's list of blobs that may be orphans ------------------------
    async def begin_pending_write(self, blob_key: str) -> int:
        async with self._db.write() as session, session.begin():
            row = PendingWrite(blob_key=blob_key)
            session.add(row)
            await session.flush()
            return row.pk

    async def clear_pending_write(self, pending_pk: int) -> None:
        async with self._db.write() as session, session.begin():
            await session.execute(delete(PendingWrite).where(PendingWrite.pk == pending_pk))

    async def pending_writes(self, older_than: datetime) -> list[tuple[int, str]]:
        """Pending writes begun before ``older_than``: their puts crashed or are long dead."""
        async with self._db.read() as session:
            rows = await session.execute(
                select(PendingWrite.pk, PendingWrite.blob_key).where(
                    PendingWrite.created_at < older_than
                )
            )
            return [(pk, key) for pk, key in rows.all()]

    async def blob_is_referenced(self, blob_key: str) -> bool:
        async with self._db.read() as session:
            found = await session.execute(
                select(Instance.pk).where(Instance.blob_key == blob_key).limit(1)
            )
            return found.first() is not None

    # -- store ---------------------------------------------------------------------------------
    async def store_instance(
        self, scope: Scope, record: InstanceRecord, *, pending_pk: int, replace: bool
    ) -> StoreResult:
        """One transaction: upsert study and series, insert (or replace) the instance, clear the
        pending write. Only after this commit does the instance exist for anyone (DESIGN.md, 4)."""
        tenant = scope.write_tenant
        async with self._db.write() as session, session.begin():
            study_pk = await self._ensure_study(session, tenant, record)
            series_pk, new_series = await self._ensure_series(session, tenant, study_pk, record)
            result = await self._put_instance(session, tenant, study_pk, series_pk, record, replace)
            if result.outcome is StoreOutcome.STORED:
                await self._count_new_instance(session, study_pk, series_pk, new_series)
            await session.execute(delete(PendingWrite).where(PendingWrite.pk == pending_pk))
            return result

    async def _ensure_study(self, session: AsyncSession, tenant: str, r: InstanceRecord) -> int:
        v = r.values
        name = _text(v, "PatientName")
        await session.execute(
            _upsert(
                self._db.dialect,
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
        )
        # Lock the study row: counters and ModalitiesInStudy of one study change one at a time.
        query = select(Study.pk).where(Study.tenant == tenant, Study.study_uid == r.study_uid)
        if self._db.dialect == "postgresql":
            query = query.with_for_update()
        return int((await session.execute(query)).scalar_one())

    async def _ensure_series(
        self, session: AsyncSession, tenant: str, study_pk: int, r: InstanceRecord
    ) -> tuple[int, bool]:
        existing = (
            await session.execute(
                select(Series.pk, Series.study_pk).where(
                    Series.tenant == tenant, Series.series_uid == r.series_uid
                )
            )
        ).first()
        if existing is not None:
            if existing.study_pk != study_pk:
                raise Conflict("SeriesInstanceUID already belongs to another study")
            return int(existing.pk), False
        v = r.values
        row = Series(
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
        session.add(row)
        await session.flush()
        return row.pk, True

    async def _put_instance(
        self,
        session: AsyncSession,
        tenant: str,
        study_pk: int,
        series_pk: int,
        r: InstanceRecord,
        replace: bool,
    ) -> StoreResult:
        existing = (
            await session.execute(
                select(Instance).where(Instance.tenant == tenant, Instance.sop_uid == r.sop_uid)
            )
        ).scalar_one_or_none()
        fields = self._instance_fields(r)
        if existing is None:
            session.add(Instance(tenant=tenant, study_pk=study_pk, series_pk=series_pk, **fields))
            await session.flush()
            return StoreResult(StoreOutcome.STORED)
        if existing.sha256 == r.sha256:
            return StoreResult(
                StoreOutcome.ALREADY_STORED,
                None if existing.blob_key == r.blob_key else r.blob_key,
            )
        if existing.series_pk != series_pk or not replace:
            return StoreResult(StoreOutcome.CONFLICT, r.blob_key)
        old_key = existing.blob_key
        for name, value in fields.items():
            setattr(existing, name, value)
        await session.flush()
        return StoreResult(StoreOutcome.REPLACED, old_key if old_key != r.blob_key else None)

    @staticmethod
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

    async def _count_new_instance(
        self, session: AsyncSession, study_pk: int, series_pk: int, new_series: bool
    ) -> None:
        await session.execute(
            update(Series)
            .where(Series.pk == series_pk)
            .values(num_instances=Series.num_instances + 1)
        )
        study_values: dict[str, Any] = {
            "num_instances": Study.num_instances + 1,
            "updated_at": func.now(),
        }
        if new_series:
            study_values["num_series"] = Study.num_series + 1
            study_values["modalities_in_study"] = await self._modalities(session, study_pk)
        await session.execute(update(Study).where(Study.pk == study_pk).values(**study_values))

    @staticmethod
    async def _modalities(session: AsyncSession, study_pk: int) -> str:
        rows = await session.execute(
            select(Series.modality).where(Series.study_pk == study_pk).distinct()
        )
        return "\\".join(sorted({m for (m,) in rows.all() if m}))

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
        async with self._db.read() as session:
            rows = (await session.execute(query)).all()
        return [StoredInstance(**row._asdict()) for row in rows]

    async def metadata_documents(
        self,
        scope: Scope,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> list[tuple[str, str, str, bytes]]:
        """(study, series, sop, metadata_json) for WADO-RS /metadata, without blob reads."""
        query = (
            select(Study.study_uid, Series.series_uid, Instance.sop_uid, Instance.metadata_json)
            .join(Series, Instance.series_pk == Series.pk)
            .join(Study, Instance.study_pk == Study.pk)
            .where(Study.tenant.in_(scope.tenants), Study.study_uid == study_uid)
            .order_by(Series.series_number, Series.pk, Instance.instance_number, Instance.pk)
        )
        if series_uid is not None:
            query = query.where(Series.series_uid == series_uid)
        if sop_uid is not None:
            query = query.where(Instance.sop_uid == sop_uid)
        async with self._db.read() as session:
            rows = (await session.execute(query)).all()
        return [(a, b, c, bytes(d)) for a, b, c, d in rows]

    # -- delete --------------------------------------------------------------------------------
    async def delete(
        self,
        scope: Scope,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> list[str]:
        """Remove the rows of a study/series/instance; return the blob keys to delete.

        Rows go first (in one transaction) so that nothing can be served from a blob that is
        about to disappear; a crash before the blobs are removed leaves orphans for the sweep.
        """
        async with self._db.write() as session, session.begin():
            study = (
                await session.execute(
                    select(Study).where(
                        Study.tenant.in_(scope.tenants), Study.study_uid == study_uid
                    )
                )
            ).scalar_one_or_none()
            if study is None:
                return []
            target = select(Instance.pk, Instance.blob_key, Instance.series_pk).where(
                Instance.study_pk == study.pk
            )
            if series_uid is not None:
                target = target.join(Series, Instance.series_pk == Series.pk).where(
                    Series.series_uid == series_uid
                )
            if sop_uid is not None:
                target = target.where(Instance.sop_uid == sop_uid)
            victims = (await session.execute(target)).all()
            if not victims:
                return []
            await session.execute(delete(Instance).where(Instance.pk.in_([v.pk for v in victims])))
            await self._recount_study(session, study)
            return [v.blob_key for v in victims]

    async def _recount_study(self, session: AsyncSession, study: Study) -> None:
        per_series = (
            await session.execute(
                select(Series.pk, func.count(Instance.pk))
                .outerjoin(Instance, Instance.series_pk == Series.pk)
                .where(Series.study_pk == study.pk)
                .group_by(Series.pk)
            )
        ).all()
        empty = [pk for pk, count in per_series if count == 0]
        if empty:
            await session.execute(delete(Series).where(Series.pk.in_(empty)))
        live = [(pk, count) for pk, count in per_series if count > 0]
        if not live:
            await session.execute(delete(Study).where(Study.pk == study.pk))
            return
        for pk, count in live:
            await session.execute(update(Series).where(Series.pk == pk).values(num_instances=count))
        study.num_series = len(live)
        study.num_instances = sum(count for _, count in live)
        study.modalities_in_study = await self._modalities(session, study.pk)

    async def instance_count(self, scope: Scope) -> int:
        async with self._db.read() as session:
            return int(
                (
                    await session.execute(
                        select(func.count(Instance.pk)).where(Instance.tenant.in_(scope.tenants))
                    )
                ).scalar_one()
            )


async def stored_sha256(db: Database, tenant: str, sop_uid: str) -> str | None:
    """The hash of the instance stored under ``sop_uid`` in ``tenant``, if any.

    Lets ingest answer an identical re-send, or a conflicting one under the reject policy, without
    writing a blob at all.
    """
    async with db.read() as session:
        return (
            await session.execute(
                select(Instance.sha256).where(
                    Instance.tenant == tenant, Instance.sop_uid == sop_uid
                )
            )
        ).scalar_one_or_none()

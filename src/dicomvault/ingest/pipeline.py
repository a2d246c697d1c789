"""The one ingest pipeline: spooled bytes → validated, stored, indexed instance.

STOW-RS, DIMSE C-STORE and folder import all call ``ingest_spooled``; it never knows which protocol
delivered the bytes. The steps follow DESIGN.md's data flow; each is a named function.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import anyio.to_thread
import orjson

from dicomvault.config import DuplicatePolicy, Settings
from dicomvault.dicom.parse import ParsedInstance, ParseLimits, read_instance_header
from dicomvault.dicom.problems import DicomProblem
from dicomvault.errors import (
    DataSetMismatch,
    DicomVaultError,
    DuplicateInstance,
    InvalidInstance,
    PayloadTooLarge,
    StorageError,
    StudyMismatch,
)
from dicomvault.index.engine import Database
from dicomvault.index.repository import (
    IndexRepository,
    InstanceRecord,
    StoreOutcome,
    StoreResult,
)
from dicomvault.index.scope import Scope
from dicomvault.ingest.spool import SpoolFile, zero_preamble
from dicomvault.live.bus import EventBus
from dicomvault.live.events import EventKind, InstanceEvent
from dicomvault.storage.base import BlobStore, InvalidBlobKey, blob_key


class IngestStatus(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # identical bytes were already stored: success, nothing written
    REPLACED = "replaced"


@dataclass(frozen=True)
class IngestResult:
    status: IngestStatus
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    # Warning Reason (0008,1196), PS3.18 Table 10.5.3-2, for a stored but altered instance.
    warning: int | None = None
    # The instance's Patient ID, and that of the study it went into (the study keeps its first
    # instance's), for the audit record of the request that stored it: both patients' data.
    patient_id: str | None = field(default=None, repr=False)  # PHI: kept out of reprs
    study_patient_id: str | None = field(default=None, repr=False)


# PS3.4 Annex B.2.3 "Coercion of Data Elements": what is stored is not byte for byte what was
# sent. Said when a non-standard preamble (a PE/ELF polyglot, CVE-2019-11687) was zeroed.
COERCION_OF_DATA_ELEMENTS = 0xB000


@dataclass
class Ingestor:
    """The pipeline's collaborators, bound once at start-up by bootstrap."""

    settings: Settings
    db: Database
    repository: IndexRepository
    store: BlobStore
    # Live events after the commit (DESIGN.md data flow, step 5); none in bare test set-ups.
    events: EventBus | None = None

    @property
    def limits(self) -> ParseLimits:
        return ParseLimits(
            max_inflated_bytes=self.settings.max_inflated_bytes,
            max_sequence_depth=self.settings.max_sequence_depth,
        )

    def new_spool(self) -> SpoolFile:
        return SpoolFile(self.settings.spool_dir, self.settings.max_instance_bytes)

    async def ingest_spooled(
        self,
        spool: SpoolFile,
        sha256: str,
        scope: Scope,
        *,
        expected_study_uid: str | None = None,
    ) -> IngestResult:
        """Validate, store and index one spooled instance; the spool file is consumed.

        Raises a ``DicomVaultError`` carrying the DICOM failure reason on any refusal; nothing is
        left behind then (no blob, no row, no spool file).
        """
        try:
            parsed = await self._validate(spool.path)
            try:
                if (
                    expected_study_uid is not None
                    and parsed.study_instance_uid != expected_study_uid
                ):
                    raise StudyMismatch("StudyInstanceUID differs from the study in the URL")
                if parsed.nonstandard_preamble:
                    sha256 = await anyio.to_thread.run_sync(zero_preamble, spool.path)
                return await self._store(spool, sha256, parsed, scope)
            except DicomVaultError as error:
                error.sop_class_uid = parsed.sop_class_uid
                error.sop_uid = parsed.sop_instance_uid
                raise
        finally:
            spool.discard()

    async def _validate(self, path: Path) -> ParsedInstance:
        try:
            return await anyio.to_thread.run_sync(
                read_instance_header, path, self.limits, self.settings.bulk_data_threshold
            )
        except DicomProblem as problem:
            raise _as_error(problem) from problem

    async def _store(
        self, spool: SpoolFile, sha256: str, parsed: ParsedInstance, scope: Scope
    ) -> IngestResult:
        tenant = scope.write_tenant
        policy = self.settings.duplicate_policy
        try:
            key = blob_key(
                tenant,
                parsed.study_instance_uid,
                parsed.series_instance_uid,
                parsed.sop_instance_uid,
                sha256,
                put_id=secrets.token_hex(8),  # this request's own blob, shared with no other
            )
        except InvalidBlobKey as exc:  # validation should have caught it; never store it
            raise InvalidInstance("instance UIDs cannot be stored") from exc
        pending = await self.repository.begin_pending_write(key)
        try:
            await self.store.put_file(key, spool.path, move=True)
        except Exception as exc:
            await self._undo_put(key, pending)
            raise StorageError("the blob store refused the instance") from exc
        # Once queued, the transaction commits or fails on its own (the writer shields it), so
        # a cancelled request (the client gone) first learns which: the blob of a row that
        # committed after all must stay.
        store = asyncio.ensure_future(
            self.repository.store_instance(
                scope,
                _record(parsed, sha256, spool.size, key),
                pending_pk=pending,
                replace=policy is DuplicatePolicy.REPLACE,
            )
        )
        try:
            outcome = await asyncio.shield(store)
        except BaseException:
            if not store.done():
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({store})
            if store.cancelled() or store.exception() is not None:
                await self._undo_put(key, pending)
            else:  # committed: what it left unreferenced goes all the same
                await self._drop_unreferenced(store.result())
            raise
        await self._drop_unreferenced(outcome)
        if outcome.outcome is StoreOutcome.CONFLICT:
            raise DuplicateInstance("a different instance is stored under this SOPInstanceUID")
        status = {
            StoreOutcome.STORED: IngestStatus.STORED,
            StoreOutcome.ALREADY_STORED: IngestStatus.DUPLICATE,
            StoreOutcome.REPLACED: IngestStatus.REPLACED,
        }[outcome.outcome]
        if self.events is not None and status is not IngestStatus.DUPLICATE:
            # Committed: now the instance exists for anyone. Tenant and UIDs only, never PHI.
            kind = EventKind.REPLACED if status is IngestStatus.REPLACED else EventKind.STORED
            await self.events.publish(
                InstanceEvent(
                    kind,
                    tenant,
                    parsed.study_instance_uid,
                    parsed.series_instance_uid,
                    parsed.sop_instance_uid,
                )
            )
        result = _result(
            status, parsed, COERCION_OF_DATA_ELEMENTS if parsed.nonstandard_preamble else None
        )
        return dataclasses.replace(result, study_patient_id=outcome.study_patient_id)

    async def _drop_unreferenced(self, outcome: StoreResult) -> None:
        """The blob the committed transaction left without a row: this request's copy of an
        instance stored already or refused, or the one a replacement superseded."""
        if outcome.unreferenced_blob_key is not None:
            with anyio.CancelScope(shield=True):
                await self.store.delete(outcome.unreferenced_blob_key)

    async def _undo_put(self, key: str, pending: int) -> None:
        """Remove this request's blob, unless a row references it after all (then it stays)."""
        with anyio.CancelScope(shield=True):
            try:
                if not await self.repository.blob_is_referenced(key):
                    await self.store.delete(key)
            finally:
                await self.repository.clear_pending_write(pending)


def _as_error(problem: DicomProblem) -> DicomVaultError:
    cls: type[DicomVaultError]
    if problem.failure_reason == 0xA700:
        cls = PayloadTooLarge
    elif problem.failure_reason == 0xA900:
        cls = DataSetMismatch
    else:
        cls = InvalidInstance
    error = cls(str(problem))
    error.failure_reason = problem.failure_reason
    return error


def _result(status: IngestStatus, parsed: ParsedInstance, warning: int | None) -> IngestResult:
    return IngestResult(
        status=status,
        sop_class_uid=parsed.sop_class_uid,
        sop_instance_uid=parsed.sop_instance_uid,
        study_instance_uid=parsed.study_instance_uid,
        series_instance_uid=parsed.series_instance_uid,
        warning=warning,
        patient_id=_patient_id(parsed),
    )


def _patient_id(parsed: ParsedInstance) -> str | None:
    value = parsed.values.get("PatientID")
    return str(value) if value not in (None, "") else None


def _record(parsed: ParsedInstance, sha256: str, size: int, key: str) -> InstanceRecord:
    pixel = (
        orjson.dumps(dataclasses.asdict(parsed.pixel_data))
        if parsed.pixel_data is not None
        else None
    )
    return InstanceRecord(
        study_uid=parsed.study_instance_uid,
        series_uid=parsed.series_instance_uid,
        sop_uid=parsed.sop_instance_uid,
        sop_class_uid=parsed.sop_class_uid,
        transfer_syntax_uid=parsed.transfer_syntax_uid,
        values=parsed.values,
        study_json=orjson.dumps(parsed.study_json),
        series_json=orjson.dumps(parsed.series_json),
        instance_json=orjson.dumps(parsed.instance_json),
        metadata_json=parsed.metadata_json,
        pixel_json=pixel,
        size=size,
        sha256=sha256,
        blob_key=key,
    )

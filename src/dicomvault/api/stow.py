"""STOW-RS (PS3.18 10.5): stream the request body, part by part, into the ingest pipeline.

Each part is spooled while it arrives and ingested as soon as it is complete, so memory stays
bounded whatever the body's size. The response is the Store Instances Response Module
(PS3.18 Table 10.5.3-2) as DICOM JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request

from dicomvault.api.media import parse_media_type
from dicomvault.api.multipart import MultipartReader, Part
from dicomvault.errors import (
    BadRequest,
    DicomVaultError,
    InvalidInstance,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from dicomvault.index.scope import Scope
from dicomvault.ingest.pipeline import Ingestor, IngestResult
from dicomvault.ingest.spool import SpoolFile

CANNOT_UNDERSTAND = 0xC000


@dataclass
class StoreReport:
    stored: list[IngestResult] = field(default_factory=list)
    failed: list[tuple[str | None, str | None, int]] = field(default_factory=list)

    def fail(
        self, error: DicomVaultError, uids: tuple[str | None, str | None] = (None, None)
    ) -> None:
        self.failed.append((uids[0], uids[1], error.failure_reason))

    @property
    def status_code(self) -> int:
        """PS3.18 10.5.3.1: 200 all stored as sent; 202 stored with warnings (Warning Reason)
        or some failed; 409 none; 400 if nothing parsed."""
        if self.stored and not self.failed:
            return 202 if any(r.warning is not None for r in self.stored) else 200
        if self.stored:
            return 202
        if self.failed and all(reason == CANNOT_UNDERSTAND for *_, reason in self.failed):
            return 400
        return 409

    def to_json(self, base_url: str, study_uid: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        study = study_uid or (self.stored[0].study_instance_uid if self.stored else None)
        if study is not None and (self.stored or study_uid):
            body["00081190"] = {"vr": "UR", "Value": [f"{base_url}/studies/{study}"]}
        if self.failed:
            body["00081198"] = {"vr": "SQ", "Value": [_failed_item(*f) for f in self.failed]}
        if self.stored:
            body["00081199"] = {
                "vr": "SQ",
                "Value": [_referenced_item(r, base_url) for r in self.stored],
            }
        return body


def _failed_item(sop_class: str | None, sop_uid: str | None, reason: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        "00081150": {"vr": "UI", "Value": [sop_class]} if sop_class else {"vr": "UI"},
        "00081155": {"vr": "UI", "Value": [sop_uid]} if sop_uid else {"vr": "UI"},
        "00081197": {"vr": "US", "Value": [reason]},
    }
    return item


def _referenced_item(r: IngestResult, base_url: str) -> dict[str, Any]:
    url = (
        f"{base_url}/studies/{r.study_instance_uid}/series/{r.series_instance_uid}"
        f"/instances/{r.sop_instance_uid}"
    )
    item: dict[str, Any] = {
        "00081150": {"vr": "UI", "Value": [r.sop_class_uid]},
        "00081155": {"vr": "UI", "Value": [r.sop_instance_uid]},
        "00081190": {"vr": "UR", "Value": [url]},
    }
    if r.warning is not None:
        item["00081196"] = {"vr": "US", "Value": [r.warning]}
    return item


def check_declared_length(request: Request, max_bytes: int) -> None:
    """413 before reading anything when Content-Length already says too much."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError as exc:
            raise BadRequest("Content-Length is not a number") from exc
        if size > max_bytes:
            raise PayloadTooLarge(f"request body larger than {max_bytes} bytes")


async def store_request(
    request: Request, ingestor: Ingestor, scope: Scope, study_uid: str | None
) -> StoreReport:
    """Read a STOW-RS body (multipart/related or a single application/dicom) and ingest it."""
    settings = ingestor.settings
    check_declared_length(request, settings.max_request_bytes)
    media = parse_media_type(request.headers.get("content-type", ""))
    if media.type == "application/dicom":
        # A single instance: its own cap applies to the declared length, before any byte is read.
        check_declared_length(request, settings.max_instance_bytes)
        return await _store_single(request, ingestor, scope, study_uid)
    if media.type != "multipart/related":
        raise UnsupportedMediaType(
            'STOW-RS takes multipart/related; type="application/dicom" or application/dicom'
        )
    part_type = media.params.get("type", "application/dicom").lower()
    if part_type != "application/dicom":
        raise UnsupportedMediaType(f"multipart/related type {part_type!r} is not supported")
    boundary = media.params.get("boundary")
    if not boundary:
        raise BadRequest("multipart/related without a boundary parameter")
    return await _store_multipart(request, ingestor, scope, study_uid, boundary)


async def _body_chunks(request: Request, max_bytes: int):  # type: ignore[no-untyped-def]
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise PayloadTooLarge(f"request body larger than {max_bytes} bytes")
        yield chunk


async def _store_single(
    request: Request, ingestor: Ingestor, scope: Scope, study_uid: str | None
) -> StoreReport:
    report = StoreReport()
    with ingestor.new_spool() as spool:
        try:
            async for chunk in _body_chunks(request, ingestor.settings.max_request_bytes):
                spool.write(chunk)
        except ClientDisconnect as exc:
            raise BadRequest("the client went away before the body ended") from exc
        sha = spool.finish()
        if spool.size == 0:
            raise BadRequest("empty body")
        await _ingest_one(ingestor, spool, sha, scope, study_uid, report)
    return report


async def _store_multipart(
    request: Request, ingestor: Ingestor, scope: Scope, study_uid: str | None, boundary: str
) -> StoreReport:
    report = StoreReport()

    def open_sink(headers: dict[str, str]) -> SpoolFile:
        content_type = headers.get("content-type")
        if content_type and parse_media_type(content_type).type not in (
            "application/dicom",
            "application/octet-stream",
        ):
            raise UnsupportedMediaType("part is not application/dicom")
        return ingestor.new_spool()

    reader = MultipartReader(boundary, open_sink)
    try:
        async for chunk in _body_chunks(request, ingestor.settings.max_request_bytes):
            try:
                reader.feed(chunk)
            except Exception as exc:  # python-multipart's parse errors
                raise BadRequest("malformed multipart/related body") from exc
            await _ingest_parts(reader.take_completed(), ingestor, scope, study_uid, report)
    except ClientDisconnect as exc:
        return _after_stored_parts(
            report, BadRequest("the client went away before the body ended"), exc
        )
    except (PayloadTooLarge, BadRequest) as error:
        return _after_stored_parts(report, error, None)
    finally:
        for part in reader.abandoned():
            _discard(part)
    await _ingest_parts(reader.take_completed(), ingestor, scope, study_uid, report)
    if not report.stored and not report.failed:
        raise BadRequest("the multipart/related body holds no complete part")
    if not reader.finished:
        # Truncated body: the complete parts were handled; say the rest was not understood.
        report.fail(InvalidInstance("multipart body ended before its closing boundary"))
    return report


def _after_stored_parts(
    report: StoreReport, error: DicomVaultError, cause: BaseException | None
) -> StoreReport:
    """The body broke off (too large, malformed, the client gone) after some parts were stored.

    Those stay stored, visible to everyone already: the answer says so (202, with the rest as
    a failure) rather than a bare 4xx that would hide them from the client and the audit
    record. With nothing stored, the error itself is the answer.
    """
    if not report.stored:
        if cause is not None:
            raise error from cause
        raise error
    if isinstance(error, BadRequest):
        error = InvalidInstance(f"{error.message}; the parts before it are stored")
    report.fail(error)
    return report


def _discard(part: Part) -> None:
    if isinstance(part.sink, SpoolFile):
        part.sink.discard()


async def _ingest_parts(
    parts: list[Part], ingestor: Ingestor, scope: Scope, study_uid: str | None, report: StoreReport
) -> None:
    """The completed parts in order; when one ends the request (too large), the rest are
    discarded here: they are no longer the reader's to clean up."""
    for index, part in enumerate(parts):
        try:
            await _ingest_part(ingestor, part, scope, study_uid, report)
        except BaseException:
            for rest in parts[index + 1 :]:
                _discard(rest)
            raise


async def _ingest_part(
    ingestor: Ingestor, part: Part, scope: Scope, study_uid: str | None, report: StoreReport
) -> None:
    spool = part.sink
    if part.error is not None or not isinstance(spool, SpoolFile):
        _discard(part)
        error = part.error
        if isinstance(error, PayloadTooLarge):
            raise error
        report.fail(error if isinstance(error, DicomVaultError) else InvalidInstance("bad part"))
        return
    sha = spool.finish()
    await _ingest_one(ingestor, spool, sha, scope, study_uid, report)


async def _ingest_one(
    ingestor: Ingestor,
    spool: SpoolFile,
    sha: str,
    scope: Scope,
    study_uid: str | None,
    report: StoreReport,
) -> None:
    try:
        result = await ingestor.ingest_spooled(spool, sha, scope, expected_study_uid=study_uid)
    except DicomVaultError as error:
        report.fail(error, (error.sop_class_uid, error.sop_uid))
        return
    report.stored.append(result)

"""DICOMweb (PS3.18) under /dicom-web: thin routes — parse, call, respond."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio.to_thread
import orjson
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from dicomvault.api import negotiation
from dicomvault.api.auditing import note_owners
from dicomvault.api.deps import ScopeDep, ServicesDep
from dicomvault.api.dicomweb_routes import (
    SOPUID,
    RouteTable,
    SeriesUID,
    StudyUID,
    check_uids,
    checked_uid,
)
from dicomvault.api.media import parse_accept
from dicomvault.api.multipart import closing, multipart_stream, new_boundary, part_header
from dicomvault.api.stow import store_request
from dicomvault.bootstrap import Services
from dicomvault.dicom.attributes import Level
from dicomvault.errors import Forbidden, NotAcceptable
from dicomvault.index.repository import StoredInstance, StudyOwner
from dicomvault.index.scope import Scope
from dicomvault.query.qido import parse_qido_request
from dicomvault.query.service import run_query
from dicomvault.retrieve.service import Frame, parse_frame_list
from dicomvault.retrieve.syntaxes import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    frame_media_type,
    frame_transfer_syntax,
    is_native,
)
from dicomvault.retrieve.transcode import to_explicit_little_endian
from dicomvault.retrieve.ziparchive import zip_instances

DICOM_JSON = "application/dicom+json"
_ROUTES = RouteTable()
_route = _ROUTES.route
build_router = _ROUTES.router


def base_url(services: Services, request: Request) -> str:
    """The configured public base of DICOMweb — never the Host header.

    Under ``/tenants/{tenant}/dicom-web`` the prefix is kept, so BulkDataURIs and RetrieveURLs
    lead back into exactly that tenant.
    """
    tenant = request.path_params.get("tenant")
    root_path = str(request.scope.get("root_path", ""))
    return services.settings.dicomweb_base(root_path, str(tenant) if tenant else None)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=DICOM_JSON)


# -- STOW-RS ---------------------------------------------------------------------------------------
_STOW_DOC = (
    'Store instances (PS3.18 10.5). Body: multipart/related; type="application/dicom" with any '
    "number of parts, or one application/dicom. 200 all stored, 202 some failed, 409 none stored "
    "(or study mismatch), 400 unparseable, 413 too large, 415 wrong media type."
)


async def _stow(request: Request, services: Services, scope: Scope, study: str | None) -> Response:
    if not scope.can_write():
        raise Forbidden("no tenant to store into: the principal has no default tenant")
    report = await store_request(request, services.ingestor, scope, study)
    request.state.audit_studies = sorted({r.study_instance_uid for r in report.stored})
    if report.stored:
        # Whose data was stored, from the ingest results (no query of its own): the patient
        # of each instance and of the study it joined, which every later read names. With
        # nothing stored, the audit looks up the study in the path itself.
        tenant = scope.write_tenant
        note_owners(
            request,
            (
                StudyOwner(tenant, r.study_instance_uid, patient)
                for r in report.stored
                for patient in (r.study_patient_id, r.patient_id)
            ),
        )
    return _json(report.to_json(base_url(services, request), study), report.status_code)


@_route("POST", "/studies", summary="STOW-RS", description=_STOW_DOC)
async def stow(request: Request, services: ServicesDep, scope: ScopeDep) -> Response:
    return await _stow(request, services, scope, None)


@_route("POST", "/studies/{study}", summary="STOW-RS into a study", description=_STOW_DOC)
async def stow_study(
    study: StudyUID, request: Request, services: ServicesDep, scope: ScopeDep
) -> Response:
    return await _stow(request, services, scope, checked_uid(study, "StudyInstanceUID"))


# -- QIDO-RS ---------------------------------------------------------------------------------------
async def _qido(
    request: Request,
    services: ServicesDep,
    scope: Scope,
    level: Level,
    study: str | None = None,
    series: str | None = None,
) -> Response:
    if not negotiation.accepts_json(request.headers.get("accept")):
        raise NotAcceptable("QIDO-RS answers application/dicom+json")
    settings = services.settings
    query = parse_qido_request(
        level,
        request.query_params.multi_items(),
        study_uid=study,
        series_uid=series,
        default_limit=settings.qido_default_limit,
        max_limit=settings.qido_max_limit,
    )
    results = await run_query(services.db, scope, query, base_url(services, request))
    return _json(results)


@_route("GET", "/studies", summary="QIDO-RS: search for studies")
async def search_studies(request: Request, services: ServicesDep, scope: ScopeDep) -> Response:
    return await _qido(request, services, scope, Level.STUDY)


@_route("GET", "/series", summary="QIDO-RS: search for series")
async def search_series(request: Request, services: ServicesDep, scope: ScopeDep) -> Response:
    return await _qido(request, services, scope, Level.SERIES)


@_route("GET", "/instances", summary="QIDO-RS: search for instances")
async def search_instances(request: Request, services: ServicesDep, scope: ScopeDep) -> Response:
    return await _qido(request, services, scope, Level.INSTANCE)


@_route("GET", "/studies/{study}/series", summary="QIDO-RS: search for series of a study")
async def search_study_series(
    study: StudyUID, request: Request, services: ServicesDep, scope: ScopeDep
) -> Response:
    return await _qido(
        request, services, scope, Level.SERIES, checked_uid(study, "StudyInstanceUID")
    )


@_route("GET", "/studies/{study}/instances", summary="QIDO-RS: search for instances of a study")
async def search_study_instances(
    study: StudyUID, request: Request, services: ServicesDep, scope: ScopeDep
) -> Response:
    return await _qido(
        request, services, scope, Level.INSTANCE, checked_uid(study, "StudyInstanceUID")
    )


@_route(
    "GET",
    "/studies/{study}/series/{series}/instances",
    summary="QIDO-RS: search for instances of a series",
)
async def search_series_instances(
    study: StudyUID, series: SeriesUID, request: Request, services: ServicesDep, scope: ScopeDep
) -> Response:
    return await _qido(
        request,
        services,
        scope,
        Level.INSTANCE,
        checked_uid(study, "StudyInstanceUID"),
        checked_uid(series, "SeriesInstanceUID"),
    )


# -- WADO-RS: instances ----------------------------------------------------------------------------
async def _retrieve(
    request: Request,
    services: Services,
    scope: Scope,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> Response:
    # PS3.18 8.3.3.1: an ``accept`` query parameter (a plain download link) wins over the header.
    accept = request.query_params.get("accept") or request.headers.get("accept")
    if _wants_zip(accept):
        check_uids(study, series, sop)
        found = await services.retriever.instances(scope, study, series, sop)
        note_owners(request, (i.owner for i in found))
        return _zip_response(found, services, sop or series or study)
    choice = negotiation.choose_instance_format(accept, single_allowed=sop is not None)
    check_uids(study, series, sop)
    instances = await services.retriever.instances(scope, study, series, sop)
    note_owners(request, (i.owner for i in instances))
    if choice.transfer_syntax not in (negotiation.AS_STORED, EXPLICIT_VR_LITTLE_ENDIAN) and any(
        i.transfer_syntax_uid != choice.transfer_syntax for i in instances
    ):
        raise NotAcceptable("the requested transfer syntax cannot be produced")
    transcode = choice.transfer_syntax == EXPLICIT_VR_LITTLE_ENDIAN
    boundary = new_boundary()
    part_type = "application/dicom"
    if choice.transfer_syntax != negotiation.AS_STORED:
        part_type += f"; transfer-syntax={choice.transfer_syntax}"
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    if len(instances) == 1 and not transcode and instances[0].size <= _WHOLE_RESPONSE_BYTES:
        # A small instance is read whole and answered with its Content-Length: no chunked
        # coding, no streaming machinery per request, and a read error still gets its status.
        data = await _read_whole(services, instances[0])
        if not choice.multipart:
            return Response(data, media_type="application/dicom")
        framed = b"".join((part_header(boundary, part_type), data, b"\r\n", closing(boundary)))
        return Response(framed, headers={"Content-Type": content_type})
    if not choice.multipart:
        instance = instances[0]
        return StreamingResponse(
            _instance_body(services, instance, transcode), media_type="application/dicom"
        )

    async def parts() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        for instance in instances:
            yield part_type, _instance_body(services, instance, transcode)

    headers = {"Content-Type": content_type}
    return StreamingResponse(multipart_stream(boundary, parts()), headers=headers)


# Instances up to this size are answered from memory in one piece (one read of the blob store);
# larger ones, and every study or series, are streamed chunk by chunk.
_WHOLE_RESPONSE_BYTES = 1024 * 1024


async def _read_whole(services: Services, instance: StoredInstance) -> bytes:
    return b"".join([chunk async for chunk in services.retriever.blob_chunks(instance)])


def _wants_zip(accept: str | None) -> bool:
    """``application/zip`` ranked before any media type the multipart negotiation serves."""
    for r in parse_accept(accept):
        if r.type == "application/zip":
            return True
        if r.type in ("*/*", "multipart/*", "multipart/related", "application/dicom"):
            return False
    return False


def _zip_response(instances: Sequence[StoredInstance], services: Services, name: str) -> Response:
    """The instances' stored files as one streamed ZIP archive (PS3.18 8.7.3), named by UID."""
    headers = {"Content-Disposition": f'attachment; filename="{name}.zip"', "Vary": "Accept"}
    body = zip_instances(instances, services.retriever.blob_chunks)
    return StreamingResponse(body, media_type="application/zip", headers=headers)


async def _instance_body(
    services: Services, instance: StoredInstance, transcode: bool
) -> AsyncIterator[bytes]:
    if transcode and instance.transfer_syntax_uid != EXPLICIT_VR_LITTLE_ENDIAN:
        async with services.retriever.local_copy(instance) as path:
            yield await anyio.to_thread.run_sync(to_explicit_little_endian, path)
        return
    async for chunk in services.retriever.blob_chunks(instance):
        yield chunk


@_route("GET", "/studies/{study}", summary="WADO-RS: retrieve a study")
async def retrieve_study(
    study: StudyUID, request: Request, services: ServicesDep, scope: ScopeDep
) -> Response:
    return await _retrieve(request, services, scope, study)


@_route("GET", "/studies/{study}/series/{series}", summary="WADO-RS: retrieve a series")
async def retrieve_series(
    study: StudyUID, series: SeriesUID, request: Request, services: ServicesDep, scope: ScopeDep
) -> Response:
    return await _retrieve(request, services, scope, study, series)


@_route(
    "GET",
    "/studies/{study}/series/{series}/instances/{sop}",
    summary="WADO-RS: retrieve an instance",
)
async def retrieve_instance(
    study: StudyUID,
    series: SeriesUID,
    sop: SOPUID,
    request: Request,
    services: ServicesDep,
    scope: ScopeDep,
) -> Response:
    return await _retrieve(request, services, scope, study, series, sop)


# -- WADO-RS: metadata -----------------------------------------------------------------------------
async def _metadata(
    request: Request,
    services: Services,
    scope: Scope,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> Response:
    if not negotiation.accepts_json(request.headers.get("accept")):
        raise NotAcceptable("metadata is served as application/dicom+json")
    check_uids(study, series, sop)
    base = base_url(services, request)
    found = await services.retriever.metadata(scope, base, study, series, sop)
    note_owners(request, found.owners)
    return Response(found.body, media_type=DICOM_JSON)


@_route("GET", "/studies/{study}/metadata", summary="WADO-RS: study metadata")
async def study_metadata(
    study: StudyUID, request: Request, services: ServicesDep, scope: ScopeDep
) -> Response:
    return await _metadata(request, services, scope, study)


@_route("GET", "/studies/{study}/series/{series}/metadata", summary="WADO-RS: series metadata")
async def series_metadata(
    study: StudyUID, series: SeriesUID, request: Request, services: ServicesDep, scope: ScopeDep
) -> Response:
    return await _metadata(request, services, scope, study, series)


@_route(
    "GET",
    "/studies/{study}/series/{series}/instances/{sop}/metadata",
    summary="WADO-RS: instance metadata",
)
async def instance_metadata(
    study: StudyUID,
    series: SeriesUID,
    sop: SOPUID,
    request: Request,
    services: ServicesDep,
    scope: ScopeDep,
) -> Response:
    return await _metadata(request, services, scope, study, series, sop)


# -- WADO-RS: frames and bulk data -----------------------------------------------------------------
@_route(
    "GET",
    "/studies/{study}/series/{series}/instances/{sop}/frames/{frames}",
    summary="WADO-RS: frames (PS3.18 10.4.1.1.3)",
)
async def retrieve_frames(
    study: StudyUID,
    series: SeriesUID,
    sop: SOPUID,
    frames: str,
    request: Request,
    services: ServicesDep,
    scope: ScopeDep,
) -> Response:
    choice = negotiation.choose_frame_format(request.headers.get("accept"))
    numbers = parse_frame_list(frames)
    check_uids(study, series, sop)
    instance = (await services.retriever.instances(scope, study, series, sop))[0]
    note_owners(request, [instance.owner])
    stored_ts = instance.transfer_syntax_uid
    stored_type = frame_media_type(stored_ts)
    wants_native = choice.part_type == "application/octet-stream" and (
        choice.transfer_syntax == EXPLICIT_VR_LITTLE_ENDIAN
    )
    if wants_native and not is_native(stored_ts):
        data = await services.retriever.decoded_frames(instance, numbers)
        part_type = f"application/octet-stream; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}"
    elif choice.transfer_syntax in (negotiation.AS_STORED, stored_ts) or wants_native:
        if choice.part_type not in ("*/*", "application/octet-stream", stored_type):
            raise NotAcceptable(f"frames of this instance are {stored_type}")
        data = await services.retriever.frames(instance, numbers)
        family = "application/octet-stream" if is_native(stored_ts) else stored_type
        if choice.part_type == "application/octet-stream":
            family = "application/octet-stream"
        part_type = f"{family}; transfer-syntax={frame_transfer_syntax(stored_ts)}"
    else:
        raise NotAcceptable("the requested transfer syntax cannot be produced")
    return _frames_response(data, part_type)


def _frames_response(frames: Sequence[Frame], part_type: str) -> Response:
    boundary = new_boundary()
    chunks: list[bytes] = []
    for i, frame in enumerate(frames):
        prefix = b"" if i == 0 else b"\r\n"
        chunks.append(
            prefix
            + f"--{boundary}\r\nContent-Type: {part_type}\r\n"
            f"Content-Location: frames/{frame.number}\r\n\r\n".encode()
        )
        chunks.append(frame.data)
    chunks.append(f"\r\n--{boundary}--\r\n".encode())
    outer = part_type.split(";")[0]
    media = f'multipart/related; type="{outer}"; boundary={boundary}'
    return Response(b"".join(chunks), headers={"Content-Type": media})


@_route(
    "GET",
    "/studies/{study}/series/{series}/instances/{sop}/bulkdata/{path:path}",
    summary="WADO-RS: bulk data (BulkDataURI targets)",
)
async def retrieve_bulkdata(
    study: StudyUID,
    series: SeriesUID,
    sop: SOPUID,
    path: str,
    request: Request,
    services: ServicesDep,
    scope: ScopeDep,
) -> Response:
    check_uids(study, series, sop)
    instance = (await services.retriever.instances(scope, study, series, sop))[0]
    note_owners(request, [instance.owner])
    if path.upper().startswith("7FE00010"):
        count = instance.number_of_frames or 1
        data = await services.retriever.frames(instance, list(range(1, count + 1)))
        ts = instance.transfer_syntax_uid
        family = "application/octet-stream" if is_native(ts) else frame_media_type(ts)
        return _frames_response(data, f"{family}; transfer-syntax={frame_transfer_syntax(ts)}")
    value = await services.retriever.bulk_value(instance, path)
    return _frames_response([Frame(1, value)], "application/octet-stream")


# -- delete ----------------------------------------------------------------------------------------
async def _delete(
    services: Services, scope: Scope, study: str, series: str | None = None, sop: str | None = None
) -> Response:
    check_uids(study, series, sop)
    await services.deleter.delete(scope, study, series, sop)
    return Response(status_code=204)


@_route("DELETE", "/studies/{study}", summary="Delete a study", status_code=204)
async def delete_study(study: StudyUID, services: ServicesDep, scope: ScopeDep) -> Response:
    return await _delete(services, scope, study)


@_route("DELETE", "/studies/{study}/series/{series}", summary="Delete a series", status_code=204)
async def delete_series(
    study: StudyUID, series: SeriesUID, services: ServicesDep, scope: ScopeDep
) -> Response:
    return await _delete(services, scope, study, series)


@_route(
    "DELETE",
    "/studies/{study}/series/{series}/instances/{sop}",
    summary="Delete an instance",
    status_code=204,
)
async def delete_instance(
    study: StudyUID, series: SeriesUID, sop: SOPUID, services: ServicesDep, scope: ScopeDep
) -> Response:
    return await _delete(services, scope, study, series, sop)

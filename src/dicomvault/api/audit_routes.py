"""The audit trail for auditors: search it, and export it as FHIR AuditEvent resources."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from dicomvault.api.deps import ServicesDep
from dicomvault.audit.fhir import to_fhir_bundle
from dicomvault.audit.records import AuditRecord
from dicomvault.bootstrap import Services
from dicomvault.errors import BadRequest

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


async def _search(
    services: Services,
    patient_id: str | None,
    principal: str | None,
    since: datetime | None,
    until: datetime | None,
    event: str | None,
    tenant: str | None,
    correlation_id: str | None,
    limit: int,
    offset: int,
) -> list[AuditRecord]:
    try:
        return await services.audit.query(
            patient_id=patient_id,
            principal=principal,
            since=since,
            until=until,
            action=event,
            tenant=tenant,
            correlation_id=correlation_id,
            limit=limit,
            offset=offset,
        )
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


def _record_json(record: AuditRecord) -> dict[str, Any]:
    data = asdict(record)
    data["time"] = record.time.isoformat()
    return data


_FILTERS = (
    "Filters: `patient_id`, `principal` (subject or name), `since`/`until` (ISO 8601), "
    "`event` (DCM event ID, e.g. 110112 Query), `tenant`, `correlation_id` (the X-Request-ID "
    "of the request recorded); newest first."
)


@router.get("", summary="Search the audit trail", description=_FILTERS)
async def search_audit(
    services: ServicesDep,
    patient_id: str | None = None,
    principal: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    event: str | None = None,
    tenant: str | None = None,
    correlation_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JSONResponse:
    records = await _search(
        services, patient_id, principal, since, until, event, tenant, correlation_id, limit, offset
    )
    return JSONResponse([_record_json(r) for r in records])


@router.get(
    "/fhir",
    summary="Export the audit trail as a FHIR R4 Bundle of AuditEvent resources",
    description=_FILTERS,
)
async def export_fhir(
    request: Request,
    services: ServicesDep,
    patient_id: str | None = None,
    principal: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    event: str | None = None,
    tenant: str | None = None,
    correlation_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JSONResponse:
    records = await _search(
        services, patient_id, principal, since, until, event, tenant, correlation_id, limit, offset
    )
    return JSONResponse(to_fhir_bundle(records), media_type="application/fhir+json")

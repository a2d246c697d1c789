"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from dicomvault.api.deps import get_services

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: the index and the blob store answer")
async def readyz(request: Request) -> JSONResponse:
    services = get_services(request)
    checks: dict[str, str] = {}
    try:
        async with services.db.read() as session:
            await session.execute(text("SELECT 1"))
        checks["index"] = "ok"
    except Exception:
        checks["index"] = "unavailable"
    try:
        await services.store.exists("readyz/probe")
        checks["storage"] = "ok"
    except Exception:
        checks["storage"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )

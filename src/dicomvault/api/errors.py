"""The edge where the error hierarchy becomes HTTP (STYLE.md, one error hierarchy)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dicomvault.errors import DicomVaultError

log = logging.getLogger("dicomvault.api")


async def _dicomvault_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DicomVaultError)
    if exc.http_status >= 500:
        log.error("request failed: %s", type(exc).__name__)
    return JSONResponse({"detail": exc.message}, status_code=exc.http_status)


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    # The exception's text may hold data values; log its type and traceback location only.
    log.exception("unhandled %s", type(exc).__name__, exc_info=False)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DicomVaultError, _dicomvault_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )

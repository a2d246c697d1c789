"""The edge where the error hierarchy becomes HTTP (STYLE.md, one error hierarchy)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dicomvault.errors import DicomVaultError, TooManyRequests, Unauthenticated
from dicomvault.storage.base import BlobNotFound

log = logging.getLogger("dicomvault.api")


async def _dicomvault_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DicomVaultError)
    if exc.http_status >= 500:
        log.error("request failed: %s", type(exc).__name__)
    elif isinstance(exc, BlobNotFound):
        # Indexed but not in the store: a DELETE that raced this read, or a lost blob.
        log.warning("%s", exc)
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="dicomvault"'
    if isinstance(exc, TooManyRequests):
        headers.update(exc.headers)
    request.state.error_detail = type(exc).__name__
    return JSONResponse({"detail": exc.message}, status_code=exc.http_status, headers=headers)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Field locations and messages only: the rejected input may hold patient data.
    errors = [{"loc": e.get("loc"), "msg": e.get("msg")} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DicomVaultError, _dicomvault_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

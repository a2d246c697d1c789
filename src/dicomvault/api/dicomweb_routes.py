"""What the DICOMweb routers share: a route table mounted under several prefixes, the UID path
parameters, and their check.

``api/dicomweb.py`` and ``api/rendered.py`` are each mounted under ``/dicom-web`` and under
``/tenants/{tenant}/dicom-web``. The prefix is part of each route's own path (not added at
include time), so the permission table and the audit see the full template, e.g.
``/tenants/{tenant}/dicom-web/studies/{study}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path

from dicomvault.dicom.uids import is_valid_uid
from dicomvault.errors import BadRequest

F = TypeVar("F", bound=Callable[..., Any])

StudyUID = Annotated[str, Path(description="StudyInstanceUID")]
SeriesUID = Annotated[str, Path(description="SeriesInstanceUID")]
SOPUID = Annotated[str, Path(description="SOPInstanceUID")]
FrameList = Annotated[str, Path(description="Comma-separated frame numbers, from 1")]


class RouteTable:
    """Routes declared once with ``route`` and mounted under a prefix by ``router``."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, str, Callable[..., Any], dict[str, Any]]] = []

    def route(self, method: str, path: str, **options: Any) -> Callable[[F], F]:
        def register(endpoint: F) -> F:
            self._routes.append((method, path, endpoint, options))
            return endpoint

        return register

    def router(self, prefix: str, tags: list[str]) -> APIRouter:
        router = APIRouter(prefix=prefix, tags=list(tags))
        for method, path, endpoint, options in self._routes:
            router.add_api_route(path, endpoint, methods=[method], **options)
        return router


def checked_uid(value: str, name: str) -> str:
    """``value`` when it is a well-formed UID; 400 naming the attribute otherwise."""
    if not is_valid_uid(value):
        raise BadRequest(f"{name} is not a valid UID")
    return value


def check_uids(study: str, series: str | None = None, sop: str | None = None) -> None:
    """The UIDs of a study/series/instance path, each as ``checked_uid`` wants it."""
    checked_uid(study, "StudyInstanceUID")
    if series is not None:
        checked_uid(series, "SeriesInstanceUID")
    if sop is not None:
        checked_uid(sop, "SOPInstanceUID")

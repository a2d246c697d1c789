"""The browser pages: login, worklist, study, upload. Thin: parse → call → render.

Every page reaches patient data only through ``query.service.run_query`` with the caller's
tenant scope — the same path as QIDO-RS — and is declared in api/permissions.py with its action
and audit event, so the audit middleware records each page view like the DICOMweb request it
stands for (Query, with the study UID for a study page).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from dicomvault.auth.principal import Action
from dicomvault.dicom.attributes import Level
from dicomvault.dicom.uids import is_valid_uid
from dicomvault.errors import BadRequest, NotFound
from dicomvault.query.qido import parse_qido_request
from dicomvault.query.service import run_query
from dicomvault.web.context import dicomweb_base, principal_of, scope_of, services_of
from dicomvault.web.errors import PageRoute
from dicomvault.web.navigation import safe_next
from dicomvault.web.rendering import render
from dicomvault.web.worklist import (
    PAGE_SIZES,
    SORT_KEYS,
    StudyRow,
    WorklistForm,
    display_date,
    display_time,
    first_value,
    parse_form,
    person_name,
    study_row,
    text_value,
)

# Pages answer a missing or expired session with a redirect to /login (web/errors.py).
router = APIRouter(include_in_schema=False, route_class=PageRoute)
MODALITIES = ("CT", "MR", "CR", "DX", "US", "NM", "PT", "MG", "XA", "RF", "OT", "SC", "SR")
STUDY_FIELDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "ReferringPhysicianName",
    "ModalitiesInStudy",
)
SERIES_FIELDS = (
    "SeriesNumber",
    "SeriesDescription",
    "Modality",
    "BodyPartExamined",
    "SeriesDate",
    "SeriesTime",
)


async def live_position(request: Request) -> str:
    """The live-event position of the caller's tenants, for ``?since=`` on the page's first
    connection. Read before the page's query: an event in between makes the stream say
    "missed" (one extra query) rather than go unnoticed."""
    return await services_of(request).events.position(scope_of(request).tenants)


def _page_context(request: Request, active: str, position: str) -> dict[str, Any]:
    principal = principal_of(request)
    return {
        "user": principal,
        "active": active,
        "may_upload": principal.may(Action.STORE),
        "live_position": position,
    }


@router.get("/login", response_class=HTMLResponse)
async def login_page(
    request: Request, next: Annotated[str | None, Query(max_length=4096)] = None
) -> HTMLResponse:
    return render(request, "login.html", user=None, active="login", next=safe_next(next))


# -- worklist ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorklistResult:
    form: WorklistForm
    rows: list[StudyRow]
    has_more: bool = False
    problems: tuple[str, ...] = ()

    @property
    def first(self) -> int:
        return self.form.offset + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.form.offset + len(self.rows)


async def search_worklist(request: Request, form: WorklistForm) -> WorklistResult:
    """One scoped study query, sorted and paged in SQL whatever the column (one row more than
    the page, to know whether there is a next one)."""
    services = services_of(request)
    limit = form.limit + 1
    params = [*form.qido_parameters(), ("limit", str(limit)), ("offset", str(form.offset))]
    try:
        query = parse_qido_request(Level.STUDY, params, default_limit=limit, max_limit=limit)
    except BadRequest as error:
        return WorklistResult(form, [], problems=(error.message,))
    documents = await run_query(
        services.db, scope_of(request), query, dicomweb_base(request), form.order
    )
    rows = [study_row(d) for d in documents]
    return WorklistResult(form, rows[: form.limit], has_more=len(rows) > form.limit)


async def _worklist(request: Request) -> WorklistResult:
    form, problems = parse_form(request.query_params)
    if problems:
        return WorklistResult(form, [], problems=tuple(problems))
    return await search_worklist(request, form)


def _worklist_context(result: WorklistResult) -> dict[str, Any]:
    return {
        "result": result,
        "form": result.form,
        "sort_keys": SORT_KEYS,
        "page_sizes": PAGE_SIZES,
        "modalities": MODALITIES,
    }


@router.get("/", response_class=HTMLResponse)
async def worklist_page(request: Request) -> HTMLResponse:
    position = await live_position(request)
    result = await _worklist(request)
    return render(
        request,
        "worklist.html",
        status_code=400 if result.problems else 200,
        **_page_context(request, "worklist", position),
        **_worklist_context(result),
    )


@router.get("/worklist/rows", response_class=HTMLResponse)
async def worklist_rows(request: Request) -> HTMLResponse:
    """The results region alone, for live refreshes (the same query as the page)."""
    result = await _worklist(request)
    compact = request.query_params.get("view") == "compact"
    return render(
        request,
        "_worklist_results.html",
        status_code=400 if result.problems else 200,
        compact=compact,
        **_worklist_context(result),
    )


# -- study ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesRow:
    series_uid: str
    number: str
    modality: str
    description: str
    body_part: str
    date: str
    time: str
    instance_count: int


def _series_row(document: dict[str, Any]) -> SeriesRow:
    count = first_value(document, "00201209")
    return SeriesRow(
        series_uid=text_value(document, "0020000E"),
        number=text_value(document, "00200011"),
        modality=text_value(document, "00080060"),
        description=text_value(document, "0008103E"),
        body_part=text_value(document, "00180015"),
        date=display_date(text_value(document, "00080021")),
        time=display_time(text_value(document, "00080031")),
        instance_count=int(count) if isinstance(count, int | str) and str(count).isdigit() else 0,
    )


@router.get("/studies/{study}", response_class=HTMLResponse)
async def study_page(
    request: Request, study: Annotated[str, Path(description="StudyInstanceUID")]
) -> HTMLResponse:
    if not is_valid_uid(study):
        raise NotFound("no such study")
    services = services_of(request)
    scope = scope_of(request)
    base = dicomweb_base(request)
    position = await live_position(request)
    study_query = parse_qido_request(
        Level.STUDY,
        [("StudyInstanceUID", study), ("includefield", ",".join(STUDY_FIELDS))],
        default_limit=1,
    )
    found = await run_query(services.db, scope, study_query, base)
    if not found:
        raise NotFound("no such study")  # unknown and out of scope look the same
    document = found[0]
    limit = services.settings.qido_max_limit
    series_query = parse_qido_request(
        Level.SERIES,
        [("includefield", ",".join(SERIES_FIELDS))],
        study_uid=study,
        default_limit=limit,
        max_limit=limit,
    )
    series = [_series_row(d) for d in await run_query(services.db, scope, series_query, base)]
    return render(
        request,
        "study.html",
        **_page_context(request, "study", position),
        study=study_row(document),
        sex=text_value(document, "00100040"),
        study_id=text_value(document, "00200010"),
        referring=person_name(document, "00080090"),
        series=series,
    )


# -- upload --------------------------------------------------------------------------------------
@router.get("/upload", response_class=HTMLResponse)
async def upload_page(request: Request) -> HTMLResponse:
    position = await live_position(request)
    return render(request, "upload.html", **_page_context(request, "upload", position))

"""The worklist: a search form turned into a QIDO-RS study query, and its answer into rows.

The form's fields are named after the DICOM keywords they match (``PatientID``, ``PatientName``,
``ModalitiesInStudy``, ``AccessionNumber``, ``StudyDescription``, a ``StudyDate`` range), so that
the page's URL reads like the QIDO query it runs and the audit trail records a searched Patient
ID just as it does for /dicom-web. The query goes through the same service as QIDO-RS
(``query.service.run_query``) with the caller's tenant scope: the same matching rules (PS3.4
C.2.2.2), the same tenant isolation, never SQL here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from dicomvault.index.search import StudyOrder, StudySortKey

PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")
_MAX_TEXT = 64  # LO/PN values are at most 64 characters (PS3.5 6.2)

# Columns the list can be sorted by: key (a StudySortKey, as the URL carries it) -> label.
SORT_KEYS: Mapping[str, str] = {
    StudySortKey.RECEIVED: "Received",
    StudySortKey.DATE: "Study date",
    StudySortKey.PATIENT_NAME: "Patient name",
    StudySortKey.PATIENT_ID: "Patient ID",
    StudySortKey.ACCESSION: "Accession",
    StudySortKey.MODALITIES: "Modalities",
    StudySortKey.DESCRIPTION: "Description",
}
DEFAULT_SORT = StudySortKey.RECEIVED.value  # newest stored first: the index's own order

# What each row shows (PS3.18 10.6.1.2 includefield), beyond the study level's defaults.
INCLUDE_FIELDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "ModalitiesInStudy",
)


@dataclass(frozen=True)
class WorklistForm:
    patient_id: str = ""
    patient_name: str = ""
    modality: str = ""
    date_from: str = ""  # ISO YYYY-MM-DD, as <input type=date> sends it
    date_to: str = ""
    accession: str = ""
    description: str = ""
    sort: str = DEFAULT_SORT
    descending: bool = True
    limit: int = DEFAULT_PAGE_SIZE
    offset: int = 0

    @property
    def order(self) -> StudyOrder:
        """The order the index sorts in (every column sorts in SQL, so paging covers all)."""
        return StudyOrder(StudySortKey(self.sort), self.descending)

    @property
    def has_filters(self) -> bool:
        return any(
            (
                self.patient_id,
                self.patient_name,
                self.modality,
                self.date_from,
                self.date_to,
                self.accession,
                self.description,
            )
        )

    def qido_parameters(self) -> list[tuple[str, str]]:
        """The matching keys of PS3.18 10.6.1.2 (paging is added by the caller)."""
        params: list[tuple[str, str]] = [("includefield", ",".join(INCLUDE_FIELDS))]
        if self.patient_id:
            params.append(("PatientID", self.patient_id))
        if self.patient_name:
            # fuzzymatching: words match the starts of name components, ignoring case.
            params += [("PatientName", self.patient_name), ("fuzzymatching", "true")]
        if self.modality:
            params.append(("ModalitiesInStudy", self.modality))
        if self.date_from or self.date_to:
            params.append(("StudyDate", f"{_compact(self.date_from)}-{_compact(self.date_to)}"))
        if self.accession:
            params.append(("AccessionNumber", self.accession))
        if self.description:
            params.append(("StudyDescription", _contains(self.description)))
        return params

    def query_string(self, **changes: Any) -> str:
        """This form as a URL query, with ``changes`` applied (for sort and paging links)."""
        form = replace(self, **changes)
        pairs = [
            ("PatientID", form.patient_id),
            ("PatientName", form.patient_name),
            ("ModalitiesInStudy", form.modality),
            ("StudyDateFrom", form.date_from),
            ("StudyDateTo", form.date_to),
            ("AccessionNumber", form.accession),
            ("StudyDescription", form.description),
        ]
        kept = [(k, v) for k, v in pairs if v]
        if form.sort != DEFAULT_SORT or not form.descending:
            kept += [("sort", form.sort), ("dir", "desc" if form.descending else "asc")]
        if form.limit != DEFAULT_PAGE_SIZE:
            kept.append(("limit", str(form.limit)))
        if form.offset:
            kept.append(("offset", str(form.offset)))
        return urlencode(kept)

    def sort_link(self, key: str) -> str:
        """Sort by ``key``; choosing the current key again flips the direction."""
        if key == self.sort:
            return self.query_string(descending=not self.descending, offset=0)
        return self.query_string(sort=key, descending=key in ("received", "date"), offset=0)

    def aria_sort(self, key: str) -> str:
        if key != self.sort:
            return "none"
        return "descending" if self.descending else "ascending"


def parse_form(params: Mapping[str, str]) -> tuple[WorklistForm, list[str]]:
    """The form from the query string, and the problems found (shown next to the form)."""
    problems: list[str] = []

    def text(name: str) -> str:
        value = params.get(name, "").strip()
        if len(value) > _MAX_TEXT:
            problems.append(f"{name} is longer than {_MAX_TEXT} characters")
            return ""
        return value

    date_from = _date(params.get("StudyDateFrom", ""), "From date", problems)
    date_to = _date(params.get("StudyDateTo", ""), "To date", problems)
    if date_from and date_to and date_from > date_to:
        problems.append("the From date is after the To date")
    sort = params.get("sort", DEFAULT_SORT)
    if sort not in SORT_KEYS:
        problems.append("unknown sort column")
        sort = DEFAULT_SORT
    direction = params.get("dir", "desc")
    if direction not in ("asc", "desc"):
        problems.append("sort direction must be asc or desc")
        direction = "desc"
    limit = _integer(params.get("limit"), DEFAULT_PAGE_SIZE, problems, "limit")
    if limit not in PAGE_SIZES:
        problems.append(f"page size must be one of {', '.join(map(str, PAGE_SIZES))}")
        limit = DEFAULT_PAGE_SIZE
    offset = _integer(params.get("offset"), 0, problems, "offset")
    form = WorklistForm(
        patient_id=text("PatientID"),
        patient_name=text("PatientName"),
        modality=text("ModalitiesInStudy").upper(),
        date_from=date_from,
        date_to=date_to,
        accession=text("AccessionNumber"),
        description=text("StudyDescription"),
        sort=sort,
        descending=direction == "desc",
        limit=limit,
        offset=offset,
    )
    return form, problems


def _date(raw: str, label: str, problems: list[str]) -> str:
    raw = raw.strip()
    if not raw:
        return ""
    match = _DATE.fullmatch(raw)
    if match is None:
        problems.append(f"{label} must be a date (YYYY-MM-DD)")
        return ""
    return "-".join(match.groups())


def _integer(raw: str | None, default: int, problems: list[str], name: str) -> int:
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 2**31 - 1:
        problems.append(f"{name} must be a non-negative integer")
        return default
    return int(raw)


def _compact(iso: str) -> str:
    return iso.replace("-", "")


def _contains(value: str) -> str:
    """A description matches anywhere unless the user wrote wildcards (PS3.4 C.2.2.2.4)."""
    return value if ("*" in value or "?" in value) else f"*{value}*"


# -- rows ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyRow:
    study_uid: str
    patient_name: str
    patient_id: str
    birth_date: str
    study_date: str
    study_time: str
    modalities: str
    description: str
    accession: str
    series_count: int
    instance_count: int


def first_value(document: Mapping[str, Any], tag: str) -> Any:
    """The first value of a DICOM JSON element (PS3.18 F.2), or ``None``."""
    element = document.get(tag)
    if not isinstance(element, dict):
        return None
    values = element.get("Value")
    if not isinstance(values, list) or not values:
        return None
    return values[0]


def text_value(document: Mapping[str, Any], tag: str) -> str:
    value = first_value(document, tag)
    return "" if value is None else str(value)


def person_name(document: Mapping[str, Any], tag: str) -> str:
    """A PN value for people to read: ``FAMILY^GIVEN^MIDDLE`` → ``FAMILY, GIVEN MIDDLE``.

    The alphabetic group only (PS3.18 F.2.2); the text is escaped by the template, never here.
    """
    value = first_value(document, tag)
    if isinstance(value, dict):
        value = value.get("Alphabetic", "")
    if not isinstance(value, str):
        return ""
    family, _, rest = value.partition("^")
    given = " ".join(p for p in rest.split("^") if p)
    return f"{family}, {given}" if family and given else family or given


def display_date(da: str) -> str:
    """DA ``YYYYMMDD`` → ``YYYY-MM-DD`` (ISO 8601); anything else as it is."""
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) == 8 and da.isdigit() else da


def display_time(tm: str) -> str:
    """TM ``HHMMSS.frac`` → ``HH:MM``."""
    digits = tm.split(".")[0]
    return f"{digits[:2]}:{digits[2:4]}" if len(digits) >= 4 and digits.isdigit() else digits


def _all_values(document: Mapping[str, Any], tag: str) -> list[str]:
    element = document.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return [str(v) for v in values] if isinstance(values, list) else []


def _int_value(document: Mapping[str, Any], tag: str) -> int:
    try:
        return int(first_value(document, tag) or 0)
    except (TypeError, ValueError):
        return 0


def study_row(document: Mapping[str, Any]) -> StudyRow:
    return StudyRow(
        study_uid=text_value(document, "0020000D"),
        patient_name=person_name(document, "00100010"),
        patient_id=text_value(document, "00100020"),
        birth_date=display_date(text_value(document, "00100030")),
        study_date=display_date(text_value(document, "00080020")),
        study_time=display_time(text_value(document, "00080030")),
        modalities=", ".join(_all_values(document, "00080061")),
        description=text_value(document, "00081030"),
        accession=text_value(document, "00080050"),
        series_count=_int_value(document, "00201206"),
        instance_count=_int_value(document, "00201208"),
    )

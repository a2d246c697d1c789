"""QIDO-RS: query parameters -> matching conditions -> scoped index query -> DICOM JSON.

PS3.18 10.6 (Search Transaction): the six resources (all studies; all series or those of a
study; all instances, those of a study or of a series), matching keys by keyword or tag,
``includefield``, ``fuzzymatching``, ``limit`` and ``offset`` (8.3.4). The response is a list of
DICOM JSON objects (PS3.18 F.2) built from the ``attributes_json`` stored at each level plus the
values the index computes (counts, ModalitiesInStudy, RetrieveURL) — never from blobs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from dicomvault.dicom.attributes import (
    DEFAULT_RETURN_TAGS,
    Attribute,
    Level,
    UnknownAttribute,
    resolve_attribute,
    tag_of,
)
from dicomvault.dicom.matching import AttributeMatch, InvalidMatchValue, parse_condition
from dicomvault.errors import BadRequest
from dicomvault.index.scope import Scope
from dicomvault.index.search import (
    IndexQuery,
    SearchHit,
    StudyOrder,
    search_index,
    supported_matching_keys,
)

__all__ = ["QidoRequest", "parse_qido_request", "search"]

# Query parameters of PS3.18 8.3.4 that are not attributes (compared case-insensitively).
_INCLUDEFIELD = "includefield"
_LIMIT = "limit"
_OFFSET = "offset"
_FUZZY = "fuzzymatching"
_STANDARD_PARAMETERS = frozenset({_INCLUDEFIELD, _LIMIT, _OFFSET, _FUZZY})
# Larger limits are lowered to max_limit anyway; larger offsets cannot be a real page.
_MAX_PAGING = 2**31 - 1
_TAG = re.compile(r"[0-9A-Fa-f]{8}")

_STUDY_UID = tag_of("StudyInstanceUID")
_SERIES_UID = tag_of("SeriesInstanceUID")
_SOP_UID = tag_of("SOPInstanceUID")
_SOP_CLASS = tag_of("SOPClassUID")
_MODALITY = tag_of("Modality")
_MODALITIES_IN_STUDY = tag_of("ModalitiesInStudy")
_STUDY_SERIES = tag_of("NumberOfStudyRelatedSeries")
_STUDY_INSTANCES = tag_of("NumberOfStudyRelatedInstances")
_SERIES_INSTANCES = tag_of("NumberOfSeriesRelatedInstances")
_RETRIEVE_URL = tag_of("RetrieveURL")
_AVAILABILITY = tag_of("InstanceAvailability")


@dataclass(frozen=True)
class QidoRequest:
    """A parsed QIDO-RS search: what to match, what to return, which page."""

    level: Level
    study_uid: str | None
    series_uid: str | None
    conditions: tuple[AttributeMatch, ...]
    include_all: bool
    include_tags: frozenset[str]
    limit: int
    offset: int
    fuzzy: bool


def parse_qido_request(
    level: Level,
    params: Sequence[tuple[str, str]],
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    default_limit: int = 1000,
    max_limit: int = 10000,
) -> QidoRequest:
    """Parse already percent-decoded query pairs (PS3.18 8.3.4, 10.6.1.2).

    Every problem is collected, and one :class:`BadRequest` names each offending parameter.
    ``limit`` above ``max_limit`` is lowered to it (PS3.18 8.3.4.4 lets the server return fewer).
    """
    problems: list[str] = []
    standard: dict[str, list[str]] = {name: [] for name in _STANDARD_PARAMETERS}
    filters: dict[str, list[str]] = {}
    for key, value in params:
        if key.lower() in _STANDARD_PARAMETERS:
            standard[key.lower()].append(value)
        else:
            filters.setdefault(key, []).append(value)
    fuzzy = _parse_fuzzy(standard[_FUZZY], problems)
    limit = _parse_integer(_LIMIT, standard[_LIMIT], default_limit, 1, problems)
    offset = _parse_integer(_OFFSET, standard[_OFFSET], 0, 0, problems)
    include_all, include_tags = _parse_includefield(standard[_INCLUDEFIELD], problems)
    conditions, return_keys = _parse_filters(level, filters, fuzzy, problems)
    if problems:
        raise BadRequest("invalid QIDO-RS query: " + "; ".join(problems))
    return QidoRequest(
        level=level,
        study_uid=study_uid,
        series_uid=series_uid,
        conditions=conditions,
        include_all=include_all,
        include_tags=include_tags | return_keys,
        limit=min(limit, max_limit),
        offset=offset,
        fuzzy=fuzzy,
    )


def _parse_fuzzy(values: list[str], problems: list[str]) -> bool:
    if not values:
        return False
    if len(values) > 1 or values[0].lower() not in ("true", "false"):
        problems.append("fuzzymatching must be given once, as true or false")
        return False
    return values[0].lower() == "true"


def _parse_integer(
    name: str, values: list[str], default: int, minimum: int, problems: list[str]
) -> int:
    if not values:
        return default
    text = values[0].strip()
    if (
        len(values) > 1
        or not (text.isascii() and text.isdigit())
        or not minimum <= int(text) <= _MAX_PAGING
    ):
        problems.append(f"{name} must be given once, as an integer from {minimum} to {_MAX_PAGING}")
        return default
    return int(text)


def _parse_includefield(values: list[str], problems: list[str]) -> tuple[bool, frozenset[str]]:
    """``includefield`` may repeat and hold comma-separated keywords, tags or ``all``."""
    include_all = False
    tags: set[str] = set()
    unknown: list[str] = []
    for value in values:
        for name in (n.strip() for n in value.split(",")):
            if not name:  # "includefield=" or a trailing comma asks for nothing
                continue
            if name.lower() == "all":
                include_all = True
                continue
            try:
                tags.add(resolve_attribute(name).tag)
            except UnknownAttribute:
                # A private tag is not in the dictionary but may well be stored: return it.
                if _TAG.fullmatch(name):
                    tags.add(name.upper())
                else:
                    unknown.append(name)
    if unknown:
        problems.append(f"includefield names unknown attributes: {_names(unknown)}")
    return include_all, frozenset(tags)


def _parse_filters(
    level: Level, filters: dict[str, list[str]], fuzzy: bool, problems: list[str]
) -> tuple[tuple[AttributeMatch, ...], frozenset[str]]:
    """Matching keys, and the return keys: attributes given with an empty value.

    An empty value is universal matching (PS3.4 C.2.2.2.3), so any known attribute may be given
    that way just to have it returned, as in a C-FIND identifier; a value is only accepted for
    the matching keys the index supports at ``level``.
    """
    supported = supported_matching_keys(level)
    unknown: list[str] = []
    unsupported: list[str] = []
    matches: list[AttributeMatch] = []
    return_keys: set[str] = set()
    for key, values in filters.items():
        try:
            attribute = resolve_attribute(key)
        except UnknownAttribute:
            unknown.append(key)
            continue
        if attribute.keyword not in supported:
            if any(values):
                unsupported.append(key)
            else:
                return_keys.add(attribute.tag)
            continue
        match = _parse_match(key, attribute, values, fuzzy, problems)
        if match is not None:
            matches.append(match)
    if unknown:
        problems.append(f"unknown query parameters: {_names(unknown)}")
    if unsupported:
        problems.append(f"not matching keys at the {level} level: {_names(unsupported)}")
    return tuple(matches), frozenset(return_keys)


def _parse_match(
    key: str, attribute: Attribute, values: list[str], fuzzy: bool, problems: list[str]
) -> AttributeMatch | None:
    if len(values) > 1 and attribute.vr != "UI":
        problems.append(f"{key} is given more than once")
        return None
    raw = "\\".join(v for v in values if v) if attribute.vr == "UI" else values[0]
    if attribute.vr == "CS":
        # QIDO clients (OHIF's modality filter) send a value list comma-separated; a CS value
        # cannot hold a comma (PS3.5 Table 6.2-1), so "CT,MR" is the list CT\MR.
        raw = raw.replace(",", "\\")
    try:
        condition = parse_condition(attribute, raw, fuzzy)
    except InvalidMatchValue as problem:
        problems.append(f"{key}: {problem}")
        return None
    return None if condition is None else AttributeMatch(attribute, condition)


def _names(names: list[str]) -> str:
    # repr() keeps control characters and empty names visible and unambiguous.
    return ", ".join(repr(n) for n in names)


async def search(
    session: AsyncSession, scope: Scope, request: QidoRequest, *, base_url: str
) -> list[dict[str, Any]]:
    """Run a QIDO-RS search within ``scope``; DICOM JSON objects in a stable order (PS3.18 F.2).

    ``base_url`` is the absolute ``.../dicom-web`` root, for RetrieveURL (0008,1190).
    """
    query = index_query(request)
    hits = await session.run_sync(lambda sync: search_index(sync, scope, query))
    return search_results(request, hits, base_url=base_url)


def index_query(request: QidoRequest, study_order: StudyOrder | None = None) -> IndexQuery:
    """The index search a parsed QIDO-RS request asks for (in ``study_order``, for a list)."""
    return IndexQuery(
        level=request.level,
        matches=request.conditions,
        study_uid=request.study_uid,
        series_uid=request.series_uid,
        limit=request.limit,
        offset=request.offset,
        study_order=study_order,
    )


def search_results(
    request: QidoRequest, hits: list[SearchHit], *, base_url: str
) -> list[dict[str, Any]]:
    """DICOM JSON of the index hits, with the attributes the request returns (PS3.18 F.2)."""
    builder = _ResultBuilder(request, base_url.rstrip("/"))
    return [builder.build(hit) for hit in hits]


def return_tags(request: QidoRequest) -> frozenset[str]:
    """The attributes each result carries (PS3.18 10.6.3.3, PS3.4 C.2.2.1).

    The level's defaults; for series and instances, the defaults of each parent level that the
    path does not name, and always the parents' UIDs (and the Modality, for instances); every
    matching key; everything ``includefield`` asks for.
    """
    tags = set(DEFAULT_RETURN_TAGS[request.level]) | request.include_tags
    tags.update(m.attribute.tag for m in request.conditions)
    if request.level is not Level.STUDY:
        tags.add(_STUDY_UID)
        if request.study_uid is None:
            tags |= DEFAULT_RETURN_TAGS[Level.STUDY]
    if request.level is Level.INSTANCE:
        tags.update((_SERIES_UID, _MODALITY))
        if request.series_uid is None:
            tags |= DEFAULT_RETURN_TAGS[Level.SERIES]
    return frozenset(tags)


class _ResultBuilder:
    """Builds one DICOM JSON object per hit; parses each stored parent document only once."""

    def __init__(self, request: QidoRequest, base_url: str) -> None:
        self._level = request.level
        self._include_all = request.include_all
        self._tags = return_tags(request)
        self._base_url = base_url
        self._parsed: dict[tuple[str, int], dict[str, Any]] = {}

    def build(self, hit: SearchHit) -> dict[str, Any]:
        merged = dict(self._document("study", hit.study.pk, hit.study.attributes_json))
        if hit.series is not None:
            merged.update(self._document("series", hit.series.pk, hit.series.attributes_json))
        if hit.instance is not None:
            merged.update(self._document("instance", hit.instance.pk, hit.instance.attributes_json))
        merged.update(self._computed(hit))
        if not self._include_all:
            merged = {tag: merged[tag] for tag in self._tags if tag in merged}
        return dict(sorted(merged.items()))

    def _document(self, level: str, pk: int, raw: bytes) -> dict[str, Any]:
        key = (level, pk)
        document = self._parsed.get(key)
        if document is None:
            loaded = orjson.loads(raw) if raw else {}
            document = loaded if isinstance(loaded, dict) else {}
            self._parsed[key] = document
        return document

    def _computed(self, hit: SearchHit) -> dict[str, Any]:
        """Values the index knows better than any one stored header (PS3.18 10.6.3.3)."""
        study = hit.study
        modalities = [m for m in study.modalities_in_study.split("\\") if m]
        values: dict[str, Any] = {
            _STUDY_UID: _element("UI", study.study_uid),
            _MODALITIES_IN_STUDY: _element("CS", *modalities),
            _STUDY_SERIES: _element("IS", study.num_series),
            _STUDY_INSTANCES: _element("IS", study.num_instances),
        }
        url = f"{self._base_url}/studies/{study.study_uid}"
        if hit.series is not None:
            values[_SERIES_UID] = _element("UI", hit.series.series_uid)
            values[_SERIES_INSTANCES] = _element("IS", hit.series.num_instances)
            if hit.series.modality:
                values[_MODALITY] = _element("CS", hit.series.modality)
            url += f"/series/{hit.series.series_uid}"
        if hit.instance is not None:
            values[_SOP_UID] = _element("UI", hit.instance.sop_uid)
            values[_SOP_CLASS] = _element("UI", hit.instance.sop_class_uid)
            url += f"/instances/{hit.instance.sop_uid}"
        if self._level is not Level.SERIES:
            # Everything the archive indexed is on line (PS3.4 C.4.23.1.1).
            values[_AVAILABILITY] = _element("CS", "ONLINE")
        values[_RETRIEVE_URL] = _element("UR", url)
        return values


def _element(vr: str, *values: str | int) -> dict[str, Any]:
    """A DICOM JSON element (PS3.18 F.2.2); no ``Value`` when there is none."""
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}

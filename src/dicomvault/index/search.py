"""Index side of QIDO-RS / C-FIND: matching conditions -> one scoped SQL query.

The caller's :class:`Scope` is applied to every table the query touches (and to the
``ModalitiesInStudy`` sub-query); there is no way to call :func:`search_index` without one.
One statement per request, whatever the level: parents are joined, never fetched per row.

Matching translates the conditions of :mod:`dicomvault.dicom.matching` (PS3.4 C.2.2.2):
wildcards become ``LIKE ... ESCAPE`` on PostgreSQL and ``GLOB`` on SQLite, because SQLite's
``LIKE`` ignores case and single value / wildcard matching is case-sensitive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    case,
    exists,
    false,
    func,
    or_,
    select,
)
from sqlalchemy.orm import Session, aliased

from dicomvault.dicom.attributes import Level
from dicomvault.dicom.matching import (
    AttributeMatch,
    Condition,
    DateTimeRange,
    FuzzyPersonName,
    SingleValue,
    UidList,
    ValueList,
    Wildcard,
    upper_bound,
)
from dicomvault.errors import BadRequest
from dicomvault.index.models import Instance, Series, Study
from dicomvault.index.scope import Scope

__all__ = [
    "IndexQuery",
    "InstanceHit",
    "SearchHit",
    "SeriesHit",
    "StudyHit",
    "StudyOrder",
    "StudySortKey",
    "condition_clause",
    "search_index",
    "supported_matching_keys",
]

_LIKE_ESCAPE = "\\"
_INT32 = 2**31 - 1
# Matching keys -> (level, column). ModalitiesInStudy has no column of its own: it is matched
# against the modality of the study's series (see _modalities_in_study).
_COLUMNS: Mapping[str, tuple[Level, Any]] = {
    "PatientID": (Level.STUDY, Study.patient_id),
    "PatientName": (Level.STUDY, Study.patient_name),
    "PatientBirthDate": (Level.STUDY, Study.patient_birth_date),
    "PatientSex": (Level.STUDY, Study.patient_sex),
    "StudyInstanceUID": (Level.STUDY, Study.study_uid),
    "StudyDate": (Level.STUDY, Study.study_date),
    "StudyTime": (Level.STUDY, Study.study_time),
    "AccessionNumber": (Level.STUDY, Study.accession_number),
    "StudyID": (Level.STUDY, Study.study_id),
    "StudyDescription": (Level.STUDY, Study.study_description),
    "ReferringPhysicianName": (Level.STUDY, Study.referring_physician_name),
    "ModalitiesInStudy": (Level.STUDY, Series.modality),
    "Modality": (Level.SERIES, Series.modality),
    "SeriesInstanceUID": (Level.SERIES, Series.series_uid),
    "SeriesNumber": (Level.SERIES, Series.series_number),
    "SeriesDescription": (Level.SERIES, Series.series_description),
    "SeriesDate": (Level.SERIES, Series.series_date),
    "SeriesTime": (Level.SERIES, Series.series_time),
    "BodyPartExamined": (Level.SERIES, Series.body_part_examined),
    "PerformedProcedureStepStartDate": (Level.SERIES, Series.performed_procedure_step_start_date),
    "SOPClassUID": (Level.INSTANCE, Instance.sop_class_uid),
    "SOPInstanceUID": (Level.INSTANCE, Instance.sop_uid),
    "InstanceNumber": (Level.INSTANCE, Instance.instance_number),
    "Rows": (Level.INSTANCE, Instance.rows),
    "Columns": (Level.INSTANCE, Instance.columns),
    "NumberOfFrames": (Level.INSTANCE, Instance.number_of_frames),
}
# Upper-cased forms for case-insensitive (fuzzy) Person Name matching.
_FUZZY_COLUMNS: Mapping[str, Any] = {
    "PatientName": Study.patient_name_fuzzy,
    "ReferringPhysicianName": func.upper(Study.referring_physician_name),
}
_LEVEL_DEPTH = {Level.STUDY: 0, Level.SERIES: 1, Level.INSTANCE: 2}


def supported_matching_keys(level: Level) -> frozenset[str]:
    """Keywords usable as matching keys at ``level``: its own and those of the levels above.

    PS3.18 10.6.1.2 lets a series or instance query without the parent in the path carry
    the parent's attributes.
    """
    depth = _LEVEL_DEPTH[level]
    return frozenset(k for k, (lvl, _) in _COLUMNS.items() if _LEVEL_DEPTH[lvl] <= depth)


class StudySortKey(StrEnum):
    """What a study list (the worklist) can be ordered by; QIDO-RS itself has no sort."""

    RECEIVED = "received"
    DATE = "date"
    PATIENT_NAME = "name"
    PATIENT_ID = "patient"
    ACCESSION = "accession"
    MODALITIES = "modality"
    DESCRIPTION = "description"


@dataclass(frozen=True)
class StudyOrder:
    """A study-level order, sorted in SQL so that paging covers every match.

    Text compares without regard to case; studies without the value come last in either
    direction (a blank date is not "oldest"); the newest stored breaks ties.
    """

    key: StudySortKey = StudySortKey.RECEIVED
    descending: bool = True


@dataclass(frozen=True)
class IndexQuery:
    """What to find: the level, the parents named in the path, matching keys and the page."""

    level: Level
    matches: tuple[AttributeMatch, ...] = ()
    study_uid: str | None = None
    series_uid: str | None = None
    limit: int = 1000
    offset: int = 0
    # Study level only; None is the index's own order (newest stored first).
    study_order: StudyOrder | None = None


@dataclass(frozen=True)
class StudyHit:
    pk: int
    study_uid: str
    attributes_json: bytes
    modalities_in_study: str
    num_series: int
    num_instances: int


@dataclass(frozen=True)
class SeriesHit:
    pk: int
    series_uid: str
    modality: str | None
    attributes_json: bytes
    num_instances: int


@dataclass(frozen=True)
class InstanceHit:
    pk: int
    sop_uid: str
    sop_class_uid: str
    attributes_json: bytes


@dataclass(frozen=True)
class SearchHit:
    """One result, with its parents (``series`` from the series level down, ``instance`` at
    the instance level)."""

    study: StudyHit
    series: SeriesHit | None = None
    instance: InstanceHit | None = None


_STUDY_COLUMNS = (
    Study.pk,
    Study.study_uid,
    Study.attributes_json,
    Study.modalities_in_study,
    Study.num_series,
    Study.num_instances,
)
_SERIES_COLUMNS = (
    Series.pk,
    Series.series_uid,
    Series.modality,
    Series.attributes_json,
    Series.num_instances,
)
_INSTANCE_COLUMNS = (
    Instance.pk,
    Instance.sop_uid,
    Instance.sop_class_uid,
    Instance.attributes_json,
)


def search_index(session: Session, scope: Scope, query: IndexQuery) -> list[SearchHit]:
    """Run ``query`` within ``scope``: one SELECT, ordered deterministically, paged in SQL.

    Order: studies newest stored first (or by ``study_order``); series by SeriesNumber;
    instances by InstanceNumber (primary keys break ties), so ``limit``/``offset`` pages never
    overlap or skip.
    """
    if query.limit < 1 or query.offset < 0:
        raise BadRequest("limit must be at least 1 and offset not negative")
    dialect = session.get_bind().dialect.name
    statement = _statement(scope, query, dialect).limit(query.limit).offset(query.offset)
    rows = session.execute(statement).all()
    return [_hit(query.level, tuple(row)) for row in rows]


def _statement(scope: Scope, query: IndexQuery, dialect: str) -> Select[*tuple[Any, ...]]:
    tenants = sorted(scope.tenants)
    level = query.level
    in_scope = _ScopeFilter(tenants, query, dialect)
    if level is Level.STUDY:
        statement: Select[*tuple[Any, ...]] = select(*_STUDY_COLUMNS).where(
            in_scope(Level.STUDY, Study.tenant)
        )
        order: list[Any] = _study_order(query.study_order or StudyOrder(), dialect)
    elif query.study_order is not None:
        raise BadRequest("only a study list can be sorted")
    elif level is Level.SERIES:
        statement = (
            select(*_STUDY_COLUMNS, *_SERIES_COLUMNS)
            .join(Study, Series.study_pk == Study.pk)
            .where(in_scope(Level.SERIES, Series.tenant), in_scope(Level.STUDY, Study.tenant))
        )
        order = [Study.pk.desc(), Series.series_number.asc().nulls_last(), Series.pk.asc()]
    else:
        statement = (
            select(*_STUDY_COLUMNS, *_SERIES_COLUMNS, *_INSTANCE_COLUMNS)
            .join(Series, Instance.series_pk == Series.pk)
            .join(Study, Instance.study_pk == Study.pk)
            .where(
                in_scope(Level.INSTANCE, Instance.tenant),
                in_scope(Level.SERIES, Series.tenant),
                in_scope(Level.STUDY, Study.tenant),
            )
        )
        order = [
            Study.pk.desc(),
            Series.series_number.asc().nulls_last(),
            Series.pk.asc(),
            Instance.instance_number.asc().nulls_last(),
            Instance.pk.asc(),
        ]
    if query.study_uid is not None:
        statement = statement.where(Study.study_uid == query.study_uid)
    if query.series_uid is not None:
        if level is Level.STUDY:
            raise BadRequest("a series UID cannot narrow a study query")
        statement = statement.where(Series.series_uid == query.series_uid)
    for match in query.matches:
        statement = statement.where(_match_clause(match, level, tenants, dialect))
    return statement.order_by(*order)


# The columns each sort key compares, most significant first. The patient name sorts by its
# upper-cased copy (made in Python at ingest, so it folds every script's case, where SQLite's
# lower() folds ASCII only).
_SORT_COLUMNS: Mapping[StudySortKey, tuple[Any, ...]] = {
    StudySortKey.DATE: (Study.study_date, Study.study_time),
    StudySortKey.PATIENT_NAME: (Study.patient_name_fuzzy,),
    StudySortKey.PATIENT_ID: (Study.patient_id,),
    StudySortKey.ACCESSION: (Study.accession_number,),
    StudySortKey.MODALITIES: (Study.modalities_in_study,),
    StudySortKey.DESCRIPTION: (Study.study_description,),
}
# Compared as stored: the name's copy is folded already, dates and times are digits.
_COMPARED_AS_STORED = frozenset({StudySortKey.PATIENT_NAME, StudySortKey.DATE})


def _study_order(order: StudyOrder, dialect: str) -> list[Any]:
    """ORDER BY terms for ``order``: blanks last, then the values, then newest stored first.

    Values compare character by character on both databases (PostgreSQL's ``C`` collation, as
    SQLite does): a locale's collation would skip ``^`` and spaces and interleave family names
    (``DOEB`` between ``DOE JANE`` and ``DOE^JOHN``). A name's ``^`` compares as a space, so
    that ``DOE^ZED`` comes before ``DOEB``.
    """
    if order.key is StudySortKey.RECEIVED:
        return [Study.pk.desc() if order.descending else Study.pk.asc()]
    columns = _SORT_COLUMNS[order.key]
    blank = func.coalesce(columns[0], "") == ""
    terms: list[Any] = [case((blank, 1), else_=0)]
    for column in columns:
        value: ColumnElement[Any] = func.coalesce(column, "")
        if order.key not in _COMPARED_AS_STORED:
            value = func.lower(value)
        if order.key is StudySortKey.PATIENT_NAME:
            # The component separator before any letter: family names first, as people read.
            value = func.replace(value, "^", " ")
        if dialect == "postgresql":
            value = value.collate("C")
        terms.append(value.desc() if order.descending else value.asc())
    terms.append(Study.pk.desc())
    return terms


class _ScopeFilter:
    """``tenant IN (scope)`` for each table of the query — always, on every table.

    On SQLite the filter of a table that the query does not otherwise constrain is written
    ``tenant || '' IN (...)``: the same rows, but no index can serve it. Without ANALYZE
    statistics SQLite's planner otherwise walks every instance of the tenant (through the
    ``(tenant, sop_uid)`` index) for ``/instances?PatientID=X`` instead of starting from the
    patient's studies. PostgreSQL plans from its statistics and gets the plain form.
    """

    def __init__(self, tenants: Sequence[str], query: IndexQuery, dialect: str) -> None:
        self._tenants = tenants
        self._constrained = _constrained_levels(query)
        self._hint = dialect == "sqlite" and bool(self._constrained)

    def __call__(self, level: Level, tenant_column: Any) -> ColumnElement[bool]:
        if self._hint and level not in self._constrained:
            tenant_column = tenant_column.concat("")
        return tenant_column.in_(self._tenants)  # type: ignore[no-any-return]


def _constrained_levels(query: IndexQuery) -> frozenset[Level]:
    """Levels with a UID in the path or a matching key on a column of their own.

    ModalitiesInStudy does not count: it is an EXISTS on series and cannot select studies.
    """
    levels = {
        _COLUMNS[m.attribute.keyword][0]
        for m in query.matches
        if m.attribute.keyword != "ModalitiesInStudy"
    }
    if query.study_uid is not None:
        levels.add(Level.STUDY)
    if query.series_uid is not None:
        levels.add(Level.SERIES)
    return frozenset(levels)


def _match_clause(
    match: AttributeMatch, level: Level, tenants: Sequence[str], dialect: str
) -> ColumnElement[bool]:
    keyword = match.attribute.keyword
    if keyword not in supported_matching_keys(level):
        raise BadRequest(f"{keyword} is not a matching key at the {level} level")
    condition = match.condition
    if keyword == "ModalitiesInStudy":
        return _modalities_in_study(condition, tenants, dialect)
    column = _COLUMNS[keyword][1]
    if _is_case_insensitive(condition):
        column = _FUZZY_COLUMNS.get(keyword, func.upper(column))
    return condition_clause(column, condition, dialect=dialect)


def _is_case_insensitive(condition: Condition) -> bool:
    return isinstance(condition, FuzzyPersonName) or (
        isinstance(condition, Wildcard) and condition.ignore_case
    )


def _modalities_in_study(
    condition: Condition, tenants: Sequence[str], dialect: str
) -> ColumnElement[bool]:
    """ModalitiesInStudy matches when any series of the study matches (PS3.4 C.6.1.1.2).

    The sub-query reads an alias of ``series`` so that, in a series-level query, it is not
    correlated with the outer series row.
    """
    other = aliased(Series)
    return exists(
        select(other.pk).where(
            other.study_pk == Study.pk,
            other.tenant.in_(tenants),
            condition_clause(other.modality, condition, dialect=dialect),
        )
    )


def condition_clause(column: Any, condition: Condition, *, dialect: str) -> ColumnElement[bool]:
    """The SQL form of one PS3.4 C.2.2.2 condition on ``column``.

    Integer columns (IS/US attributes) compare as integers; text columns as text. ``dialect``
    is the SQLAlchemy dialect name (``sqlite`` or ``postgresql``).
    """
    is_integer = isinstance(getattr(column, "type", None), Integer)
    if isinstance(condition, SingleValue):
        return _equals(column, condition.value, is_integer)
    if isinstance(condition, UidList | ValueList):
        values = condition.uids if isinstance(condition, UidList) else condition.values
        return or_(*(_equals(column, v, is_integer) for v in values))
    if isinstance(condition, Wildcard):
        if dialect == "sqlite":
            result: ColumnElement[bool] = column.op("GLOB")(condition.glob_pattern())
            return result
        return column.like(condition.like_pattern(_LIKE_ESCAPE), escape=_LIKE_ESCAPE)  # type: ignore[no-any-return]
    if isinstance(condition, DateTimeRange):
        return _range(column, condition)
    return _fuzzy_person_name(column, condition)


def _equals(column: Any, value: str, is_integer: bool) -> ColumnElement[bool]:
    if not is_integer:
        return column == value  # type: ignore[no-any-return]
    number = int(value)
    # Out of the column's range can match nothing (and must not overflow PostgreSQL's int4).
    if abs(number) > _INT32:
        return false()
    return column == number  # type: ignore[no-any-return]


def _range(column: Any, condition: DateTimeRange) -> ColumnElement[bool]:
    bounds: list[ColumnElement[bool]] = [column.is_not(None), column != ""]
    if condition.low is not None:
        bounds.append(column >= condition.low)
    if condition.high is not None:
        bounds.append(column <= upper_bound(condition.vr, condition.high))
    return and_(*bounds)


def _fuzzy_person_name(column: Any, condition: FuzzyPersonName) -> ColumnElement[bool]:
    """Every query word is a prefix of a word of the (upper-cased) stored name.

    A word starts the value or follows one of the separators ``^ = space ,`` — the same split
    as :func:`dicomvault.dicom.matching.fuzzy_words`.
    """
    clauses: list[ColumnElement[bool]] = [column.is_not(None)]
    for word in condition.words:
        literal = Wildcard(word).like_pattern(_LIKE_ESCAPE)
        starts = [f"{literal}%"] + [f"%{sep}{literal}%" for sep in ("^", "=", " ", ",")]
        clauses.append(or_(*(column.like(p, escape=_LIKE_ESCAPE) for p in starts)))
    return and_(*clauses)


def _hit(level: Level, row: tuple[Any, ...]) -> SearchHit:
    study = StudyHit(*row[:6])
    if level is Level.STUDY:
        return SearchHit(study)
    series = SeriesHit(*row[6:11])
    if level is Level.SERIES:
        return SearchHit(study, series)
    return SearchHit(study, series, InstanceHit(*row[11:15]))

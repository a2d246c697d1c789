"""PS3.4 C.2.2.2 matching rules: parsing query values and the Python reference semantics."""

from __future__ import annotations

import datetime
import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomvault.dicom.attributes import (
    DEFAULT_RETURN_TAGS,
    Level,
    UnknownAttribute,
    resolve_attribute,
)
from dicomvault.dicom.matching import (
    DateTimeRange,
    FuzzyPersonName,
    InvalidMatchValue,
    SingleValue,
    UidList,
    ValueList,
    Wildcard,
    parse_condition,
)

PATIENT_ID = resolve_attribute("PatientID")
PATIENT_NAME = resolve_attribute("PatientName")
STUDY_UID = resolve_attribute("StudyInstanceUID")
STUDY_DATE = resolve_attribute("StudyDate")
STUDY_TIME = resolve_attribute("StudyTime")
MODALITY = resolve_attribute("Modality")
SERIES_NUMBER = resolve_attribute("SeriesNumber")
ACQUISITION_DATETIME = resolve_attribute("AcquisitionDateTime")


# --- attributes ------------------------------------------------------------------------------


def test_resolve_by_keyword_and_by_tag_in_any_case() -> None:
    assert resolve_attribute("PatientID") == resolve_attribute("00100020")
    assert resolve_attribute("0020000d") == resolve_attribute("0020000D")
    assert resolve_attribute("0020000d").keyword == "StudyInstanceUID"
    assert resolve_attribute("StudyInstanceUID").tag == "0020000D"
    assert resolve_attribute("Rows").vr == "US"


@pytest.mark.parametrize(
    "name",
    ["patientid", "NoSuchKeyword", "0010002", "001000200", "00081110.00081150", "", "GGGG0010"],
)
def test_unknown_names_and_sequence_paths_are_rejected(name: str) -> None:
    with pytest.raises(UnknownAttribute) as raised:
        resolve_attribute(name)
    assert raised.value.name == name


def test_default_return_attributes_follow_ps3_18_tables() -> None:
    assert {"0020000D", "00100020", "00201206", "00201208", "00081190"} <= DEFAULT_RETURN_TAGS[
        Level.STUDY
    ]
    assert {"0020000E", "00080060", "00201209"} <= DEFAULT_RETURN_TAGS[Level.SERIES]
    assert {"00080016", "00080018", "00200013", "00280010"} <= DEFAULT_RETURN_TAGS[Level.INSTANCE]


# --- parse_condition -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "raw", "fuzzy", "expected"),
    [
        (PATIENT_ID, "", False, None),
        (PATIENT_ID, "*", False, None),
        (PATIENT_ID, "**", False, None),
        (STUDY_DATE, "*", False, None),
        (PATIENT_ID, "SYN1", False, SingleValue("SYN1")),
        (PATIENT_ID, "SYN*", False, Wildcard("SYN*")),
        (PATIENT_ID, "S?N1", False, Wildcard("S?N1")),
        (PATIENT_NAME, "Doe^John", False, SingleValue("Doe^John")),
        (PATIENT_NAME, "doe", True, FuzzyPersonName("doe")),
        (PATIENT_NAME, "do*", True, Wildcard("DO*", ignore_case=True)),
        (PATIENT_NAME, "^", True, None),
        (PATIENT_ID, "doe", True, SingleValue("doe")),
        (STUDY_UID, "1.2.3", False, SingleValue("1.2.3")),
        (STUDY_UID, "1.2.3,1.2.4", False, UidList(("1.2.3", "1.2.4"))),
        (STUDY_UID, "1.2.3\\1.2.4\\1.2.3", False, UidList(("1.2.3", "1.2.4"))),
        (MODALITY, "CT\\MR", False, ValueList(("CT", "MR"))),
        (STUDY_DATE, "20200101", False, SingleValue("20200101")),
        (STUDY_DATE, "20200101-20201231", False, DateTimeRange("DA", "20200101", "20201231")),
        (STUDY_DATE, "-20201231", False, DateTimeRange("DA", None, "20201231")),
        (STUDY_DATE, "20200101-", False, DateTimeRange("DA", "20200101", None)),
        (STUDY_TIME, "10-113005.5", False, DateTimeRange("TM", "10", "113005.5")),
        (SERIES_NUMBER, " 007 ", False, SingleValue("7")),
        (ACQUISITION_DATETIME, "20200101120000-0500", False, SingleValue("20200101120000")),
        (
            ACQUISITION_DATETIME,
            "2020-20210101120000+0100",
            False,
            DateTimeRange("DT", "2020", "20210101120000"),
        ),
    ],
)
def test_parse_condition(attribute, raw, fuzzy, expected) -> None:  # type: ignore[no-untyped-def]
    assert parse_condition(attribute, raw, fuzzy) == expected


@pytest.mark.parametrize(
    ("attribute", "raw"),
    [
        (STUDY_DATE, "2020-01-01"),
        (STUDY_DATE, "20200230"),
        (STUDY_DATE, "2020010"),
        (STUDY_DATE, "-"),
        (STUDY_DATE, "2020*"),
        (STUDY_TIME, "2500"),
        (STUDY_TIME, "1060"),
        (STUDY_UID, "1.2.*"),
        (STUDY_UID, "1.2.abc"),
        (STUDY_UID, "1." + "2" * 64),
        (SERIES_NUMBER, "1.5"),
        (SERIES_NUMBER, "1?"),
        (PATIENT_ID, "A\\B"),
        (MODALITY, "CT\\M*"),
    ],
)
def test_invalid_values_are_rejected(attribute, raw) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidMatchValue):
        parse_condition(attribute, raw)


ANY_ATTRIBUTE = st.sampled_from(
    [PATIENT_ID, PATIENT_NAME, STUDY_UID, STUDY_DATE, STUDY_TIME, MODALITY, SERIES_NUMBER]
    + [ACQUISITION_DATETIME]
)


@given(ANY_ATTRIBUTE, st.text(), st.booleans())
def test_parse_never_fails_other_than_invalid_value(attribute, raw, fuzzy) -> None:  # type: ignore[no-untyped-def]
    try:
        condition = parse_condition(attribute, raw, fuzzy)
    except InvalidMatchValue:
        return
    if condition is not None:
        condition.matches(raw)  # every condition can be evaluated


# --- reference semantics ---------------------------------------------------------------------

PATTERN_TEXT = st.text(alphabet="ab%_\\*?^ ", max_size=8)
VALUE_TEXT = st.text(alphabet="abAB%_\\^ ", max_size=8)


@given(PATTERN_TEXT, VALUE_TEXT)
def test_wildcard_agrees_with_fnmatch(pattern: str, value: str) -> None:
    """Without ``[`` (a character class to fnmatch, literal to DICOM) the two agree."""
    assert Wildcard(pattern).matches(value) == fnmatch.fnmatchcase(value, pattern)


def test_wildcard_brackets_are_literal() -> None:
    assert Wildcard("[ab]*").matches("[ab]c")
    assert not Wildcard("[ab]*").matches("ac")


def test_like_pattern_escapes_sql_metacharacters() -> None:
    assert Wildcard("a%b_c\\*?").like_pattern() == "a\\%b\\_c\\\\%_"
    assert Wildcard("[x]*").glob_pattern() == "[[]x[]]*"


DATES = st.dates(min_value=datetime.date(1900, 1, 1), max_value=datetime.date(2100, 12, 31))


@given(DATES, st.one_of(st.none(), DATES), st.one_of(st.none(), DATES))
def test_date_range_agrees_with_date_comparison(
    stored: datetime.date, low: datetime.date | None, high: datetime.date | None
) -> None:
    if low is None and high is None:
        return
    raw = f"{low:%Y%m%d}" if low else ""
    raw += "-" + (f"{high:%Y%m%d}" if high else "")
    condition = parse_condition(STUDY_DATE, raw)
    expected = (low is None or low <= stored) and (high is None or stored <= high)
    assert condition is not None
    assert condition.matches(f"{stored:%Y%m%d}") == expected


TIMES = st.times()


def _tm(value: datetime.time, precision: int) -> str:
    """A TM value of 1 (HH) to 4 (HHMMSS.FFFFFF) components."""
    text = f"{value:%H%M%S}.{value.microsecond:06d}"
    return text[: (2, 4, 6, 13)[precision - 1]]


def _tm_range(text: str, upper: bool) -> tuple[int, ...]:
    """The time of a TM value as (h, m, s, us), the low or the high end of its precision."""
    parts = [int(text[0:2])]
    parts.append(int(text[2:4]) if len(text) >= 4 else (59 if upper else 0))
    parts.append(int(text[4:6]) if len(text) >= 6 else (59 if upper else 0))
    fraction = text[7:] if len(text) > 7 else ""
    micro = int((fraction + ("9" if upper else "0") * 6)[:6]) if fraction or upper else 0
    parts.append(micro)
    return tuple(parts)


@given(
    TIMES,
    st.booleans(),
    st.one_of(st.none(), st.tuples(TIMES, st.integers(1, 4))),
    st.one_of(st.none(), st.tuples(TIMES, st.integers(1, 4))),
)
def test_time_range_agrees_with_time_comparison_at_query_precision(
    stored: datetime.time,
    with_fraction: bool,
    low: tuple[datetime.time, int] | None,
    high: tuple[datetime.time, int] | None,
) -> None:
    """Stored times are full HHMMSS, with a six-digit fraction or none (as modalities write)."""
    if low is None and high is None:
        return
    low_text = _tm(*low) if low else ""
    high_text = _tm(*high) if high else ""
    condition = parse_condition(STUDY_TIME, f"{low_text}-{high_text}")
    stored_text = _tm(stored, 4) if with_fraction else _tm(stored, 3)
    point = _tm_range(stored_text, upper=False)
    expected = (not low_text or _tm_range(low_text, upper=False) <= point) and (
        not high_text or point <= _tm_range(high_text, upper=True)
    )
    assert condition is not None
    assert condition.matches(stored_text) == expected


def test_fuzzy_person_name_reference() -> None:
    doe = FuzzyPersonName("doe")
    assert doe.matches("Doe^John")
    assert doe.matches("Smith^Doe")
    assert doe.matches("Van Doesburg^Theo")
    assert not doe.matches("Moe^Jodoe")
    assert FuzzyPersonName("jo do").matches("Doe^John")
    assert not FuzzyPersonName("jo do").matches("Doe^Mary")
    assert not doe.matches(None)

"""parse_qido_request: PS3.18 8.3.4 query parameters -> QidoRequest, or a 400 naming the fault."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomvault.dicom.attributes import Level
from dicomvault.dicom.matching import DateTimeRange, FuzzyPersonName, SingleValue, UidList
from dicomvault.errors import BadRequest
from dicomvault.query.qido import QidoRequest, parse_qido_request, return_tags


def test_defaults() -> None:
    request = parse_qido_request(Level.STUDY, [])
    assert request == QidoRequest(
        level=Level.STUDY,
        study_uid=None,
        series_uid=None,
        conditions=(),
        include_all=False,
        include_tags=frozenset(),
        limit=1000,
        offset=0,
        fuzzy=False,
    )


def test_everything_at_once() -> None:
    request = parse_qido_request(
        Level.SERIES,
        [
            ("PatientID", "SYN1"),
            ("00080020", "20200101-"),
            ("includefield", "00081030,PatientAge"),
            ("includefield", "all"),
            ("limit", "25"),
            ("offset", "50"),
            ("PatientName", "doe"),
            ("fuzzymatching", "true"),  # applies to keys given before it too
            ("Modality", ""),  # universal: no condition
        ],
        study_uid="1.2.3",
    )
    conditions = {m.attribute.keyword: m.condition for m in request.conditions}
    assert conditions == {
        "PatientID": SingleValue("SYN1"),
        "StudyDate": DateTimeRange("DA", "20200101", None),
        "PatientName": FuzzyPersonName("doe"),
    }
    assert request.include_all
    assert request.include_tags == {"00081030", "00101010"}
    assert (request.limit, request.offset, request.fuzzy) == (25, 50, True)
    assert request.study_uid == "1.2.3"


def test_repeated_uid_keys_form_a_list() -> None:
    request = parse_qido_request(
        Level.STUDY, [("StudyInstanceUID", "1.2.3"), ("StudyInstanceUID", "1.2.4,1.2.5")]
    )
    [match] = request.conditions
    assert match.condition == UidList(("1.2.3", "1.2.4", "1.2.5"))


def test_limit_is_capped_and_defaults_are_configurable() -> None:
    assert parse_qido_request(Level.STUDY, [("limit", "50000")], max_limit=100).limit == 100
    assert parse_qido_request(Level.STUDY, [], default_limit=7).limit == 7


def test_an_empty_non_matching_key_asks_for_the_attribute() -> None:
    request = parse_qido_request(Level.STUDY, [("PatientAge", ""), ("00101030", "")])
    assert request.conditions == ()
    assert request.include_tags == {"00101010", "00101030"}


def test_private_tags_may_be_included() -> None:
    request = parse_qido_request(Level.INSTANCE, [("includefield", "00091001")])
    assert request.include_tags == {"00091001"}


@pytest.mark.parametrize(
    ("level", "params", "named"),
    [
        (Level.STUDY, [("NoSuchKey", "x")], "NoSuchKey"),
        (Level.STUDY, [("00081110.00081150", "1.2")], "00081110.00081150"),
        (Level.STUDY, [("Modality", "CT")], "Modality"),
        (Level.SERIES, [("SOPInstanceUID", "1.2")], "SOPInstanceUID"),
        (Level.STUDY, [("PatientAge", "042Y")], "PatientAge"),
        (Level.STUDY, [("StudyDate", "2020-01-01")], "StudyDate"),
        (Level.STUDY, [("00080020", "yesterday")], "00080020"),
        (Level.STUDY, [("PatientID", "a"), ("PatientID", "b")], "PatientID"),
        (Level.STUDY, [("limit", "0")], "limit"),
        (Level.STUDY, [("limit", "ten")], "limit"),
        (Level.STUDY, [("limit", "1"), ("limit", "2")], "limit"),
        (Level.STUDY, [("offset", "-1")], "offset"),
        (Level.STUDY, [("offset", "99999999999999999999")], "offset"),
        (Level.STUDY, [("fuzzymatching", "yes")], "fuzzymatching"),
        (Level.STUDY, [("includefield", "PatientID,Bogus")], "Bogus"),
        (Level.STUDY, [("StudyInstanceUID", "1.2.*")], "StudyInstanceUID"),
    ],
)
def test_bad_parameters_are_named(level: Level, params: list[tuple[str, str]], named: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_qido_request(level, params)
    assert named in raised.value.message
    assert raised.value.http_status == 400


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(BadRequest) as raised:
        parse_qido_request(Level.STUDY, [("Bogus1", ""), ("limit", "x"), ("StudyDate", "1")])
    for name in ("Bogus1", "limit", "StudyDate"):
        assert name in raised.value.message


def test_parent_keys_are_allowed_below_the_study_level() -> None:
    request = parse_qido_request(
        Level.INSTANCE, [("PatientID", "SYN1"), ("Modality", "CT"), ("SOPClassUID", "1.2")]
    )
    assert len(request.conditions) == 3


def test_return_tags_follow_the_resource() -> None:
    study = return_tags(parse_qido_request(Level.STUDY, [("PatientAge", "")]))
    assert {"0020000D", "00100020", "00201206"} <= study
    all_series = return_tags(parse_qido_request(Level.SERIES, []))
    assert {"0020000E", "0020000D", "00100020", "00080050"} <= all_series
    study_series = return_tags(parse_qido_request(Level.SERIES, [], study_uid="1.2"))
    assert "0020000D" in study_series
    assert "00100020" not in study_series
    series_instances = return_tags(
        parse_qido_request(Level.INSTANCE, [], study_uid="1.2", series_uid="1.3")
    )
    assert {"00080018", "0020000D", "0020000E", "00080060"} <= series_instances
    assert "0008103E" not in series_instances
    assert "0008103E" in return_tags(parse_qido_request(Level.INSTANCE, [], study_uid="1.2"))


KEYS = st.one_of(
    st.sampled_from(
        ["PatientID", "PatientName", "StudyDate", "StudyTime", "StudyInstanceUID", "Modality",
         "SeriesNumber", "InstanceNumber", "ModalitiesInStudy", "includefield", "limit", "offset",
         "fuzzymatching", "00100020", "0020000d"]
    ),
    st.text(max_size=12),
)  # fmt: skip


@given(st.sampled_from(list(Level)), st.lists(st.tuples(KEYS, st.text(max_size=20)), max_size=6))
def test_arbitrary_parameters_give_a_request_or_bad_request(
    level: Level, params: list[tuple[str, str]]
) -> None:
    try:
        request = parse_qido_request(level, params)
    except BadRequest as problem:
        assert problem.message
        return
    assert 1 <= request.limit <= 10000
    assert request.offset >= 0

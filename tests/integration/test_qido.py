"""QIDO-RS (PS3.18 10.6) over raw HTTP: the query-string details real clients differ in.

The query strings are written by hand (``httpx`` is given the URL as text) so that percent-encoded
separators, backslashes and tag forms reach the server exactly as a browser or viewer sends them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.support_data import (
    DICOM_JSON,
    MODALITIES_IN_STUDY,
    PATIENT_ID,
    PATIENT_NAME,
    SERIES_RELATED_INSTANCES,
    SERIES_UID,
    SOP_UID,
    STUDY_DATE,
    STUDY_RELATED_INSTANCES,
    STUDY_RELATED_SERIES,
    STUDY_UID,
    Archive,
    Sample,
    first,
    fresh_ct,
    running_archive,
    sample_from_bytes,
    sample_set,
    stow,
    uids,
    value,
    values,
)
from tests.support.server import LiveServer

# Synthetic names with several components and words, for fuzzy matching (PS3.18 8.3.4.6.1).
NAMED_PATIENTS = {
    "SYNVDB": "VAN DER BERG^ANNA",
    "SYNSMI": "SMITH^JOHN^^DR",
    "SYNJOH": "JOHNSON^MARY",
}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    with running_archive(tmp_path_factory.mktemp("qido") / "data") as signed_in:
        yield signed_in


@pytest.fixture(scope="module")
def server(archive: Archive) -> LiveServer:
    return archive.server


@pytest.fixture(scope="module")
def samples(archive: Archive) -> list[Sample]:
    """The varied sample set plus three named patients, stored once for the module."""
    stored = sample_set(seed=202)
    for patient_id, name in NAMED_PATIENTS.items():
        data = fresh_ct(patient_id=patient_id, patient_name=name, study_date="20190505")
        stored.append(sample_from_bytes(patient_id, data))
    with archive.http() as c:
        response = stow(c, archive.dicomweb, [s.data for s in stored])
    assert response.status_code == 200, response.text
    return stored


@pytest.fixture(scope="module")
def http(archive: Archive, samples: list[Sample]) -> Iterator[httpx.Client]:
    with archive.http() as c:
        yield c


def _get(http: httpx.Client, path_and_query: str) -> list[dict[str, Any]]:
    response = http.get(path_and_query)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0].strip() == DICOM_JSON
    body: list[dict[str, Any]] = response.json()
    return body


def _studies(samples: list[Sample], **keys: Any) -> set[str]:
    return {s.study_uid for s in samples if all(getattr(s, k) == v for k, v in keys.items())}


def _studies_of(samples: list[Sample], patient_ids: set[str]) -> set[str]:
    return {s.study_uid for s in samples if s.patient_id in patient_ids}


# -- attribute forms -------------------------------------------------------------------------------
def test_keyword_and_tag_forms_are_the_same_query(
    http: httpx.Client, samples: list[Sample]
) -> None:
    by_keyword = _get(http, "/studies?PatientID=SYN0002")
    by_tag = _get(http, "/studies?00100020=SYN0002")
    assert by_keyword == by_tag
    assert uids(by_tag, STUDY_UID) == _studies(samples, patient_id="SYN0002")


def test_response_is_dicom_json(http: httpx.Client) -> None:
    response = http.get("/studies?PatientID=SYN0001", headers={"Accept": DICOM_JSON})
    assert response.status_code == 200
    assert response.headers["content-type"] == DICOM_JSON
    for result in response.json():
        for tag, element in result.items():
            assert len(tag) == 8 and tag == tag.upper()
            assert "vr" in element


# -- wildcards -------------------------------------------------------------------------------------
def test_star_wildcard(http: httpx.Client, samples: list[Sample]) -> None:
    found = _get(http, "/studies?StudyDescription=MR*")
    expected = {s.study_uid for s in samples if s.dataset.StudyDescription.startswith("MR")}
    assert len(expected) == 2
    assert uids(found, STUDY_UID) == expected


def test_percent_encoded_star_is_a_wildcard(http: httpx.Client, samples: list[Sample]) -> None:
    found = _get(http, "/studies?PatientID=SYN000%2A")
    assert uids(found, STUDY_UID) == _studies_of(
        samples, {"SYN0001", "SYN0002", "SYN0003", "SYN0004"}
    )


def test_question_mark_matches_one_character(http: httpx.Client, samples: list[Sample]) -> None:
    found = _get(http, "/studies?AccessionNumber=ACC?00?")
    assert uids(found, STUDY_UID) == {
        s.study_uid for s in samples if len(s.accession) == 7 and s.accession.startswith("ACC")
    }
    assert _get(http, "/studies?AccessionNumber=ACC?0") == []


# -- UID lists -------------------------------------------------------------------------------------
@pytest.mark.parametrize("separator", [",", "%2C", "%5C", "%5c"])
def test_uid_list(http: httpx.Client, samples: list[Sample], separator: str) -> None:
    wanted = sorted(
        _studies(samples, patient_id="SYN0001") | _studies(samples, patient_id="SYN0003")
    )
    assert len(wanted) == 3
    found = _get(http, "/studies?StudyInstanceUID=" + separator.join(wanted))
    assert uids(found, STUDY_UID) == set(wanted)


def test_sop_uid_list_at_instance_level(http: httpx.Client, samples: list[Sample]) -> None:
    wanted = [samples[0].sop_uid, samples[-1].sop_uid]
    found = _get(http, f"/instances?SOPInstanceUID={wanted[0]}%5C{wanted[1]}")
    assert uids(found, SOP_UID) == set(wanted)


# -- date ranges -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "low", "high"),
    [
        ("20230101-20231231", "20230101", "20231231"),
        ("20240101-", "20240101", "99991231"),
        ("-20230630", "00000000", "20230630"),
        ("20230612", "20230612", "20230612"),
    ],
)
def test_study_date(
    http: httpx.Client, samples: list[Sample], query: str, low: str, high: str
) -> None:
    expected = {s.study_uid for s in samples if low <= s.study_date <= high}
    assert expected
    found = _get(http, f"/studies?StudyDate={query}")
    assert uids(found, STUDY_UID) == expected
    assert all(low <= value(r, STUDY_DATE) <= high for r in found)


def test_malformed_date_is_400(http: httpx.Client) -> None:
    response = http.get("/studies?StudyDate=2023-01-01")
    assert response.status_code == 400


# -- fuzzy matching --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "patient_id"),
    [
        ("smith", "SYNSMI"),
        ("Smith%5EJohn", "SYNSMI"),
        ("anna", "SYNVDB"),
        ("van%20der%20berg%5Eanna", "SYNVDB"),
        ("mary", "SYNJOH"),
    ],
)
def test_fuzzymatching_is_case_insensitive_per_component(
    http: httpx.Client, samples: list[Sample], query: str, patient_id: str
) -> None:
    found = _get(http, f"/studies?PatientName={query}&fuzzymatching=true")
    assert uids(found, STUDY_UID) == _studies(samples, patient_id=patient_id)


def test_without_fuzzymatching_names_match_exactly(
    http: httpx.Client, samples: list[Sample]
) -> None:
    assert _get(http, "/studies?PatientName=smith%5Ejohn%5E%5Edr") == []
    assert _get(http, "/studies?PatientName=smith%5Ejohn%5E%5Edr&fuzzymatching=false") == []
    exact = _get(http, "/studies?PatientName=SMITH%5EJOHN%5E%5EDR")
    assert uids(exact, STUDY_UID) == _studies(samples, patient_id="SYNSMI")
    assert value(exact[0], PATIENT_NAME) == {"Alphabetic": "SMITH^JOHN^^DR"}


# -- includefield ----------------------------------------------------------------------------------
def test_includefield_list_percent_encoded(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, accession="ACC1002")
    plain = _get(http, f"/studies/{s.study_uid}/series")
    assert plain and all("00080021" not in r and "00080031" not in r for r in plain)
    for query in (
        "SeriesDate%2CSeriesTime",
        "SeriesDate,00080031",
        "SeriesDate&includefield=SeriesTime",
    ):
        found = _get(http, f"/studies/{s.study_uid}/series?includefield={query}")
        assert len(found) == 2
        for r in found:
            assert value(r, "00080021") == s.study_date
            assert value(r, "00080031") == "120000"


def test_includefield_all(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, accession="ACC1001")
    default = _get(http, f"/studies/{s.study_uid}/series/{s.series_uid}/instances")
    everything = _get(
        http, f"/studies/{s.study_uid}/series/{s.series_uid}/instances?includefield=all"
    )
    assert len(default) == len(everything) == 3
    for d, e in zip(
        sorted(default, key=lambda r: value(r, SOP_UID)),
        sorted(everything, key=lambda r: value(r, SOP_UID)),
        strict=True,
    ):
        assert set(d) < set(e)
        assert all(e[tag] == d[tag] for tag in d)


def test_unknown_includefield_is_400_naming_it(http: httpx.Client) -> None:
    response = http.get("/studies?includefield=PatientID%2CNoSuchKeyword")
    assert response.status_code == 400
    assert "NoSuchKeyword" in response.text


# -- paging ----------------------------------------------------------------------------------------
def test_limit_offset_pages_are_stable_and_complete(
    http: httpx.Client, samples: list[Sample]
) -> None:
    everything = [value(r, SOP_UID) for r in _get(http, "/instances")]
    assert sorted(everything) == sorted(s.sop_uid for s in samples)
    paged: list[str] = []
    for offset in range(0, len(everything) + 3, 3):
        page = _get(http, f"/instances?limit=3&offset={offset}")
        assert len(page) == min(3, max(0, len(everything) - offset))
        paged.extend(value(r, SOP_UID) for r in page)
    assert paged == everything
    assert [value(r, SOP_UID) for r in _get(http, "/instances")] == everything


def test_invalid_limit_is_400(http: httpx.Client) -> None:
    assert http.get("/studies?limit=-1").status_code == 400
    assert http.get("/studies?offset=abc").status_code == 400


# -- computed attributes ---------------------------------------------------------------------------
def test_study_counts_and_modalities(http: httpx.Client, samples: list[Sample]) -> None:
    for r in _get(http, "/studies"):
        study = value(r, STUDY_UID)
        members = [s for s in samples if s.study_uid == study]
        assert sorted(values(r, MODALITIES_IN_STUDY)) == sorted({s.modality for s in members})
        assert int(value(r, STUDY_RELATED_SERIES)) == len({s.series_uid for s in members})
        assert int(value(r, STUDY_RELATED_INSTANCES)) == len(members)


def test_series_instance_counts(http: httpx.Client, samples: list[Sample]) -> None:
    for r in _get(http, "/series"):
        series = value(r, SERIES_UID)
        members = [s for s in samples if s.series_uid == series]
        assert int(value(r, SERIES_RELATED_INSTANCES)) == len(members)
        assert value(r, "00080060") == members[0].modality
        assert value(r, STUDY_UID) == members[0].study_uid


def test_modalities_in_study_as_matching_key(http: httpx.Client, samples: list[Sample]) -> None:
    found = _get(http, "/studies?ModalitiesInStudy=CT")
    assert uids(found, STUDY_UID) == {s.study_uid for s in samples if s.modality == "CT"}
    mixed = first(samples, accession="ACC3001")
    row = next(r for r in found if value(r, STUDY_UID) == mixed.study_uid)
    assert sorted(values(row, MODALITIES_IN_STUDY)) == ["CT", "MR"]


# -- levels ----------------------------------------------------------------------------------------
def test_every_resource(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, accession="ACC1002")
    in_study = [x for x in samples if x.study_uid == s.study_uid]
    in_series = [x for x in samples if x.series_uid == s.series_uid]
    assert uids(_get(http, "/series?PatientID=SYN0001"), SERIES_UID) == {
        x.series_uid for x in samples if x.patient_id == "SYN0001"
    }
    assert uids(_get(http, f"/studies/{s.study_uid}/series"), SERIES_UID) == {
        x.series_uid for x in in_study
    }
    assert uids(_get(http, f"/studies/{s.study_uid}/instances"), SOP_UID) == {
        x.sop_uid for x in in_study
    }
    series_instances = _get(http, f"/studies/{s.study_uid}/series/{s.series_uid}/instances")
    assert uids(series_instances, SOP_UID) == {x.sop_uid for x in in_series}
    # Instance results carry their parents' UIDs (PS3.18 10.6.3.3).
    assert uids(series_instances, SERIES_UID) == {s.series_uid}
    assert uids(series_instances, STUDY_UID) == {s.study_uid}
    everywhere = _get(http, "/instances?Modality=MR&PatientID=SYN0001")
    assert uids(everywhere, SOP_UID) == {
        x.sop_uid for x in samples if x.modality == "MR" and x.patient_id == "SYN0001"
    }
    assert all(value(r, PATIENT_ID) == "SYN0001" for r in everywhere)


def test_unknown_study_in_path_gives_no_results(http: httpx.Client) -> None:
    assert _get(http, "/studies/1.2.3.4.5.6.7/series") == []


# -- errors ----------------------------------------------------------------------------------------
def test_unknown_attribute_is_400_naming_it(http: httpx.Client) -> None:
    response = http.get("/studies?PatientID=SYN0001&NoSuchAttribute=1&0011ZZZZ=2")
    assert response.status_code == 400
    assert "NoSuchAttribute" in response.text
    assert "0011ZZZZ" in response.text


def test_series_key_at_study_level_is_400(http: httpx.Client) -> None:
    response = http.get("/studies?SOPInstanceUID=1.2.3")
    assert response.status_code == 400
    assert "SOPInstanceUID" in response.text


def test_wildcard_in_uid_is_400(http: httpx.Client) -> None:
    assert http.get("/studies?StudyInstanceUID=1.2.*").status_code == 400


def test_lower_case_tag_form(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, accession="ACC2002")
    found = _get(http, f"/studies?0020000d={s.study_uid}")
    assert uids(found, STUDY_UID) == {s.study_uid}


def test_plus_and_percent_20_are_spaces(http: httpx.Client, samples: list[Sample]) -> None:
    expected = _studies(samples, accession="ACC1002")
    assert uids(_get(http, "/studies?StudyDescription=MR+BRAIN"), STUDY_UID) == expected
    assert uids(_get(http, "/studies?StudyDescription=MR%20BRAIN"), STUDY_UID) == expected


def test_empty_value_is_universal_matching_and_returned(
    http: httpx.Client, samples: list[Sample]
) -> None:
    found = _get(http, "/studies?AccessionNumber=")
    assert uids(found, STUDY_UID) == _studies(samples)
    assert all("00080050" in r for r in found)


def test_fuzzy_wildcard_is_case_insensitive(http: httpx.Client, samples: list[Sample]) -> None:
    found = _get(http, "/studies?PatientName=smi*&fuzzymatching=true")
    assert uids(found, STUDY_UID) == _studies(samples, patient_id="SYNSMI")
    assert _get(http, "/studies?PatientName=smi*") == []


def test_study_time_range(http: httpx.Client, samples: list[Sample]) -> None:
    assert uids(_get(http, "/studies?StudyTime=110000-130000"), STUDY_UID) == _studies(samples)
    assert _get(http, "/studies?StudyTime=130000-") == []

"""The worklist form → QIDO-RS parameters and the index order, DICOM JSON → rows."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from dicomvault.dicom.attributes import Level
from dicomvault.index.search import StudyOrder, StudySortKey
from dicomvault.query.qido import parse_qido_request
from dicomvault.web.worklist import (
    SORT_KEYS,
    WorklistForm,
    parse_form,
    person_name,
    study_row,
)


def test_fields_become_matching_keys_the_qido_parser_accepts() -> None:
    form, problems = parse_form(
        {
            "PatientID": " SYN0001 ",
            "PatientName": "synth",
            "ModalitiesInStudy": "ct",
            "StudyDateFrom": "2023-01-01",
            "StudyDateTo": "2023-12-31",
            "AccessionNumber": "ACC*",
            "StudyDescription": "CHEST",
        }
    )
    assert problems == []
    params = dict(form.qido_parameters())
    assert params["PatientID"] == "SYN0001"
    assert params["PatientName"] == "synth" and params["fuzzymatching"] == "true"
    assert params["ModalitiesInStudy"] == "CT"
    assert params["StudyDate"] == "20230101-20231231"
    assert params["AccessionNumber"] == "ACC*"
    assert params["StudyDescription"] == "*CHEST*"
    query = parse_qido_request(Level.STUDY, form.qido_parameters())
    assert {m.attribute.keyword for m in query.conditions} == {
        "PatientID",
        "PatientName",
        "ModalitiesInStudy",
        "StudyDate",
        "AccessionNumber",
        "StudyDescription",
    }


def test_open_ended_date_ranges() -> None:
    form, _ = parse_form({"StudyDateFrom": "2024-03-01"})
    assert dict(form.qido_parameters())["StudyDate"] == "20240301-"
    form, _ = parse_form({"StudyDateTo": "20240301"})
    assert dict(form.qido_parameters())["StudyDate"] == "-20240301"


def test_description_wildcards_are_kept() -> None:
    form, _ = parse_form({"StudyDescription": "MR?BRAIN"})
    assert dict(form.qido_parameters())["StudyDescription"] == "MR?BRAIN"


@pytest.mark.parametrize(
    "params",
    [
        {"StudyDateFrom": "2024-13"},
        {"StudyDateFrom": "2024-05-01", "StudyDateTo": "2024-04-01"},
        {"sort": "password"},
        {"dir": "sideways"},
        {"limit": "7"},
        {"limit": "-1"},
        {"offset": "x"},
        {"PatientID": "X" * 65},
    ],
)
def test_bad_input_is_reported_not_run(params: dict[str, str]) -> None:
    _, problems = parse_form(params)
    assert problems


def test_query_string_round_trips_and_drops_defaults() -> None:
    form, _ = parse_form({"PatientName": "A B", "sort": "name", "dir": "asc", "offset": "25"})
    again, problems = parse_form(dict(parse_qsl(form.query_string())))
    assert problems == [] and again == form
    assert WorklistForm().query_string() == ""


def test_sort_links_flip_the_current_column_and_reset_the_page() -> None:
    form = WorklistForm(sort="name", descending=False, offset=50)
    assert dict(parse_qsl(form.sort_link("name"))) == {"sort": "name", "dir": "desc"}
    assert dict(parse_qsl(form.sort_link("date"))) == {"sort": "date", "dir": "desc"}
    assert form.aria_sort("name") == "ascending" and form.aria_sort("date") == "none"


def _doc(name: str, date: str = "", **extra: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]} if name else {"vr": "PN"},
        "00080020": {"vr": "DA", "Value": [date]} if date else {"vr": "DA"},
        "00080061": {"vr": "CS", "Value": ["CT", "MR"]},
        "00201206": {"vr": "IS", "Value": [2]},
        "00201208": {"vr": "IS", "Value": [5]},
    }
    doc.update(extra)
    return doc


def test_rows_from_dicom_json() -> None:
    row = study_row(_doc("DOE^JANE^Q", "20240102"))
    assert row.patient_name == "DOE, JANE Q"
    assert row.study_date == "2024-01-02"
    assert row.modalities == "CT, MR"
    assert (row.series_count, row.instance_count) == (2, 5)
    assert study_row(_doc("")).patient_name == ""


def test_names_are_not_escaped_here_but_kept_verbatim() -> None:
    # Escaping is the template's job (autoescape); the value itself must survive intact.
    doc = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "<script>x</script>"}]}}
    assert person_name(doc, "00100010") == "<script>x</script>"


def test_the_sort_column_becomes_the_index_order() -> None:
    form, problems = parse_form({"sort": "name", "dir": "asc"})
    assert not problems
    assert form.order == StudyOrder(StudySortKey.PATIENT_NAME, descending=False)
    assert parse_form({})[0].order == StudyOrder(StudySortKey.RECEIVED, descending=True)
    for key in SORT_KEYS:
        assert parse_form({"sort": key})[0].order.key == key

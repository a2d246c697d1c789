"""The DICOMweb requests OHIF Viewer 3.13 makes, replayed byte for byte against the real server.

Recorded from the bundled viewer (tests/browser/test_viewer.py drives it): the study list query
with its fixed ``limit=101&offset=0&fuzzymatching=true&includefield=…`` and ``*value*``
wildcards (PatientID sent as ``00100020``), the series query with includefield, lazy series-level
and study-level metadata, frames with the unquoted ``multipart/related;
type=application/octet-stream; transfer-syntax=*`` Accept (``omitQuotationForMultipartRequest``),
BulkDataURIs, thumbnails, the thumbnail fallback QIDO, and dicomweb-client's STOW with a quoted
boundary. Each test checks what OHIF reads from the answer, not only the status.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from dicomvault.testing.synthetic import make_ct_512
from tests.integration.support_data import (
    Archive,
    multipart_body,
    parse_multipart,
    running_archive,
    uids,
    value,
    values,
)

# mapParams() of OHIF's DicomWebDataSource: the fields every study-list query includes.
STUDY_LIST = {
    "limit": "101",
    "offset": "0",
    "fuzzymatching": "true",
    "includefield": "00081030,00080060,00080090,00100030",
}
SERIES_FIELDS = "00080021,00080031,0008103E,00200011"
FRAMES_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
FRAMES_ACCEPT_QUOTED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
DICOM_JSON = "application/dicom+json"
SIZE = 128  # 128 x 128 slices keep the module fast; OHIF does not care


@dataclass(frozen=True)
class Study:
    study_uid: str
    series_uid: str
    sop_uids: list[str]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    with running_archive(tmp_path_factory.mktemp("ohif") / "data") as signed_in:
        yield signed_in


@pytest.fixture(scope="module")
def http(archive: Archive) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=archive.dicomweb, headers={**archive.auth, "Accept": DICOM_JSON}, timeout=60
    ) as client:
        yield client


@pytest.fixture(scope="module")
def study(http: httpx.Client) -> Study:
    study_uid, series_uid = generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(3)]
    parts = [
        make_ct_512(
            rows=SIZE,
            columns=SIZE,
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=sop,
            instance_number=n,
            patient_id="SYNOHIF042",
            patient_name="SYNTH^OHIFPATIENT",
            accession="ACCOHIF7",
            study_description="OHIF REPLAY STUDY",
            study_date="20240115",
        )
        for n, sop in enumerate(sops, start=1)
    ]
    body, boundary = multipart_body(parts)
    # dicomweb-client's storeInstances: type and boundary both quoted.
    stored = http.post(
        "/studies",
        content=body,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary="{boundary}"'
        },
    )
    assert stored.status_code == 200, stored.text
    return Study(study_uid, series_uid, sops)


def study_list(http: httpx.Client, **filters: str) -> list[dict[str, Any]]:
    # OHIF puts the filters first, then its fixed parameters (the order it sends them in).
    response = http.get("/studies", params={**filters, **STUDY_LIST})
    assert response.status_code == 200, response.text
    return response.json() if response.content else []  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"00100020": "*OHIF04*"},
        {"PatientName": "*OHIFPAT*"},
        {"AccessionNumber": "*COHIF*"},
        {"StudyDescription": "*REPLAY*"},
        {"ModalitiesInStudy": "CT"},
        # The modality filter with several modalities picked: a comma-separated list.
        {"ModalitiesInStudy": "CT,MR"},
        {"StudyDate": "20240101-20240131"},
        {"00100020": "*OHIF04*", "StudyDate": "19700102-20240131"},
    ],
    ids=lambda f: ",".join(f) or "no filter",
)
def test_study_list_query(http: httpx.Client, study: Study, filters: dict[str, str]) -> None:
    results = study_list(http, **filters)
    assert study.study_uid in uids(results, "0020000D")
    row = next(r for r in results if value(r, "0020000D") == study.study_uid)
    # The columns of OHIF's study list.
    assert value(row, "00100020") == "SYNOHIF042"
    assert value(row, "00081030") == "OHIF REPLAY STUDY"
    assert value(row, "00080050") == "ACCOHIF7"
    assert values(row, "00080061") == ["CT"]
    assert value(row, "00201208") == 3


@pytest.mark.parametrize(
    "filters", [{"00100020": "*NOBODY*"}, {"ModalitiesInStudy": "MR,US"}], ids=lambda f: str(f)
)
def test_study_list_query_misses_what_does_not_match(
    http: httpx.Client, study: Study, filters: dict[str, str]
) -> None:
    assert study.study_uid not in uids(study_list(http, **filters), "0020000D")


def test_study_query_by_uid_list(http: httpx.Client, study: Study) -> None:
    """OHIF's viewer route asks for its StudyInstanceUIDs (backslash-separated) first."""
    other = generate_uid()
    results = study_list(http, StudyInstanceUID=f"{study.study_uid}\\{other}")
    assert uids(results, "0020000D") == {study.study_uid}


def test_series_query_with_includefield(http: httpx.Client, study: Study) -> None:
    response = http.get(
        f"/studies/{study.study_uid}/series", params={"includefield": SERIES_FIELDS}
    )
    assert response.status_code == 200
    (series,) = response.json()
    assert value(series, "0020000E") == study.series_uid
    assert value(series, "00080060") == "CT"
    assert value(series, "00200011") == 1
    assert value(series, "00201209") == 3


@pytest.mark.parametrize("level", ["series", "study"])
def test_metadata(archive: Archive, http: httpx.Client, study: Study, level: str) -> None:
    """enableStudyLazyLoad asks per series; the non-lazy loader for the whole study."""
    path = f"/studies/{study.study_uid}"
    if level == "series":
        path += f"/series/{study.series_uid}"
    response = http.get(f"{path}/metadata")
    assert response.status_code == 200
    instances = response.json()
    assert sorted(value(i, "00080018") for i in instances) == sorted(study.sop_uids)
    for instance in instances:
        assert value(instance, "00280010") == SIZE and value(instance, "00280011") == SIZE
        assert values(instance, "00200032") and values(instance, "00200037")
        pixel_data = instance.get("7FE00010", {})
        assert "Value" not in pixel_data and "InlineBinary" not in pixel_data
        if "BulkDataURI" in pixel_data:
            assert pixel_data["BulkDataURI"].startswith(archive.server.base_url + "/dicom-web/")


@pytest.mark.parametrize("accept", [FRAMES_ACCEPT, FRAMES_ACCEPT_QUOTED])
def test_frames(http: httpx.Client, study: Study, accept: str) -> None:
    """Cornerstone's WADO-RS image loader: frame 1, native pixels, any transfer syntax."""
    url = f"/studies/{study.study_uid}/series/{study.series_uid}/instances/{study.sop_uids[0]}"
    response = http.get(f"{url}/frames/1", headers={"Accept": accept})
    assert response.status_code == 200, response.text
    assert 'type="application/octet-stream"' in response.headers["content-type"]
    (part,) = parse_multipart(response)
    assert part.headers["content-type"].startswith("application/octet-stream")
    assert len(part.content) == SIZE * SIZE * 2


def test_bulk_data_uri(archive: Archive, http: httpx.Client, study: Study) -> None:
    """dicomweb-client's retrieveBulkData (multipart, octet-stream) on a BulkDataURI."""
    response = http.get(f"/studies/{study.study_uid}/series/{study.series_uid}/metadata")
    uris = [
        element["BulkDataURI"]
        for instance in response.json()
        for element in instance.values()
        if isinstance(element, dict) and "BulkDataURI" in element
    ]
    assert uris, "no BulkDataURI in the series metadata"
    bulk = httpx.get(
        uris[0],
        headers={**archive.auth, "Accept": 'multipart/related; type="application/octet-stream"'},
        timeout=60,
    )
    assert bulk.status_code == 200
    assert parse_multipart(bulk)[0].content


@pytest.mark.parametrize("level", ["instance", "series"])
def test_thumbnail(http: httpx.Client, study: Study, level: str) -> None:
    """thumbnailRendering 'thumbnail' with the fetch strategy."""
    path = f"/studies/{study.study_uid}/series/{study.series_uid}"
    if level == "instance":
        path += f"/instances/{study.sop_uids[0]}"
    response = http.get(
        f"{path}/thumbnail", params={"viewport": "256,256"}, headers={"Accept": "image/jpeg"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content[:2] == b"\xff\xd8"


def test_thumbnail_fallback_instance_query(http: httpx.Client, study: Study) -> None:
    response = http.get(
        f"/studies/{study.study_uid}/series/{study.series_uid}/instances",
        params={"limit": "1", "includefield": "00080018"},
    )
    assert response.status_code == 200
    (instance,) = response.json()
    assert value(instance, "00080018") in study.sop_uids

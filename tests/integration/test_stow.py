"""STOW-RS (PS3.18 10.5) over raw HTTP: bodies, statuses and the Store Instances Response.

Every request is written by hand, so the multipart framing and media-type parameters are
exactly the variants real clients send. After each request the index and the blob directory are
checked: what the response says was stored must be there, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.support_data import (
    DICOM_JSON,
    FAILED_SOP_SEQUENCE,
    REASON_DUPLICATE_DIFFERENT,
    REASON_STUDY_MISMATCH,
    REFERENCED_SOP_SEQUENCE,
    RETRIEVE_URL,
    SOP_UID,
    Archive,
    failure_reasons,
    fresh_ct,
    multipart_body,
    new_uid,
    referenced_sops,
    running_archive,
    sample_from_bytes,
    stow,
    stow_content_type,
    uids,
    value,
    values,
    with_preamble,
)
from tests.support.server import LiveServer

PE_PREAMBLE = b"MZ\x90\x00\x03" + bytes(range(1, 124))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    with running_archive(tmp_path_factory.mktemp("stow") / "data") as signed_in:
        yield signed_in


@pytest.fixture(scope="module")
def server(archive: Archive) -> LiveServer:
    return archive.server


@pytest.fixture(scope="module")
def http(archive: Archive) -> Iterator[httpx.Client]:
    with archive.http() as c:
        yield c


def _post(http: httpx.Client, parts: list[bytes], **kwargs: Any) -> httpx.Response:
    return stow(http, str(http.base_url).rstrip("/"), parts, **kwargs)


def _json(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == DICOM_JSON, response.headers
    body: dict[str, Any] = response.json()
    return body


def _instances_of(http: httpx.Client, study_uid: str) -> list[str]:
    response = http.get(f"/studies/{study_uid}/instances")
    assert response.status_code == 200
    return [value(r, SOP_UID) for r in response.json()]


def _retrieve(http: httpx.Client, data: bytes) -> bytes:
    s = sample_from_bytes("x", data)
    response = http.get(
        f"/studies/{s.study_uid}/series/{s.series_uid}/instances/{s.sop_uid}",
        headers={"Accept": "application/dicom"},
    )
    assert response.status_code == 200
    return response.content


def _no_spool_left(server: LiveServer) -> None:
    assert server.spool_files() == []


# -- successful stores ----------------------------------------------------------------------------
@pytest.mark.parametrize("quoted", [True, False])
def test_one_part(http: httpx.Client, server: LiveServer, quoted: bool) -> None:
    data = fresh_ct()
    s = sample_from_bytes("one", data)
    response = _post(http, [data], quoted=quoted)
    assert response.status_code == 200, response.text
    body = _json(response)
    assert FAILED_SOP_SEQUENCE not in body
    assert referenced_sops(body) == [s.sop_uid]
    assert value(body, RETRIEVE_URL) == f"{server.dicomweb}/studies/{s.study_uid}"
    [item] = values(body, REFERENCED_SOP_SEQUENCE)
    assert value(item, RETRIEVE_URL) == (
        f"{server.dicomweb}/studies/{s.study_uid}/series/{s.series_uid}/instances/{s.sop_uid}"
    )
    assert _retrieve(http, data) == data
    _no_spool_left(server)


def test_twenty_parts(http: httpx.Client, server: LiveServer) -> None:
    study, series = new_uid(), new_uid()
    parts = [fresh_ct(study_uid=study, series_uid=series, instance_number=i) for i in range(20)]
    blobs_before = len(server.blob_files())
    response = _post(http, parts)
    assert response.status_code == 200, response.text
    expected = {sample_from_bytes("p", p).sop_uid for p in parts}
    assert set(referenced_sops(_json(response))) == expected
    assert set(_instances_of(http, study)) == expected
    assert len(server.blob_files()) == blobs_before + 20
    _no_spool_left(server)


def test_single_application_dicom_body(http: httpx.Client) -> None:
    data = fresh_ct()
    response = http.post("/studies", content=data, headers={"Content-Type": "application/dicom"})
    assert response.status_code == 200, response.text
    assert referenced_sops(_json(response)) == [sample_from_bytes("s", data).sop_uid]
    assert _retrieve(http, data) == data


def test_into_matching_study(http: httpx.Client) -> None:
    study = new_uid()
    data = fresh_ct(study_uid=study)
    response = _post(http, [data], study_uid=study)
    assert response.status_code == 200, response.text
    assert value(_json(response), RETRIEVE_URL).endswith(f"/studies/{study}")
    assert _instances_of(http, study) == [sample_from_bytes("m", data).sop_uid]


# -- failures --------------------------------------------------------------------------------------
def test_into_mismatching_study_is_409(http: httpx.Client, server: LiveServer) -> None:
    url_study = new_uid()
    data = fresh_ct()
    s = sample_from_bytes("mismatch", data)
    blobs_before = server.blob_files()
    response = _post(http, [data], study_uid=url_study)
    assert response.status_code == 409, response.text
    body = _json(response)
    assert failure_reasons(body) == [REASON_STUDY_MISMATCH] == [50185]
    [failed] = values(body, FAILED_SOP_SEQUENCE)
    assert value(failed, "00081155") == s.sop_uid
    assert REFERENCED_SOP_SEQUENCE not in body
    assert http.get(f"/instances?SOPInstanceUID={s.sop_uid}").json() == []
    assert server.blob_files() == blobs_before
    _no_spool_left(server)


def test_good_and_bad_parts_is_202(http: httpx.Client, server: LiveServer) -> None:
    study = new_uid()
    good = [fresh_ct(study_uid=study, instance_number=i) for i in range(2)]
    wrong_study = fresh_ct()
    not_dicom = b"this is not a DICOM file" * 10
    truncated = fresh_ct(study_uid=study)[:400]
    response = _post(http, [good[0], not_dicom, wrong_study, good[1], truncated], study_uid=study)
    assert response.status_code == 202, response.text
    body = _json(response)
    good_sops = {sample_from_bytes("g", g).sop_uid for g in good}
    assert set(referenced_sops(body)) == good_sops
    reasons = failure_reasons(body)
    assert len(reasons) == 3
    assert REASON_STUDY_MISMATCH in reasons
    assert all(r != 0 for r in reasons)
    assert set(_instances_of(http, study)) == good_sops
    wrong = sample_from_bytes("w", wrong_study)
    assert http.get(f"/instances?SOPInstanceUID={wrong.sop_uid}").json() == []
    _no_spool_left(server)


def test_identical_resend_is_idempotent(http: httpx.Client, server: LiveServer) -> None:
    study = new_uid()
    data = fresh_ct(study_uid=study)
    assert _post(http, [data]).status_code == 200
    blobs = server.blob_files()
    again = _post(http, [data])
    assert again.status_code == 200, again.text
    assert referenced_sops(_json(again)) == [sample_from_bytes("i", data).sop_uid]
    assert FAILED_SOP_SEQUENCE not in _json(again)
    assert len(_instances_of(http, study)) == 1
    assert server.blob_files() == blobs
    assert _retrieve(http, data) == data


def test_different_bytes_under_same_sop_uid_are_refused(
    http: httpx.Client, server: LiveServer
) -> None:
    study, series, sop = new_uid(), new_uid(), new_uid()
    original = fresh_ct(study_uid=study, series_uid=series, sop_uid=sop, seed=1)
    changed = fresh_ct(study_uid=study, series_uid=series, sop_uid=sop, seed=2)
    assert original != changed
    assert _post(http, [original]).status_code == 200
    blobs = server.blob_files()
    response = _post(http, [changed])
    assert response.status_code == 409, response.text
    body = _json(response)
    assert failure_reasons(body) == [REASON_DUPLICATE_DIFFERENT] == [273]
    assert _retrieve(http, original) == original
    assert _instances_of(http, study) == [sop]
    assert server.blob_files() == blobs
    _no_spool_left(server)


def test_non_zero_preamble_is_zeroed(http: httpx.Client) -> None:
    data = fresh_ct()
    polyglot = with_preamble(data, PE_PREAMBLE)
    response = _post(http, [polyglot])
    assert response.status_code == 202, "stored with a warning (PS3.18 10.5.3.1)"
    (item,) = response.json()["00081199"]["Value"]
    assert item["00081196"] == {"vr": "US", "Value": [0xB000]}, "coercion must be reported"
    stored = _retrieve(http, data)
    assert stored[:128] == bytes(128)
    assert stored[128:] == polyglot[128:]
    assert stored == data


def test_standard_preamble_gives_no_warning(http: httpx.Client) -> None:
    response = _post(http, [fresh_ct()])
    assert response.status_code == 200, response.text
    (item,) = response.json()["00081199"]["Value"]
    assert "00081196" not in item


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/json",
        'multipart/related; type="application/pdf"; boundary=xyz',
    ],
)
def test_wrong_media_type_is_415(http: httpx.Client, server: LiveServer, content_type: str) -> None:
    body, _ = multipart_body([fresh_ct()], boundary="xyz")
    response = http.post("/studies", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 415, response.text
    _no_spool_left(server)


def test_missing_boundary_is_400(http: httpx.Client, server: LiveServer) -> None:
    body, _ = multipart_body([fresh_ct()])
    response = http.post(
        "/studies",
        content=body,
        headers={"Content-Type": 'multipart/related; type="application/dicom"'},
    )
    assert response.status_code == 400, response.text
    _no_spool_left(server)


def test_unquoted_type_with_extra_parameters(http: httpx.Client) -> None:
    study = new_uid()
    data = fresh_ct(study_uid=study)
    body, boundary = multipart_body([data])
    content_type = f"multipart/related;type=application/dicom;boundary={boundary};start=x"
    assert content_type != stow_content_type(boundary, quoted=False)
    response = http.post("/studies", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    assert uids(http.get(f"/studies/{study}/instances").json(), SOP_UID) == {
        sample_from_bytes("u", data).sop_uid
    }


def test_quoted_boundary(http: httpx.Client) -> None:
    data = fresh_ct()
    body, boundary = multipart_body([data])
    content_type = f'multipart/related; type="application/dicom"; boundary="{boundary}"'
    response = http.post("/studies", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    assert referenced_sops(_json(response)) == [sample_from_bytes("q", data).sop_uid]


def test_part_content_type_may_carry_transfer_syntax(http: httpx.Client) -> None:
    data = fresh_ct()
    body, boundary = multipart_body(
        [data], part_type="application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    )
    response = http.post(
        "/studies", content=body, headers={"Content-Type": stow_content_type(boundary)}
    )
    assert response.status_code == 200, response.text

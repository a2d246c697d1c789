"""WADO-RS (PS3.18 10.4) over raw HTTP: Accept negotiation, 404/406, frames, bulk data URIs.

The module's server is configured with a public base URL that differs from the address it
listens on, so every absolute URL in a response can be checked to come from configuration and
never from the Host header (PS3.18 8.6.2 lets a proxy sit in front; the Host may lack the port).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from dicomvault.testing.synthetic import make_ct_512
from tests.integration.support_data import (
    DICOM_JSON,
    EXPLICIT_VR_LE,
    JPEG_2000,
    JPEG_BASELINE,
    PIXEL_DATA,
    RETRIEVE_URL,
    Archive,
    Sample,
    ct_with_bulk_elements,
    encapsulated_frame,
    first,
    fresh_ct,
    native_frame,
    new_uid,
    parse_multipart,
    read_dataset,
    referenced_sops,
    running_archive,
    sample_from_bytes,
    sample_set,
    stow,
    value,
)

PUBLIC_BASE = "https://pacs.example.org"
PUBLIC_DICOMWEB = f"{PUBLIC_BASE}/dicom-web"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    """This module's own server, reachable at 127.0.0.1 but configured as ``PUBLIC_BASE``."""
    data = tmp_path_factory.mktemp("wado") / "data"
    with running_archive(data, env={"DICOMVAULT_PUBLIC_BASE_URL": PUBLIC_BASE}) as signed_in:
        yield signed_in


@pytest.fixture(scope="module")
def samples(archive: Archive) -> list[Sample]:
    stored = sample_set(seed=303)
    with archive.http() as c:
        response = stow(c, archive.dicomweb, [s.data for s in stored])
    assert response.status_code == 200, response.text
    assert set(referenced_sops(response.json())) == {s.sop_uid for s in stored}
    return stored


@pytest.fixture(scope="module")
def http(archive: Archive, samples: list[Sample]) -> Iterator[httpx.Client]:
    with archive.http() as c:
        yield c


def _instance_path(s: Sample) -> str:
    return f"/studies/{s.study_uid}/series/{s.series_uid}/instances/{s.sop_uid}"


def _study_members(samples: list[Sample], study_uid: str) -> dict[str, bytes]:
    return {s.sop_uid: s.data for s in samples if s.study_uid == study_uid}


def _sop_of(part: bytes) -> str:
    return str(read_dataset(part).SOPInstanceUID)


# -- Accept negotiation for instances --------------------------------------------------------------
@pytest.mark.parametrize(
    "accept",
    [
        None,
        "*/*",
        "multipart/related; type=application/dicom",
        'multipart/related; type="application/dicom"',
        'multipart/related; type="application/dicom"; transfer-syntax=*',
        "multipart/related; type=application/dicom; transfer-syntax=*",
        'multipart/related;type="application/dicom";transfer-syntax="*"',
        "application/pdf;q=0.5, multipart/related; type=application/dicom",
    ],
)
def test_study_retrieval_accept_variants(
    http: httpx.Client, samples: list[Sample], accept: str | None
) -> None:
    s = first(samples, accession="ACC2001")  # JPEG baseline + RLE, sent as stored
    headers = {} if accept is None else {"Accept": accept}
    response = http.get(f"/studies/{s.study_uid}", headers=headers)
    assert response.status_code == 200, response.text
    media = response.headers["content-type"].lower()
    assert media.startswith("multipart/related") and "application/dicom" in media
    parts = parse_multipart(response)
    assert {_sop_of(p.content): p.content for p in parts} == _study_members(samples, s.study_uid)
    assert all(p.headers["content-type"].startswith("application/dicom") for p in parts)


def test_single_instance_as_application_dicom(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, transfer_syntax=JPEG_2000)
    response = http.get(_instance_path(s), headers={"Accept": "application/dicom"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom")
    assert response.content == s.data


def test_series_retrieval(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, accession="ACC1001")
    response = http.get(f"/studies/{s.study_uid}/series/{s.series_uid}")
    assert response.status_code == 200
    parts = parse_multipart(response)
    assert {_sop_of(p.content): p.content for p in parts} == {
        x.sop_uid: x.data for x in samples if x.series_uid == s.series_uid
    }


def test_transcode_to_explicit_little_endian(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, transfer_syntax=JPEG_2000)
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_VR_LE}'
    response = http.get(_instance_path(s), headers={"Accept": accept})
    assert response.status_code == 200, response.text
    [part] = parse_multipart(response)
    ds = read_dataset(part.content)
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_VR_LE
    assert np.array_equal(ds.pixel_array, s.dataset.pixel_array)


@pytest.mark.parametrize(
    "accept",
    [
        "application/pdf",
        "image/png",
        'multipart/related; type="application/pdf"',
        f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_BASELINE}',
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.3.4.5',
    ],
)
def test_unservable_accept_is_406(http: httpx.Client, samples: list[Sample], accept: str) -> None:
    s = first(samples, accession="ACC1001")  # native CT: cannot be produced as JPEG
    response = http.get(f"/studies/{s.study_uid}", headers={"Accept": accept})
    assert response.status_code == 406, (accept, response.status_code)


def test_metadata_accept(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, accession="ACC1001")
    for accept in (None, DICOM_JSON, "application/json", "*/*"):
        headers = {} if accept is None else {"Accept": accept}
        response = http.get(f"/studies/{s.study_uid}/metadata", headers=headers)
        assert response.status_code == 200, accept
        assert response.headers["content-type"] == DICOM_JSON
    response = http.get(f"/studies/{s.study_uid}/metadata", headers={"Accept": "application/pdf"})
    assert response.status_code == 406


# -- 404 -------------------------------------------------------------------------------------------
def test_unknown_uids_are_404_at_every_level(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, accession="ACC1001")
    unknown = new_uid()
    paths = [
        f"/studies/{unknown}",
        f"/studies/{unknown}/metadata",
        f"/studies/{s.study_uid}/series/{unknown}",
        f"/studies/{s.study_uid}/series/{unknown}/metadata",
        f"/studies/{s.study_uid}/series/{s.series_uid}/instances/{unknown}",
        f"/studies/{s.study_uid}/series/{s.series_uid}/instances/{unknown}/metadata",
        f"/studies/{s.study_uid}/series/{s.series_uid}/instances/{unknown}/frames/1",
        f"/studies/{unknown}/series/{s.series_uid}/instances/{s.sop_uid}",
        f"/studies/{unknown}/series/{s.series_uid}/instances/{s.sop_uid}/frames/1",
    ]
    for path in paths:
        assert http.get(path).status_code == 404, path


# -- frames ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("frame_list", ["1,2", "1%2C2", "2,3", "3,1", "1,2,3"])
def test_native_multiframe_frames(
    http: httpx.Client, samples: list[Sample], frame_list: str
) -> None:
    s = first(samples, label="native-multiframe")
    response = http.get(
        f"{_instance_path(s)}/frames/{frame_list}",
        headers={"Accept": 'multipart/related; type="application/octet-stream"'},
    )
    assert response.status_code == 200, response.text
    assert 'type="application/octet-stream"' in response.headers["content-type"]
    numbers = [int(n) for n in frame_list.replace("%2C", ",").split(",")]
    parts = parse_multipart(response)
    assert [p.content for p in parts] == [native_frame(s.data, n) for n in numbers]
    assert all(p.headers["content-type"].startswith("application/octet-stream") for p in parts)


@pytest.mark.parametrize("accept", [None, "*/*", "application/octet-stream"])
def test_native_frame_accept_variants(
    http: httpx.Client, samples: list[Sample], accept: str | None
) -> None:
    s = first(samples, label="native-multiframe")
    headers = {} if accept is None else {"Accept": accept}
    response = http.get(f"{_instance_path(s)}/frames/2", headers=headers)
    assert response.status_code == 200, (accept, response.text)
    assert [p.content for p in parse_multipart(response)] == [native_frame(s.data, 2)]


def test_encapsulated_frame_as_stored(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, transfer_syntax=JPEG_2000)
    response = http.get(
        f"{_instance_path(s)}/frames/1",
        headers={"Accept": f'multipart/related; type="image/jp2"; transfer-syntax={JPEG_2000}'},
    )
    assert response.status_code == 200, response.text
    [part] = parse_multipart(response)
    assert part.headers["content-type"].startswith("image/jp2")
    assert part.content == encapsulated_frame(s.data, 1)


def test_encapsulated_frame_decoded_for_octet_stream(
    http: httpx.Client, samples: list[Sample]
) -> None:
    s = first(samples, transfer_syntax=JPEG_2000)
    response = http.get(
        f"{_instance_path(s)}/frames/1",
        headers={"Accept": 'multipart/related; type="application/octet-stream"'},
    )
    assert response.status_code == 200, response.text
    [part] = parse_multipart(response)
    expected = s.dataset.pixel_array
    assert part.content == expected.astype(expected.dtype.newbyteorder("<")).tobytes()


def test_frame_out_of_range_is_404(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, label="native-multiframe")
    assert s.number_of_frames == 3
    assert http.get(f"{_instance_path(s)}/frames/4").status_code == 404
    assert http.get(f"{_instance_path(s)}/frames/1,4").status_code == 404
    single = first(samples, accession="ACC1001")
    assert http.get(f"{_instance_path(single)}/frames/2").status_code == 404


def test_malformed_frame_list_is_400(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, label="native-multiframe")
    assert http.get(f"{_instance_path(s)}/frames/one").status_code == 400


def test_frames_in_unavailable_syntax_are_406(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, label="native-multiframe")
    accept = f'multipart/related; type="image/jpeg"; transfer-syntax={JPEG_BASELINE}'
    response = http.get(f"{_instance_path(s)}/frames/1", headers={"Accept": accept})
    assert response.status_code == 406
    response = http.get(f"{_instance_path(s)}/frames/1", headers={"Accept": "application/pdf"})
    assert response.status_code == 406


# -- URLs from configuration, never from the Host header -------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Host": "pacs.example.org"},
        {"Host": "127.0.0.1"},
        {"Host": "evil.example.com:4443"},
        {"X-Forwarded-Host": "evil.example.com", "X-Forwarded-Proto": "http"},
        {"Forwarded": "host=evil.example.com;proto=http"},
    ],
)
def test_bulkdata_uris_use_the_configured_base(
    http: httpx.Client, samples: list[Sample], headers: dict[str, str]
) -> None:
    s = first(samples, label="native-multiframe")
    for path in (
        f"/studies/{s.study_uid}/metadata",
        f"/studies/{s.study_uid}/series/{s.series_uid}/metadata",
        f"{_instance_path(s)}/metadata",
    ):
        response = http.get(path, headers=headers)
        assert response.status_code == 200
        [metadata] = response.json()
        uri = metadata[PIXEL_DATA]["BulkDataURI"]
        assert uri.startswith(f"{PUBLIC_DICOMWEB}{_instance_path(s)}/"), uri
    found = http.get(f"/studies?StudyInstanceUID={s.study_uid}", headers=headers).json()
    assert value(found[0], RETRIEVE_URL) == f"{PUBLIC_DICOMWEB}/studies/{s.study_uid}"


def test_bulkdata_uri_resolves(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, label="native-multiframe")
    [metadata] = http.get(f"{_instance_path(s)}/metadata").json()
    uri: str = metadata[PIXEL_DATA]["BulkDataURI"]
    response = http.get(uri.removeprefix(PUBLIC_DICOMWEB))
    assert response.status_code == 200, response.text
    joined = b"".join(p.content for p in parse_multipart(response))
    assert joined == s.dataset.PixelData


def test_stow_retrieve_urls_use_the_configured_base(
    archive: Archive, samples: list[Sample]
) -> None:
    s = first(samples, accession="ACC1001")
    with archive.http() as c:
        response = stow(c, archive.dicomweb, [s.data], study_uid=s.study_uid)
    assert response.status_code == 200
    assert value(response.json(), RETRIEVE_URL) == f"{PUBLIC_DICOMWEB}/studies/{s.study_uid}"


@pytest.mark.parametrize(
    "accept",
    [
        # What OHIF Viewer v3 sends for frames by default.
        "multipart/related; type=application/octet-stream; transfer-syntax=*",
        'multipart/related; type="application/octet-stream"; transfer-syntax=*',
        'multipart/related; type="image/jp2"',
        "*/*",
        None,
    ],
)
def test_encapsulated_frame_as_stored_accept_variants(
    http: httpx.Client, samples: list[Sample], accept: str | None
) -> None:
    s = first(samples, transfer_syntax=JPEG_2000)
    headers = {} if accept is None else {"Accept": accept}
    response = http.get(f"{_instance_path(s)}/frames/1", headers=headers)
    assert response.status_code == 200, (accept, response.text)
    [part] = parse_multipart(response)
    assert part.content == encapsulated_frame(s.data, 1)
    # The client must learn the syntax of what it got (PS3.18 8.7.3.5.3).
    assert f"transfer-syntax={JPEG_2000}" in part.headers["content-type"].replace('"', "")


def test_native_frames_unquoted_type(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, label="native-multiframe")
    response = http.get(
        f"{_instance_path(s)}/frames/1,3",
        headers={"Accept": "multipart/related; type=application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    assert [p.content for p in parse_multipart(response)] == [
        native_frame(s.data, 1),
        native_frame(s.data, 3),
    ]


def test_accept_with_quality_values(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, accession="ACC1001")
    accept = 'application/pdf; q=1.0, multipart/related; type="application/dicom"; q=0.5'
    response = http.get(f"/studies/{s.study_uid}/series/{s.series_uid}", headers={"Accept": accept})
    assert response.status_code == 200, response.text
    assert len(parse_multipart(response)) == 3


def test_bulk_values_outside_pixel_data(archive: Archive, http: httpx.Client) -> None:
    document = bytes(range(256)) * 12
    icon = bytes((i * 7) % 256 for i in range(64 * 64))
    data = ct_with_bulk_elements(document, icon)
    s = sample_from_bytes("bulk", data)
    assert stow(http, archive.dicomweb, [data]).status_code == 200
    [metadata] = http.get(f"{_instance_path(s)}/metadata").json()
    nested = metadata["00880200"]["Value"][0]
    for element, expected in ((metadata["00420011"], document), (nested[PIXEL_DATA], icon)):
        assert "Value" not in element and "InlineBinary" not in element
        uri: str = element["BulkDataURI"]
        assert uri.startswith(f"{PUBLIC_DICOMWEB}{_instance_path(s)}/")
        response = http.get(uri.removeprefix(PUBLIC_DICOMWEB))
        assert response.status_code == 200, (uri, response.text)
        assert [p.content for p in parse_multipart(response)] == [expected]
    # Small values stay inline.
    assert nested["00280010"] == {"vr": "US", "Value": [64]}


def test_unknown_bulkdata_path_is_404(http: httpx.Client, samples: list[Sample]) -> None:
    s = first(samples, accession="ACC1001")
    assert http.get(f"{_instance_path(s)}/bulkdata/00420011").status_code == 404


def _stored_copy(archive: Archive, data: bytes) -> tuple[str, str]:
    """``data`` stored again under fresh UIDs: (its instance path, its SOP Instance UID)."""
    ds = read_dataset(data)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = new_uid(), new_uid(), new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    with archive.http() as c:
        assert stow(c, archive.dicomweb, [out.getvalue()]).status_code == 200
    path = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    return f"{path}/instances/{ds.SOPInstanceUID}", str(ds.SOPInstanceUID)


def test_an_instance_whose_blob_is_gone_is_404_not_500(
    archive: Archive, samples: list[Sample]
) -> None:
    """A DELETE racing a retrieve, or a blob lost from the store: the index row is there, the
    bytes are not. Every read of them answers 404 (or, once a stream has begun, ends it), no
    local copy of the blob stays behind, and the server keeps serving."""
    native, native_sop = _stored_copy(archive, fresh_ct())
    compressed, compressed_sop = _stored_copy(
        archive, first(samples, transfer_syntax=JPEG_2000).data
    )
    for sop in (native_sop, compressed_sop):
        [blob] = [p for p in archive.server.blob_files() if sop in p.parts]
        blob.unlink()
    multipart = 'multipart/related; type="application/dicom"'
    octets = 'multipart/related; type="application/octet-stream"'
    transcoded = f"{multipart}; transfer-syntax={EXPLICIT_VR_LE}"
    with archive.http() as c:
        for path, accept, streamed in (
            (native, multipart, False),
            (f"{native}/frames/1", octets, False),
            (f"{native}/rendered", "image/jpeg", False),
            (f"{compressed}/frames/1", octets, False),  # decoded from a local copy
            (f"{compressed}/rendered", "image/jpeg", False),
            (compressed, transcoded, True),  # transcoded from a local copy, streamed
        ):
            try:
                response = c.get(path, headers={"Accept": accept})
            except httpx.RemoteProtocolError:
                assert streamed, path  # the status went before the read failed: body cut short
                continue
            assert response.status_code == 404, (path, response.status_code)
            assert compressed_sop not in response.text and native_sop not in response.text
        assert c.get(f"{native}/metadata").status_code == 200  # the index still has it
    assert archive.server.spool_files() == []  # no local copy left behind
    assert "no blob under key " in archive.server.log()  # traceable: which blob went missing
    assert compressed_sop in archive.server.log()


@pytest.mark.parametrize(
    ("rows", "whole"), [(64, True), (700, True), (760, False)], ids=["small", "under-1MiB", "over"]
)
def test_an_instance_up_to_1_mib_is_answered_whole_larger_ones_streamed(
    archive: Archive, rows: int, whole: bool
) -> None:
    """Up to 1 MiB an instance is one response with its Content-Length; beyond, chunked. The
    bytes and the multipart framing are the same either way."""
    study, series, sop = new_uid(), new_uid(), new_uid()
    data = make_ct_512(rows=rows, columns=rows, study_uid=study, series_uid=series, sop_uid=sop)
    assert (len(data) <= 1024 * 1024) is whole
    with archive.http() as c:
        assert stow(c, archive.dicomweb, [data]).status_code == 200
        path = f"/studies/{study}/series/{series}/instances/{sop}"
        for accept in ('multipart/related; type="application/dicom"', "application/dicom"):
            response = c.get(path, headers={"Accept": accept})
            assert response.status_code == 200
            if whole:
                assert response.headers["content-length"] == str(len(response.content))
                assert "transfer-encoding" not in response.headers
            else:
                assert response.headers.get("transfer-encoding") == "chunked"
            if accept == "application/dicom":
                assert response.content == data
            else:
                [part] = parse_multipart(response)
                assert part.content == data
                assert part.headers["content-type"] == "application/dicom"

"""The archive as an independent DICOMweb client sees it: dicomweb-client against the real server.

dicomweb-client (the reference Python client of PS3.18) writes its own STOW-RS bodies, Accept
headers and QIDO query strings and parses the multipart answers itself, so these tests prove the
server interoperates, not merely that it agrees with its own helpers.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from requests.exceptions import HTTPError

from dicomvault.testing.synthetic import make_instance
from tests.integration.support_data import (
    JPEG_2000,
    JPEG_BASELINE,
    MODALITIES_IN_STUDY,
    PIXEL_DATA,
    RLE_LOSSLESS,
    STUDY_RELATED_INSTANCES,
    STUDY_RELATED_SERIES,
    Archive,
    Sample,
    client_encoding,
    encapsulated_frame,
    encode,
    first,
    fresh_ct,
    native_frame,
    new_uid,
    read_dataset,
    running_archive,
    sample_from_bytes,
    sample_set,
    uids,
    value,
    values,
)
from tests.integration.support_data import (
    PATIENT_ID as PATIENT_ID_TAG,
)
from tests.integration.support_data import (
    SERIES_UID as SERIES_UID_TAG,
)
from tests.integration.support_data import (
    SOP_UID as SOP_UID_TAG,
)
from tests.integration.support_data import (
    STUDY_UID as STUDY_UID_TAG,
)
from tests.support.server import LiveServer


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return sample_set(seed=101)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    with running_archive(tmp_path_factory.mktemp("client") / "data") as signed_in:
        yield signed_in


@pytest.fixture(scope="module")
def server(archive: Archive) -> LiveServer:
    return archive.server


@pytest.fixture(scope="module")
def client(archive: Archive) -> DICOMwebClient:
    return archive.dicomweb_client()


@pytest.fixture(scope="module")
def http(archive: Archive) -> Iterator[httpx.Client]:
    with archive.http() as c:
        yield c


@pytest.fixture(scope="module")
def store_response(client: DICOMwebClient, samples: list[Sample]) -> Dataset:
    """All samples, in one STOW-RS request written by dicomweb-client."""
    response: Dataset = client.store_instances([s.dataset for s in samples])
    return response


def _studies(samples: list[Sample], **keys: str) -> set[str]:
    return {s.study_uid for s in samples if all(getattr(s, k) == v for k, v in keys.items())}


# -- STOW-RS ---------------------------------------------------------------------------------------
def test_store_instances_references_every_instance(
    store_response: Dataset, samples: list[Sample], server: LiveServer
) -> None:
    assert "FailedSOPSequence" not in store_response
    referenced = {
        str(item.ReferencedSOPInstanceUID) for item in store_response.ReferencedSOPSequence
    }
    assert referenced == {s.sop_uid for s in samples}
    by_sop = {s.sop_uid: s for s in samples}
    for item in store_response.ReferencedSOPSequence:
        s = by_sop[str(item.ReferencedSOPInstanceUID)]
        assert item.RetrieveURL == (
            f"{server.dicomweb}/studies/{s.study_uid}/series/{s.series_uid}/instances/{s.sop_uid}"
        )
        assert str(item.ReferencedSOPClassUID) == str(s.dataset.SOPClassUID)


# -- QIDO-RS ---------------------------------------------------------------------------------------
@pytest.mark.usefixtures("store_response")
def test_search_for_studies_returns_every_study(
    client: DICOMwebClient, samples: list[Sample]
) -> None:
    found = client.search_for_studies()
    assert uids(found, STUDY_UID_TAG) == _studies(samples)
    assert len(found) == len(_studies(samples)) == 6


@pytest.mark.usefixtures("store_response")
def test_search_for_studies_by_patient_id(client: DICOMwebClient, samples: list[Sample]) -> None:
    found = client.search_for_studies(search_filters={"PatientID": "SYN0002"})
    assert uids(found, STUDY_UID_TAG) == _studies(samples, patient_id="SYN0002")
    assert {value(r, PATIENT_ID_TAG) for r in found} == {"SYN0002"}


@pytest.mark.usefixtures("store_response")
def test_search_for_studies_by_tag_and_date_range(
    client: DICOMwebClient, samples: list[Sample]
) -> None:
    found = client.search_for_studies(search_filters={"00080020": "20231101-20240331"})
    expected = {s.study_uid for s in samples if "20231101" <= s.study_date <= "20240331"}
    assert expected and uids(found, STUDY_UID_TAG) == expected


@pytest.mark.usefixtures("store_response")
def test_fuzzymatching_is_case_insensitive(client: DICOMwebClient, samples: list[Sample]) -> None:
    fuzzy = client.search_for_studies(
        fuzzymatching=True, search_filters={"PatientName": "synth^patient0003"}
    )
    assert uids(fuzzy, STUDY_UID_TAG) == _studies(samples, patient_id="SYN0003")
    strict = client.search_for_studies(search_filters={"PatientName": "synth^patient0003"})
    assert strict == []


@pytest.mark.usefixtures("store_response")
def test_search_with_space_in_value(client: DICOMwebClient, samples: list[Sample]) -> None:
    found = client.search_for_studies(search_filters={"StudyDescription": "MR BRAIN"})
    assert uids(found, STUDY_UID_TAG) == _studies(samples, accession="ACC1002")


@pytest.mark.usefixtures("store_response")
def test_search_for_series_of_a_study_by_modality(
    client: DICOMwebClient, samples: list[Sample]
) -> None:
    mixed = first(samples, accession="ACC3001")  # the study holding MR and CT
    found = client.search_for_series(mixed.study_uid, search_filters={"Modality": "CT"})
    expected = {
        s.series_uid for s in samples if s.study_uid == mixed.study_uid and s.modality == "CT"
    }
    assert len(expected) == 1
    assert uids(found, SERIES_UID_TAG) == expected


@pytest.mark.usefixtures("store_response")
def test_search_for_instances_of_a_series(client: DICOMwebClient, samples: list[Sample]) -> None:
    ct = first(samples, accession="ACC1001")  # three CT instances in one series
    found = client.search_for_instances(ct.study_uid, ct.series_uid)
    expected = {s.sop_uid for s in samples if s.series_uid == ct.series_uid}
    assert len(expected) == 3
    assert uids(found, SOP_UID_TAG) == expected


@pytest.mark.usefixtures("store_response")
def test_search_for_instances_everywhere_with_fields(
    client: DICOMwebClient, samples: list[Sample]
) -> None:
    found = client.search_for_instances(
        search_filters={"Modality": "MR"}, fields=["PatientName", "00200013"]
    )
    assert uids(found, SOP_UID_TAG) == {s.sop_uid for s in samples if s.modality == "MR"}
    for result in found:
        assert "00100010" in result and "00200013" in result


@pytest.mark.usefixtures("store_response")
def test_limit_and_offset_page_through_studies(
    client: DICOMwebClient, samples: list[Sample]
) -> None:
    pages = [client.search_for_studies(limit=4, offset=offset) for offset in (0, 4, 8)]
    assert [len(p) for p in pages] == [4, 2, 0]
    paged = [value(r, STUDY_UID_TAG) for p in pages for r in p]
    assert len(paged) == len(set(paged))
    assert set(paged) == _studies(samples)


@pytest.mark.usefixtures("store_response")
def test_get_remaining_collects_every_page(client: DICOMwebClient, samples: list[Sample]) -> None:
    found = client.search_for_instances(limit=5, get_remaining=True)
    sops = [value(r, SOP_UID_TAG) for r in found]
    assert sorted(sops) == sorted(s.sop_uid for s in samples)


# -- WADO-RS: instances ----------------------------------------------------------------------------
@pytest.mark.usefixtures("store_response")
def test_retrieve_instance_gives_back_what_was_sent(
    client: DICOMwebClient, http: httpx.Client, samples: list[Sample]
) -> None:
    for s in samples:
        sent = client_encoding(s.data)
        raw = http.get(
            f"/studies/{s.study_uid}/series/{s.series_uid}/instances/{s.sop_uid}",
            headers={"Accept": "application/dicom"},
        )
        assert raw.status_code == 200, s.label
        assert raw.content == sent, s.label
        ds = client.retrieve_instance(s.study_uid, s.series_uid, s.sop_uid)
        assert encode(ds) == sent, s.label


@pytest.mark.usefixtures("store_response")
def test_retrieve_study_gives_every_instance(client: DICOMwebClient, samples: list[Sample]) -> None:
    study = first(samples, accession="ACC2001")  # JPEG baseline + 2-frame RLE
    expected = {
        s.sop_uid: client_encoding(s.data) for s in samples if s.study_uid == study.study_uid
    }
    retrieved = client.retrieve_study(study.study_uid)
    assert {str(ds.SOPInstanceUID): encode(ds) for ds in retrieved} == expected


@pytest.mark.usefixtures("store_response")
def test_retrieve_series_gives_its_instances_only(
    client: DICOMwebClient, samples: list[Sample]
) -> None:
    series = first(samples, accession="ACC1001")
    retrieved = client.retrieve_series(series.study_uid, series.series_uid)
    assert {str(ds.SOPInstanceUID) for ds in retrieved} == {
        s.sop_uid for s in samples if s.series_uid == series.series_uid
    }
    assert all(str(ds.SeriesInstanceUID) == series.series_uid for ds in retrieved)


# -- WADO-RS: metadata -----------------------------------------------------------------------------
@pytest.mark.usefixtures("store_response")
def test_study_series_instance_metadata(client: DICOMwebClient, samples: list[Sample]) -> None:
    s = first(samples, accession="ACC1002")  # MR native + MR RLE, two series
    study = client.retrieve_study_metadata(s.study_uid)
    assert uids(study, SOP_UID_TAG) == {x.sop_uid for x in samples if x.study_uid == s.study_uid}
    series = client.retrieve_series_metadata(s.study_uid, s.series_uid)
    assert uids(series, SOP_UID_TAG) == {x.sop_uid for x in samples if x.series_uid == s.series_uid}
    instance = client.retrieve_instance_metadata(s.study_uid, s.series_uid, s.sop_uid)
    assert value(instance, SOP_UID_TAG) == s.sop_uid
    assert value(instance, PATIENT_ID_TAG) == s.patient_id
    assert value(instance, "00280010") == int(s.dataset.Rows)
    assert "BulkDataURI" in instance[PIXEL_DATA] and "Value" not in instance[PIXEL_DATA]


@pytest.mark.usefixtures("store_response")
def test_bulkdata_uri_gives_the_pixel_data(client: DICOMwebClient, samples: list[Sample]) -> None:
    for s in (first(samples, modality="CT"), first(samples, transfer_syntax=JPEG_2000)):
        metadata = client.retrieve_instance_metadata(s.study_uid, s.series_uid, s.sop_uid)
        uri = metadata[PIXEL_DATA]["BulkDataURI"]
        assert uri.startswith(client.base_url)
        parts = client.retrieve_bulkdata(uri)
        if s.transfer_syntax == JPEG_2000:
            assert parts == [encapsulated_frame(s.data, 1)]
        else:
            assert b"".join(parts) == s.dataset.PixelData


# -- WADO-RS: frames -------------------------------------------------------------------------------
@pytest.mark.usefixtures("store_response")
def test_native_frames_equal_pydicoms(client: DICOMwebClient, samples: list[Sample]) -> None:
    ct = first(samples, modality="CT", transfer_syntax="1.2.840.10008.1.2.1")
    got = client.retrieve_instance_frames(ct.study_uid, ct.series_uid, ct.sop_uid, [1])
    assert got == [native_frame(ct.data, 1)]
    multi = first(samples, label="native-multiframe")
    got = client.retrieve_instance_frames(
        multi.study_uid,
        multi.series_uid,
        multi.sop_uid,
        [3, 1],
        media_types=("application/octet-stream",),
    )
    assert got == [native_frame(multi.data, 3), native_frame(multi.data, 1)]
    assert len(got[0]) == 64 * 64 * 2


@pytest.mark.usefixtures("store_response")
@pytest.mark.parametrize(
    ("syntax", "media_type"),
    [(JPEG_2000, "image/jp2"), (JPEG_BASELINE, "image/jpeg"), (RLE_LOSSLESS, "image/dicom-rle")],
)
def test_compressed_frames_are_the_encapsulated_bytes(
    client: DICOMwebClient, samples: list[Sample], syntax: str, media_type: str
) -> None:
    s = first(samples, transfer_syntax=syntax)
    expected = [encapsulated_frame(s.data, n) for n in range(1, s.number_of_frames + 1)]
    numbers = list(range(1, s.number_of_frames + 1))
    as_stored = client.retrieve_instance_frames(s.study_uid, s.series_uid, s.sop_uid, numbers)
    assert as_stored == expected
    typed = client.retrieve_instance_frames(
        s.study_uid, s.series_uid, s.sop_uid, numbers, media_types=((media_type, syntax),)
    )
    assert typed == expected


@pytest.mark.usefixtures("store_response")
def test_two_frame_rle_instance(client: DICOMwebClient, samples: list[Sample]) -> None:
    s = first(samples, transfer_syntax=RLE_LOSSLESS, number_of_frames=2)
    got = client.retrieve_instance_frames(s.study_uid, s.series_uid, s.sop_uid, [2])
    assert got == [encapsulated_frame(s.data, 2)]
    assert got[0] != encapsulated_frame(s.data, 1)


# -- delete ----------------------------------------------------------------------------------------
def _store_fresh_study(client: DICOMwebClient) -> list[Sample]:
    study, series_a, series_b = new_uid(), new_uid(), new_uid()
    made = [
        fresh_ct(study_uid=study, series_uid=series_a, instance_number=1, patient_id="SYNDEL"),
        fresh_ct(study_uid=study, series_uid=series_a, instance_number=2, patient_id="SYNDEL"),
        fresh_ct(study_uid=study, series_uid=series_b, instance_number=1, patient_id="SYNDEL"),
    ]
    response = client.store_instances([read_dataset(b) for b in made])
    assert "FailedSOPSequence" not in response
    return [sample_from_bytes(f"del{i}", b) for i, b in enumerate(made)]


def _status(excinfo: pytest.ExceptionInfo[HTTPError]) -> int:
    assert excinfo.value.response is not None
    return int(excinfo.value.response.status_code)


def test_delete_instance_then_series_then_study(client: DICOMwebClient, server: LiveServer) -> None:
    a1, a2, b1 = _store_fresh_study(client)
    assert len([p for p in server.blob_files() if a1.study_uid in str(p)]) == 3
    client.delete_instance(a1.study_uid, a1.series_uid, a1.sop_uid)
    with pytest.raises(HTTPError) as gone:
        client.retrieve_instance(a1.study_uid, a1.series_uid, a1.sop_uid)
    assert _status(gone) == 404
    remaining = client.search_for_instances(a1.study_uid)
    assert uids(remaining, SOP_UID_TAG) == {a2.sop_uid, b1.sop_uid}

    client.delete_series(a2.study_uid, a2.series_uid)
    with pytest.raises(HTTPError) as gone:
        client.retrieve_series_metadata(a2.study_uid, a2.series_uid)
    assert _status(gone) == 404
    assert uids(client.search_for_series(b1.study_uid), SERIES_UID_TAG) == {b1.series_uid}

    client.delete_study(b1.study_uid)
    with pytest.raises(HTTPError) as gone:
        client.retrieve_study(b1.study_uid)
    assert _status(gone) == 404
    assert client.search_for_studies(search_filters={"PatientID": "SYNDEL"}) == []
    # The blobs go too (PS3.18 10.8 delete removes the instances, not only their index rows).
    assert [p for p in server.blob_files() if b1.study_uid in str(p)] == []


def test_delete_unknown_study_is_404(client: DICOMwebClient) -> None:
    with pytest.raises(HTTPError) as unknown:
        client.delete_study(new_uid())
    assert _status(unknown) == 404


def test_counts_follow_deletes_and_a_deleted_instance_can_be_stored_again(
    client: DICOMwebClient, http: httpx.Client
) -> None:
    study, ct_series, mr_series = new_uid(), new_uid(), new_uid()
    ct = fresh_ct(study_uid=study, series_uid=ct_series, patient_id="SYNCNT")
    mr = make_instance("MR_small.dcm", study_uid=study, series_uid=mr_series, patient_id="SYNCNT")
    client.store_instances([read_dataset(ct), read_dataset(mr)])
    [row] = client.search_for_studies(search_filters={"StudyInstanceUID": study})
    assert sorted(values(row, MODALITIES_IN_STUDY)) == ["CT", "MR"]

    client.delete_series(study, mr_series)
    [row] = client.search_for_studies(search_filters={"StudyInstanceUID": study})
    assert values(row, MODALITIES_IN_STUDY) == ["CT"]
    assert int(value(row, STUDY_RELATED_SERIES)) == 1
    assert int(value(row, STUDY_RELATED_INSTANCES)) == 1
    assert (
        client.search_for_studies(search_filters={"ModalitiesInStudy": "MR", "PatientID": "SYNCNT"})
        == []
    )

    client.delete_study(study)
    again = client.store_instances([read_dataset(ct), read_dataset(mr)])
    assert "FailedSOPSequence" not in again
    mr_sop = sample_from_bytes("mr", mr).sop_uid
    raw = http.get(
        f"/studies/{study}/series/{mr_series}/instances/{mr_sop}",
        headers={"Accept": "application/dicom"},
    )
    assert raw.status_code == 200
    assert raw.content == client_encoding(mr)

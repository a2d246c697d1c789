"""The at-scale backends end to end: PostgreSQL for the index, S3 (moto's server) for blobs.

One round trip over HTTP through the real server process: store, query, retrieve, frames,
delete. The bucket is listed over the S3 protocol itself, so the test sees where the blobs went
and that delete removes them, independently of the server's own code.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.support_data import (
    JPEG_2000,
    SOP_UID,
    STUDY_UID,
    Archive,
    Sample,
    encapsulated_frame,
    first,
    native_frame,
    read_dataset,
    running_archive,
    sample_set,
    uids,
)
from tests.support.moto_server import MotoS3, running_moto_s3
from tests.support.postgres import create_database

pytestmark = [pytest.mark.postgres, pytest.mark.s3]


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[MotoS3]:
    with running_moto_s3() as server:
        yield server


def _bucket_keys(moto: MotoS3, bucket: str) -> list[str]:
    """Object keys in ``bucket`` (ListObjectsV2; moto does not check signatures)."""
    response = httpx.get(f"{moto.endpoint}/{bucket}", params={"list-type": "2"}, timeout=10)
    assert response.status_code == 200, response.text
    return re.findall(r"<Key>([^<]+)</Key>", response.text)


@pytest.fixture(scope="module")
def bucket(moto_s3: MotoS3) -> str:
    return moto_s3.create_bucket()


@pytest.fixture(scope="module")
def archive(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: str, moto_s3: MotoS3, bucket: str
) -> Iterator[Archive]:
    database_url = create_database(postgres_server, f"it_{uuid.uuid4().hex[:16]}")
    storage_url = moto_s3.url(prefix="archive", bucket=bucket)
    data = tmp_path_factory.mktemp("backends") / "data"
    args = ["--database-url", database_url, "--storage-url", storage_url]
    with running_archive(data, args=args) as signed_in:
        yield signed_in


def test_postgres_and_s3_round_trip(archive: Archive, moto_s3: MotoS3, bucket: str) -> None:
    samples: list[Sample] = sample_set(seed=606)
    client = archive.dicomweb_client()
    server = archive.server

    stored = client.store_instances([s.dataset for s in samples])
    assert "FailedSOPSequence" not in stored
    assert len(stored.ReferencedSOPSequence) == len(samples)
    keys = _bucket_keys(moto_s3, bucket)
    assert len(keys) == len(samples)
    assert all(k.startswith("archive/") for k in keys)
    assert server.blob_files() == []

    assert uids(client.search_for_studies(), STUDY_UID) == {s.study_uid for s in samples}
    found = client.search_for_studies(
        fuzzymatching=True, search_filters={"PatientName": "synth^patient0002"}
    )
    assert uids(found, STUDY_UID) == {s.study_uid for s in samples if s.patient_id == "SYN0002"}

    j2k = first(samples, transfer_syntax=JPEG_2000)
    with archive.http() as http:
        raw = http.get(
            f"{server.dicomweb}/studies/{j2k.study_uid}/series/{j2k.series_uid}"
            f"/instances/{j2k.sop_uid}",
            headers={"Accept": "application/dicom"},
        )
    assert raw.status_code == 200
    assert raw.content == j2k.data
    frames = client.retrieve_instance_frames(j2k.study_uid, j2k.series_uid, j2k.sop_uid, [1])
    assert frames == [encapsulated_frame(j2k.data, 1)]

    multi = first(samples, label="native-multiframe")
    frames = client.retrieve_instance_frames(
        multi.study_uid, multi.series_uid, multi.sop_uid, [2, 3]
    )
    assert frames == [native_frame(multi.data, 2), native_frame(multi.data, 3)]

    metadata = client.retrieve_study_metadata(multi.study_uid)
    assert uids(metadata, SOP_UID) == {multi.sop_uid}
    [instance] = client.retrieve_study(multi.study_uid)
    assert instance.SOPInstanceUID == read_dataset(multi.data).SOPInstanceUID

    for study_uid in {s.study_uid for s in samples}:
        client.delete_study(study_uid)
    assert client.search_for_studies() == []
    assert _bucket_keys(moto_s3, bucket) == []

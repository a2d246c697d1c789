"""Frames and Pixel Data bulk data of Deflated Explicit VR Little Endian instances (PS3.5 A.5).

Ingest records no pixel offsets for a deflated file (they would point into the inflated stream),
so retrieve inflates the data set again, under ``max_inflated_bytes``; these requests used to
answer 406. Expected bytes come from pydicom, which inflates the file itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from dicomvault.testing.synthetic import make_instance
from tests.integration.support_data import (
    PIXEL_DATA,
    Archive,
    Sample,
    parse_multipart,
    read_dataset,
    running_archive,
    sample_from_bytes,
    stow,
)

DEFLATED = "1.2.840.10008.1.2.1.99"
OCTETS = 'multipart/related; type="application/octet-stream"'


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    data = tmp_path_factory.mktemp("deflated") / "data"
    with running_archive(data) as signed_in:
        yield signed_in


@pytest.fixture(scope="module")
def deflated(archive: Archive) -> Sample:
    sample = sample_from_bytes("deflated", make_instance("image_dfl.dcm"))
    assert sample.transfer_syntax == DEFLATED
    with archive.http() as client:
        assert stow(client, archive.dicomweb, [sample.data]).status_code == 200
    return sample


@pytest.fixture(scope="module")
def http(archive: Archive, deflated: Sample) -> Iterator[httpx.Client]:
    with archive.http() as client:
        yield client


def _path(s: Sample) -> str:
    return f"/studies/{s.study_uid}/series/{s.series_uid}/instances/{s.sop_uid}"


@pytest.mark.parametrize(
    "accept",
    [
        OCTETS,
        f"{OCTETS}; transfer-syntax=1.2.840.10008.1.2.1",
        f"{OCTETS}; transfer-syntax=*",
        "*/*",
    ],
)
def test_frames_of_a_deflated_instance_are_its_inflated_pixels(
    http: httpx.Client, deflated: Sample, accept: str
) -> None:
    response = http.get(_path(deflated) + "/frames/1", headers={"Accept": accept})
    assert response.status_code == 200, response.text
    (part,) = parse_multipart(response)
    # The bytes are inflated Explicit VR Little Endian pixels, and labelled as such.
    assert part.headers["content-type"].replace(" ", "") == (
        "application/octet-stream;transfer-syntax=1.2.840.10008.1.2.1"
    )
    expected = read_dataset(deflated.data).PixelData
    assert len(expected) == 512 * 512
    assert part.content == expected


def test_pixel_data_bulk_data_of_a_deflated_instance(http: httpx.Client, deflated: Sample) -> None:
    response = http.get(_path(deflated) + f"/bulkdata/{PIXEL_DATA}")
    assert response.status_code == 200, response.text
    (part,) = parse_multipart(response)
    assert "1.2.840.10008.1.2.1.99" not in part.headers["content-type"]
    assert part.content == read_dataset(deflated.data).PixelData


def test_a_missing_frame_of_a_deflated_instance_is_404(
    http: httpx.Client, deflated: Sample
) -> None:
    assert http.get(_path(deflated) + "/frames/2", headers={"Accept": OCTETS}).status_code == 404

"""Data helpers shared by the DICOMweb integration tests: samples, multipart bodies, DICOM JSON.

Everything here is independent of the server code under test: multipart bodies are written and
read by hand (PS3.18 8.6.1.2, RFC 2387), frames are cut with pydicom, so that a bug in the
server's own multipart writer or frame locator cannot hide itself.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from dicomvault.testing.synthetic import GeneratedInstance, make_ct_512, mixed_sample_set
from tests.support.server import LiveServer, running_server

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
DICOM_JSON = "application/dicom+json"

# DICOM JSON tags (PS3.18 F.2) the tests read.
RETRIEVE_URL = "00081190"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILURE_REASON = "00081197"
REFERENCED_SOP_INSTANCE_UID = "00081155"
STUDY_UID = "0020000D"
SERIES_UID = "0020000E"
SOP_UID = "00080018"
PATIENT_ID = "00100020"
PATIENT_NAME = "00100010"
MODALITY = "00080060"
STUDY_DATE = "00080020"
MODALITIES_IN_STUDY = "00080061"
STUDY_RELATED_SERIES = "00201206"
STUDY_RELATED_INSTANCES = "00201208"
SERIES_RELATED_INSTANCES = "00201209"
PIXEL_DATA = "7FE00010"

# PS3.18 Table 10.5.3-1 / PS3.4 Annex GG failure reasons.
REASON_STUDY_MISMATCH = 0xC409
REASON_DUPLICATE_DIFFERENT = 0x0111


# -- the server, signed in -------------------------------------------------------------------------
# Every DICOMweb route needs a principal; the first start creates user "admin" with this password.
ADMIN_PASSWORD = "integration-tests-only-password"  # noqa: S105 - throwaway test servers
SERVER_ENV = {
    "DICOMVAULT_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "DICOMVAULT_ACCESS_TOKEN_TTL": "3600",
    # The tests are one principal firing hundreds of requests; the default plan would throttle.
    "DICOMVAULT_RATE_LIMIT_RATE": "100000",
    "DICOMVAULT_RATE_LIMIT_BURST": "100000",
}


@dataclass(frozen=True)
class Archive:
    """A running server and an admin access token (OAuth2 password grant, RFC 6749 4.3)."""

    server: LiveServer
    token: str

    @property
    def dicomweb(self) -> str:
        return self.server.dicomweb

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def http(self) -> httpx.Client:
        """An httpx client on the DICOMweb root, signed in."""
        return httpx.Client(base_url=self.dicomweb, headers=self.auth, timeout=60)

    def dicomweb_client(self) -> DICOMwebClient:
        return DICOMwebClient(self.dicomweb, headers=self.auth)


def admin_token(server: LiveServer) -> str:
    response = httpx.post(
        f"{server.base_url}/api/v1/auth/token",
        data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@contextmanager
def running_archive(
    data_dir: Path, *, env: dict[str, str] | None = None, args: list[str] | None = None
) -> Iterator[Archive]:
    """``dicomvault serve`` with a known admin password, signed in as admin."""
    with running_server(data_dir, env={**SERVER_ENV, **(env or {})}, args=args) as live:
        yield Archive(live, admin_token(live))


@dataclass(frozen=True)
class Sample:
    """One instance the tests send: its bytes and the keys to find it again."""

    label: str
    data: bytes
    study_uid: str
    series_uid: str
    sop_uid: str
    patient_id: str
    patient_name: str
    modality: str
    transfer_syntax: str
    study_date: str
    accession: str
    number_of_frames: int

    @property
    def dataset(self) -> Dataset:
        return read_dataset(self.data)


def _from_generated(label: str, g: GeneratedInstance) -> Sample:
    return Sample(
        label=label,
        data=g.read_bytes(),
        study_uid=g.study_uid,
        series_uid=g.series_uid,
        sop_uid=g.sop_uid,
        patient_id=g.patient_id,
        patient_name=g.patient_name,
        modality=g.modality,
        transfer_syntax=g.transfer_syntax,
        study_date=g.study_date,
        accession=g.accession_number,
        number_of_frames=g.number_of_frames,
    )


def sample_from_bytes(label: str, data: bytes) -> Sample:
    """Describe Part-10 bytes made elsewhere (header read back with pydicom)."""
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return Sample(
        label=label,
        data=data,
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_uid=str(ds.SOPInstanceUID),
        patient_id=str(ds.PatientID),
        patient_name=str(ds.PatientName),
        modality=str(ds.Modality),
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        study_date=str(ds.get("StudyDate", "")),
        accession=str(ds.get("AccessionNumber", "")),
        number_of_frames=int(ds.get("NumberOfFrames") or 1),
    )


def sample_set(seed: int) -> list[Sample]:
    """The varied set: 3 patients, 5 studies (CT, MR, RLE, JPEG baseline, JPEG 2000, JPEG-LS,
    a 2-frame RLE) plus a native 3-frame 64x64 CT in a sixth study of a fourth patient.

    ``seed`` keeps the UIDs of different modules (and servers) apart.
    """
    generated = mixed_sample_set(seed=seed)
    samples = [_from_generated(f"{g.transfer_syntax}/{i}", g) for i, g in enumerate(generated)]
    multiframe = make_ct_512(
        rows=64,
        columns=64,
        frames=3,
        patient_id="SYN0004",
        patient_name="SYNTH^PATIENT0004",
        study_date="20250101",
        accession="ACC4001",
        study_description="CT MULTIFRAME",
        seed=seed,
    )
    samples.append(sample_from_bytes("native-multiframe", multiframe))
    return samples


def first(samples: Iterable[Sample], **keys: Any) -> Sample:
    """The first sample whose attributes equal ``keys`` (``transfer_syntax=JPEG_2000``)."""
    for s in samples:
        if all(getattr(s, k) == v for k, v in keys.items()):
            return s
    raise LookupError(f"no sample with {keys}")


def fresh_ct(**keywords: Any) -> bytes:
    """A small native CT (64x64) with fresh UIDs unless given."""
    return make_ct_512(rows=64, columns=64, **keywords)


def new_uid() -> str:
    return str(generate_uid())


# -- Part 10 ---------------------------------------------------------------------------------------
def read_dataset(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def client_encoding(data: bytes) -> bytes:
    """The bytes dicomweb-client sends for the data set read from ``data`` (``dcmwrite(b, ds)``)."""
    out = io.BytesIO()
    pydicom.dcmwrite(out, read_dataset(data))
    return out.getvalue()


def encode(ds: Dataset) -> bytes:
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def with_preamble(data: bytes, preamble: bytes) -> bytes:
    """Replace the 128-byte preamble (PS3.10 7.1), e.g. with a PE/ELF header (CVE-2019-11687)."""
    assert len(preamble) == 128 and data[128:132] == b"DICM"
    return preamble + data[128:]


def native_frame(data: bytes, number: int) -> bytes:
    """Frame ``number`` (1-based) of native Pixel Data, as pydicom lays it out."""
    ds = read_dataset(data)
    frames = int(ds.get("NumberOfFrames") or 1)
    pixel: bytes = ds.PixelData
    size = len(pixel) // frames
    return pixel[(number - 1) * size : number * size]


def encapsulated_frame(data: bytes, number: int) -> bytes:
    """Frame ``number`` (1-based) of encapsulated Pixel Data (PS3.5 A.4), fragments joined."""
    ds = read_dataset(data)
    frames = int(ds.get("NumberOfFrames") or 1)
    return list(generate_frames(ds.PixelData, number_of_frames=frames))[number - 1]


# -- multipart/related ----------------------------------------------------------------------------
def multipart_body(
    parts: Sequence[bytes], *, part_type: str = "application/dicom", boundary: str | None = None
) -> tuple[bytes, str]:
    """A multipart/related body and its boundary (RFC 2387, PS3.18 8.6.1.2)."""
    boundary = boundary or f"dv-{uuid.uuid4().hex}"
    out = io.BytesIO()
    for part in parts:
        out.write(f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode())
        out.write(part)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), boundary


def stow_content_type(boundary: str, *, quoted: bool = True) -> str:
    part = '"application/dicom"' if quoted else "application/dicom"
    return f"multipart/related; type={part}; boundary={boundary}"


def stow(
    http: httpx.Client,
    base: str,
    parts: Sequence[bytes],
    *,
    study_uid: str | None = None,
    quoted: bool = True,
) -> httpx.Response:
    """POST a STOW-RS multipart request to ``base``/studies[/study_uid]."""
    body, boundary = multipart_body(parts)
    url = f"{base}/studies" + (f"/{study_uid}" if study_uid else "")
    return http.post(
        url,
        content=body,
        headers={"Content-Type": stow_content_type(boundary, quoted=quoted)},
    )


@dataclass(frozen=True)
class BodyPart:
    headers: Mapping[str, str]
    content: bytes


def _boundary_of(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"')
    raise AssertionError(f"no boundary in {content_type!r}")


def parse_multipart(response: httpx.Response) -> list[BodyPart]:
    """Split a multipart/related response into its parts, strictly (RFC 2046 5.1.1)."""
    content_type = response.headers["content-type"]
    assert content_type.lower().startswith("multipart/related"), content_type
    delimiter = b"--" + _boundary_of(content_type).encode()
    body = response.content
    assert body.startswith(delimiter), body[:80]
    chunks = body.split(b"\r\n" + delimiter)
    first_chunk = chunks[0][len(delimiter) :]
    segments = [first_chunk, *chunks[1:]]
    assert segments[-1].startswith(b"--"), "missing closing delimiter"
    parts = []
    for segment in segments[:-1]:
        assert segment.startswith(b"\r\n"), segment[:40]
        head, sep, content = segment[2:].partition(b"\r\n\r\n")
        assert sep, "part without header/body separator"
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        parts.append(BodyPart(headers, content))
    return parts


# -- DICOM JSON ------------------------------------------------------------------------------------
def values(obj: Mapping[str, Any], tag: str) -> list[Any]:
    """The ``Value`` list of ``tag`` in a DICOM JSON object (PS3.18 F.2.2), [] when absent."""
    element = obj.get(tag)
    if element is None:
        return []
    return list(element.get("Value", []))


def value(obj: Mapping[str, Any], tag: str) -> Any:
    found = values(obj, tag)
    assert len(found) == 1, f"{tag}: {found}"
    return found[0]


def uids(results: Iterable[Mapping[str, Any]], tag: str) -> set[str]:
    return {str(value(r, tag)) for r in results}


def failure_reasons(body: Mapping[str, Any]) -> list[int]:
    return [int(value(item, FAILURE_REASON)) for item in values(body, FAILED_SOP_SEQUENCE)]


def referenced_sops(body: Mapping[str, Any]) -> list[str]:
    return [
        str(value(item, REFERENCED_SOP_INSTANCE_UID))
        for item in values(body, REFERENCED_SOP_SEQUENCE)
    ]


def ct_with_bulk_elements(document: bytes, icon_pixels: bytes) -> bytes:
    """A small CT with large binary values outside the top-level Pixel Data (PS3.18 F.2.6).

    ``document`` becomes Encapsulated Document (0042,0011) OB; ``icon_pixels`` (4096 bytes) the
    Pixel Data of an Icon Image Sequence (0088,0200) item, a bulk value nested in a sequence.
    """
    assert len(icon_pixels) == 64 * 64
    ds = read_dataset(fresh_ct())
    ds.add_new(0x00420011, "OB", document)
    icon = Dataset()
    icon.Rows = 64
    icon.Columns = 64
    icon.SamplesPerPixel = 1
    icon.BitsAllocated = 8
    icon.BitsStored = 8
    icon.HighBit = 7
    icon.PixelRepresentation = 0
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.PixelData = icon_pixels
    icon["PixelData"].VR = "OB"
    ds.IconImageSequence = [icon]
    return encode(ds)

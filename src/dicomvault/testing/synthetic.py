"""Synthetic DICOM Part-10 instances for tests and benchmarks — never real PHI.

Two sources of pixels:

* the sample files shipped inside the pydicom wheel (``pydicom.data.get_testdata_file``), kept
  with their transfer syntax and (possibly compressed) Pixel Data, so that compressed encodings
  (JPEG baseline, JPEG 2000, JPEG-LS, RLE) and multi-frame data are exercised;
* native 16-bit images made here with numpy (``make_ct_512``, ``write_multiframe_ct``), which give
  realistic sizes for load tests.

Every patient-level value is synthetic (``SYNTH^PATIENT0001``, ``SYN0001``); every other Person
Name in a template is overwritten and private elements are removed. UIDs are fresh: random by
default, or derived from a seed (``pydicom.uid.generate_uid(entropy_srcs=...)``, PS3.5 B.2) so that
``generate_dataset`` is reproducible.
"""

from __future__ import annotations

import datetime
import functools
import io
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    generate_uid,
)

__all__ = [
    "COMPRESSED_TEMPLATES",
    "NATIVE_KINDS",
    "TEMPLATES",
    "GeneratedInstance",
    "generate_dataset",
    "make_ct_512",
    "make_instance",
    "make_native",
    "mixed_sample_set",
    "synthetic_uid",
    "write_multiframe_ct",
]

# Sample files of the pydicom wheel that make good templates (all present in pydicom 3.0).
TEMPLATES: tuple[str, ...] = (
    "CT_small.dcm",  # Explicit VR Little Endian, CT, 128x128
    "MR_small.dcm",  # Explicit VR Little Endian, MR, 64x64
    "MR_small_RLE.dcm",  # RLE Lossless
    "JPEG2000.dcm",  # JPEG 2000 (1.2.840.10008.1.2.4.91), NM
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline (1.2.840.10008.1.2.4.50), RGB
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS Lossless (1.2.840.10008.1.2.4.80)
    "JPEGLSNearLossless_08.dcm",  # JPEG-LS Near-Lossless (1.2.840.10008.1.2.4.81)
    "SC_rgb_rle_2frame.dcm",  # RLE Lossless, 2 frames
)
COMPRESSED_TEMPLATES: tuple[str, ...] = (
    "MR_small_RLE.dcm",
    "JPEG2000.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_rle_2frame.dcm",
)

# Native (uncompressed, Explicit VR Little Endian) kinds made with numpy: kind -> (Modality, size).
NATIVE_KINDS: dict[str, tuple[str, int]] = {
    "ct512": ("CT", 512),
    "ct256": ("CT", 256),
    "mr256": ("MR", 256),
}

_CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
_MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
# Multi-frame Grayscale Word Secondary Capture (PS3.4 B.5): a multi-frame 16-bit IOD that needs
# no functional groups, unlike Enhanced CT.
_MULTIFRAME_WORD_SC = UID("1.2.840.10008.5.1.4.1.1.7.3")
_UID_NAMESPACE = "dicomvault-synthetic"
_PIXEL_DATA_TAG = 0x7FE00010
_MAX_OW_LENGTH = 0xFFFFFFFE  # a defined length must fit 32 bits and not be 0xFFFFFFFF (PS3.5 7.1.2)
# Elements of the templates that could hold identifying text; removed (PS3.15 E.1-1 style).
_IDENTIFYING_KEYWORDS = (
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "DeviceSerialNumber",
    "RequestAttributesSequence",
    "ReferencedStudySequence",
    "ReferencedPatientSequence",
    "ReferencedImageSequence",
    "SourceImageSequence",
)


@dataclass(frozen=True)
class GeneratedInstance:
    """One synthetic instance: where it is (``path``) or what it is (``data``), and its keys."""

    path: Path | None
    data: bytes | None
    study_uid: str
    series_uid: str
    sop_uid: str
    patient_id: str
    modality: str
    transfer_syntax: str
    sop_class_uid: str = ""
    patient_name: str = ""
    study_date: str = ""
    accession_number: str = ""
    study_description: str = ""
    number_of_frames: int = 1
    size: int = 0

    def read_bytes(self) -> bytes:
        """The Part-10 bytes, from memory or from disk."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


def synthetic_uid(*parts: object) -> str:
    """A UID derived from ``parts`` only (PS3.5 B.2 UUID-derived under pydicom's root).

    Same parts, same UID: this is what makes ``generate_dataset`` reproducible. The parts are
    joined with a separator first: pydicom concatenates ``entropy_srcs`` as they are, so
    ``(1, 11)`` and ``(11, 1)`` would otherwise give the same UID.
    """
    key = "|".join([_UID_NAMESPACE, *(str(p) for p in parts)])
    return str(generate_uid(entropy_srcs=[key]))


# --------------------------------------------------------------------------- templates


@functools.cache
def _clean_template_bytes(template: str) -> bytes:
    """A pydicom sample file, scrubbed once (the slow part) and kept as Part-10 bytes."""
    found = get_testdata_file(template)
    if found is None or not isinstance(found, str):
        raise FileNotFoundError(f"pydicom sample file not available: {template}")
    ds = pydicom.dcmread(found)
    _scrub(ds)
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def _load_template(template: str) -> Dataset:
    """A fresh, scrubbed copy of ``template`` to stamp an identity on."""
    return pydicom.dcmread(io.BytesIO(_clean_template_bytes(template)))


def _scrub(ds: Dataset) -> None:
    """Remove private elements and anything identifying the templates carry."""
    ds.remove_private_tags()
    for keyword in _IDENTIFYING_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)

    def _person_names(dataset: Dataset, elem: Any) -> None:
        if elem.VR == "PN" and elem.value:
            elem.value = "SYNTH^OTHER"

    ds.walk(_person_names)


@dataclass(frozen=True)
class _Identity:
    """The patient/study/series/instance values stamped onto an instance."""

    study_uid: str
    series_uid: str
    sop_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    accession: str
    study_description: str
    series_number: int
    instance_number: int


def _identity(
    study_uid: str | None,
    series_uid: str | None,
    sop_uid: str | None,
    patient_id: str,
    patient_name: str,
    study_date: str,
    accession: str,
    study_description: str,
    series_number: int,
    instance_number: int,
) -> _Identity:
    return _Identity(
        study_uid=study_uid or str(generate_uid()),
        series_uid=series_uid or str(generate_uid()),
        sop_uid=sop_uid or str(generate_uid()),
        patient_id=patient_id,
        patient_name=patient_name,
        study_date=study_date,
        accession=accession,
        study_description=study_description,
        series_number=series_number,
        instance_number=instance_number,
    )


def _stamp(ds: Dataset, ident: _Identity, modality: str, extra: dict[str, Any]) -> None:
    """Write the identity, PS3.3 C.7 patient/study/series/SOP common attributes, into ``ds``."""
    ds.PatientName = ident.patient_name
    ds.PatientID = ident.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = ident.study_uid
    ds.SeriesInstanceUID = ident.series_uid
    ds.SOPInstanceUID = ident.sop_uid
    ds.StudyDate = ident.study_date
    ds.SeriesDate = ident.study_date
    ds.ContentDate = ident.study_date
    ds.StudyTime = "120000"
    ds.SeriesTime = "120000"
    ds.ContentTime = "120000"
    ds.AccessionNumber = ident.accession
    ds.StudyDescription = ident.study_description
    ds.SeriesDescription = f"SYNTH SERIES {ident.series_number}"
    ds.StudyID = ident.accession[-16:]
    ds.SeriesNumber = ident.series_number
    ds.InstanceNumber = ident.instance_number
    ds.Modality = modality
    ds.ReferringPhysicianName = ""
    if "FrameOfReferenceUID" in ds:
        ds.FrameOfReferenceUID = synthetic_uid("for", ident.series_uid)
    for keyword, value in extra.items():
        if pydicom.datadict.tag_for_keyword(keyword) is None:
            raise ValueError(f"not a DICOM keyword: {keyword}")
        setattr(ds, keyword, value)


def _finish_file_meta(ds: Dataset, transfer_syntax: str) -> None:
    """File Meta Information group (PS3.10 7.1) consistent with the dataset."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "DVSYNTH"
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128


def _to_part10(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def make_instance(
    template: str = "CT_small.dcm",
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    patient_id: str = "SYN0001",
    patient_name: str = "SYNTH^PATIENT0001",
    modality: str | None = None,
    study_date: str = "20240101",
    accession: str = "ACC0001",
    study_description: str = "SYNTH STUDY",
    series_number: int = 1,
    instance_number: int = 1,
    **extra_keywords: Any,
) -> bytes:
    """Part-10 bytes of a pydicom sample file restamped with synthetic identity and fresh UIDs.

    The template's transfer syntax and Pixel Data are kept unchanged. Missing UIDs are random.
    ``extra_keywords`` set any further attribute by DICOM keyword (``BodyPartExamined="HEAD"``).
    """
    ds = _load_template(template)
    transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
    ident = _identity(
        study_uid,
        series_uid,
        sop_uid,
        patient_id,
        patient_name,
        study_date,
        accession,
        study_description,
        series_number,
        instance_number,
    )
    if "SOPClassUID" not in ds:
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
    _stamp(ds, ident, modality or str(ds.get("Modality") or "OT"), extra_keywords)
    _finish_file_meta(ds, transfer_syntax)
    return _to_part10(ds)


# --------------------------------------------------------------------------- native pixels


@functools.cache
def _body_phantom(rows: int, columns: int) -> npt.NDArray[np.int16]:
    """A crude CT slice in Hounsfield units: air outside, soft tissue in an ellipse, a 'spine'."""
    y, x = np.ogrid[:rows, :columns]
    cy, cx = rows / 2, columns / 2
    body = ((y - cy) / (0.42 * rows)) ** 2 + ((x - cx) / (0.47 * columns)) ** 2 <= 1.0
    bone = ((y - 0.7 * rows) / (0.06 * rows)) ** 2 + ((x - cx) / (0.06 * columns)) ** 2 <= 1.0
    image = np.full((rows, columns), -1000, dtype=np.int16)
    image[body] = 40
    image[bone] = 700
    return image


def _native_frame(rows: int, columns: int, rng: np.random.Generator) -> npt.NDArray[np.int16]:
    """Phantom + low-frequency texture + fine noise: compresses like real data, not like zeros."""
    coarse = rng.normal(0.0, 25.0, size=(-(-rows // 16), -(-columns // 16)))
    texture = np.kron(coarse, np.ones((16, 16)))[:rows, :columns]
    noise = rng.integers(-12, 13, size=(rows, columns))
    frame = _body_phantom(rows, columns) + texture + noise
    return np.clip(frame, -1024, 3071).astype("<i2")


def _native_header(
    modality: str,
    rows: int,
    columns: int,
    frames: int,
    ident: _Identity,
    extra: dict[str, Any],
) -> Dataset:
    """Header of a native 16-bit signed grayscale image (PS3.3 C.7.6.3 Image Pixel)."""
    ds = _load_template("CT_small.dcm")
    # Pixel Data must be the last element for write_multiframe_ct to append it; the template
    # carries Data Set Trailing Padding (FFFC,FFFC) after it, which would then come first.
    for tag in [elem.tag for elem in ds if elem.tag >= _PIXEL_DATA_TAG]:
        del ds[tag]
    if frames > 1:
        ds.SOPClassUID = _MULTIFRAME_WORD_SC
        ds.NumberOfFrames = frames
        ds.FrameTime = 40.0
        ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    else:
        ds.SOPClassUID = _CT_IMAGE_STORAGE if modality == "CT" else _MR_IMAGE_STORAGE
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.ImagePositionPatient = [0.0, 0.0, float(ident.instance_number)]
    ds.SliceLocation = float(ident.instance_number)
    _stamp(ds, ident, modality, extra)
    _finish_file_meta(ds, ExplicitVRLittleEndian)
    return ds


def make_native(
    kind: str = "ct512",
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    patient_id: str = "SYN0001",
    patient_name: str = "SYNTH^PATIENT0001",
    study_date: str = "20240101",
    accession: str = "ACC0001",
    study_description: str = "SYNTH STUDY",
    series_number: int = 1,
    instance_number: int = 1,
    frames: int = 1,
    seed: int = 0,
    **extra_keywords: Any,
) -> bytes:
    """A native (Explicit VR Little Endian) instance of one of ``NATIVE_KINDS``."""
    modality, size = NATIVE_KINDS[kind]
    ident = _identity(
        study_uid,
        series_uid,
        sop_uid,
        patient_id,
        patient_name,
        study_date,
        accession,
        study_description,
        series_number,
        instance_number,
    )
    return _native_instance(modality, size, size, frames, ident, seed, extra_keywords)


def _native_instance(
    modality: str,
    rows: int,
    columns: int,
    frames: int,
    ident: _Identity,
    seed: int,
    extra: dict[str, Any],
) -> bytes:
    if frames < 1:
        raise ValueError("frames must be >= 1")
    ds = _native_header(modality, rows, columns, frames, ident, extra)
    rng = np.random.default_rng(seed)
    pixels = b"".join(_native_frame(rows, columns, rng).tobytes() for _ in range(frames))
    ds.PixelData = pixels
    ds["PixelData"].VR = "OW"
    return _to_part10(ds)


def make_ct_512(
    *,
    rows: int = 512,
    columns: int = 512,
    frames: int = 1,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    patient_id: str = "SYN0001",
    patient_name: str = "SYNTH^PATIENT0001",
    study_date: str = "20240101",
    accession: str = "ACC0001",
    study_description: str = "SYNTH STUDY",
    series_number: int = 1,
    instance_number: int = 1,
    seed: int = 0,
    **extra_keywords: Any,
) -> bytes:
    """A native 16-bit signed CT (Explicit VR Little Endian), ~512 KB at 512x512.

    ``frames > 1`` gives a Multi-frame Grayscale Word Secondary Capture instance held in memory;
    for large multi-frame files use ``write_multiframe_ct``, which streams to disk.
    """
    ident = _identity(
        study_uid,
        series_uid,
        sop_uid,
        patient_id,
        patient_name,
        study_date,
        accession,
        study_description,
        series_number,
        instance_number,
    )
    return _native_instance("CT", rows, columns, frames, ident, seed, extra_keywords)


def _pixel_data_header(length: int) -> bytes:
    """(7FE0,0010) OW with a defined 32-bit length, Explicit VR Little Endian (PS3.5 7.1.2)."""
    return struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length)


def write_multiframe_ct(
    path: Path,
    frames: int,
    rows: int = 512,
    columns: int = 512,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    patient_id: str = "SYN0001",
    patient_name: str = "SYNTH^PATIENT0001",
    study_date: str = "20240101",
    accession: str = "ACC0001",
    study_description: str = "SYNTH MULTIFRAME",
    seed: int = 0,
) -> GeneratedInstance:
    """Write a large multi-frame native CT to ``path`` one frame at a time.

    The header is written by pydicom; then the Pixel Data element header and the frames are
    appended, so memory stays at one frame whatever the file size (1000 frames of 512x512 ≈ 500 MB).
    Elements must ascend (PS3.5 7.1), so the header built here holds nothing after (7FE0,0010).
    """
    length = frames * rows * columns * 2
    if frames < 1 or length > _MAX_OW_LENGTH:
        raise ValueError("frames out of range for a defined-length Pixel Data element")
    ident = _identity(
        study_uid,
        series_uid,
        sop_uid,
        patient_id,
        patient_name,
        study_date,
        accession,
        study_description,
        1,
        1,
    )
    ds = _native_header("CT", rows, columns, max(frames, 2), ident, {})
    ds.NumberOfFrames = frames
    if frames == 1:
        ds.SOPClassUID = _CT_IMAGE_STORAGE
        ds.file_meta.MediaStorageSOPClassUID = _CT_IMAGE_STORAGE
        for keyword in ("NumberOfFrames", "FrameTime", "FrameIncrementPointer"):
            delattr(ds, keyword)
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        ds.save_as(out, enforce_file_format=True)
        out.write(_pixel_data_header(length))
        for _ in range(frames):
            out.write(_native_frame(rows, columns, rng).tobytes())
    return GeneratedInstance(
        path=path,
        data=None,
        study_uid=ident.study_uid,
        series_uid=ident.series_uid,
        sop_uid=ident.sop_uid,
        patient_id=patient_id,
        modality="CT",
        transfer_syntax=str(ExplicitVRLittleEndian),
        sop_class_uid=str(ds.SOPClassUID),
        patient_name=patient_name,
        study_date=study_date,
        accession_number=accession,
        study_description=study_description,
        number_of_frames=frames,
        size=path.stat().st_size,
    )


# --------------------------------------------------------------------------- data sets


def _describe(
    data: bytes, path: Path | None, keep_data: bool, ident: _Identity
) -> GeneratedInstance:
    """Read back what was written (header only) so the record matches the bytes exactly."""
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return GeneratedInstance(
        path=path,
        data=data if keep_data else None,
        study_uid=ident.study_uid,
        series_uid=ident.series_uid,
        sop_uid=ident.sop_uid,
        patient_id=ident.patient_id,
        modality=str(ds.Modality),
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        sop_class_uid=str(ds.SOPClassUID),
        patient_name=ident.patient_name,
        study_date=ident.study_date,
        accession_number=ident.accession,
        study_description=ident.study_description,
        number_of_frames=int(ds.get("NumberOfFrames") or 1),
        size=len(data),
    )


def _render(kind: str, ident: _Identity, seed: int, extra: dict[str, Any]) -> bytes:
    """Bytes of one instance of ``kind``: a ``NATIVE_KINDS`` key or a pydicom template name."""
    if kind in NATIVE_KINDS:
        modality, size = NATIVE_KINDS[kind]
        return _native_instance(modality, size, size, 1, ident, seed, extra)
    return make_instance(
        kind,
        study_uid=ident.study_uid,
        series_uid=ident.series_uid,
        sop_uid=ident.sop_uid,
        patient_id=ident.patient_id,
        patient_name=ident.patient_name,
        study_date=ident.study_date,
        accession=ident.accession,
        study_description=ident.study_description,
        series_number=ident.series_number,
        instance_number=ident.instance_number,
        **extra,
    )


def _emit(
    out_dir: Path | None,
    kind: str,
    ident: _Identity,
    seed: int,
    extra: dict[str, Any] | None = None,
) -> GeneratedInstance:
    data = _render(kind, ident, seed, extra or {})
    if out_dir is None:
        return _describe(data, None, True, ident)
    path = out_dir / ident.study_uid / ident.series_uid / f"{ident.sop_uid}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return _describe(data, path, False, ident)


_STUDY_DESCRIPTIONS = ("CHEST ROUTINE", "ABDOMEN PELVIS", "HEAD NON CONTRAST", "SPINE LUMBAR")


def _dataset_identities(
    seed: int,
    patients: int,
    studies_per_patient: int,
    series_per_study: int,
    instances_per_series: int,
) -> Iterator[tuple[int, int, _Identity]]:
    """(series index, instance index, identity) for every instance, in a fixed order."""
    first_day = datetime.date(2020, 1, 1)
    series_index = 0
    for p in range(patients):
        for s in range(studies_per_patient):
            study_index = p * studies_per_patient + s
            study_uid = synthetic_uid(seed, "study", p, s)
            day = first_day + datetime.timedelta(days=(study_index * 37) % 1500)
            for r in range(series_per_study):
                series_uid = synthetic_uid(seed, "series", p, s, r)
                for i in range(instances_per_series):
                    yield (
                        series_index,
                        i,
                        _Identity(
                            study_uid=study_uid,
                            series_uid=series_uid,
                            sop_uid=synthetic_uid(seed, "sop", p, s, r, i),
                            patient_id=f"SYN{p + 1:04d}",
                            patient_name=f"SYNTH^PATIENT{p + 1:04d}",
                            study_date=day.strftime("%Y%m%d"),
                            accession=f"ACC{study_index + 1:06d}",
                            study_description=_STUDY_DESCRIPTIONS[
                                study_index % len(_STUDY_DESCRIPTIONS)
                            ],
                            series_number=r + 1,
                            instance_number=i + 1,
                        ),
                    )
                series_index += 1


def generate_dataset(
    out_dir: Path,
    *,
    patients: int,
    studies_per_patient: int,
    series_per_study: int,
    instances_per_series: int,
    templates: Sequence[str] = ("ct512",),
    seed: int = 0,
) -> list[GeneratedInstance]:
    """Write a reproducible data set to ``out_dir/<study>/<series>/<sop>.dcm``.

    Series ``k`` (counted over the whole data set) uses ``templates[k % len(templates)]``: a
    ``NATIVE_KINDS`` key (``"ct512"``, ``"ct256"``, ``"mr256"``) or a pydicom sample file name.
    Patients are ``SYN0001``…, accessions ``ACC000001``…, study dates spread over 2020-2024.
    Same arguments and seed, same UIDs and same bytes.
    """
    if not templates:
        raise ValueError("templates must not be empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    generated: list[GeneratedInstance] = []
    for series_index, instance_index, ident in _dataset_identities(
        seed, patients, studies_per_patient, series_per_study, instances_per_series
    ):
        kind = templates[series_index % len(templates)]
        pixel_seed = seed * 1_000_003 + series_index * 1_009 + instance_index
        generated.append(_emit(out_dir, kind, ident, pixel_seed))
    return generated


# (template, patient, study, series, instances, study date, accession, description)
_MIXED_PLAN: tuple[tuple[str, int, int, int, int, str, str, str], ...] = (
    ("CT_small.dcm", 1, 1, 1, 3, "20230105", "ACC1001", "CT CHEST"),
    ("MR_small.dcm", 1, 2, 1, 2, "20230612", "ACC1002", "MR BRAIN"),
    ("MR_small_RLE.dcm", 1, 2, 2, 1, "20230612", "ACC1002", "MR BRAIN"),
    ("SC_rgb_jpeg_dcmtk.dcm", 2, 3, 1, 1, "20231120", "ACC2001", "SC JPEG BASELINE"),
    ("SC_rgb_rle_2frame.dcm", 2, 3, 2, 1, "20231120", "ACC2001", "SC JPEG BASELINE"),
    ("JPEG2000.dcm", 2, 4, 1, 1, "20240302", "ACC2002", "NM JPEG2000"),
    ("MR_small_jpeg_ls_lossless.dcm", 3, 5, 1, 1, "20240718", "ACC3001", "MR CT JPEGLS"),
    ("CT_small.dcm", 3, 5, 2, 1, "20240718", "ACC3001", "MR CT JPEGLS"),
)


def mixed_sample_set(out_dir: Path | None = None, *, seed: int = 0) -> list[GeneratedInstance]:
    """A small varied set for integration tests: 3 patients, 5 studies, 8 series, 11 instances.

    Covers CT and MR native, RLE, JPEG baseline, JPEG 2000, JPEG-LS and a 2-frame instance;
    different dates, accessions and modalities (study 5 holds MR and CT). Files are written to
    ``out_dir`` when given, otherwise the bytes are kept in ``GeneratedInstance.data``.
    """
    generated: list[GeneratedInstance] = []
    for template, p, s, r, count, date, accession, description in _MIXED_PLAN:
        for i in range(count):
            ident = _Identity(
                study_uid=synthetic_uid(seed, "mixed-study", s),
                series_uid=synthetic_uid(seed, "mixed-series", s, r),
                sop_uid=synthetic_uid(seed, "mixed-sop", s, r, i),
                patient_id=f"SYN{p:04d}",
                patient_name=f"SYNTH^PATIENT{p:04d}",
                study_date=date,
                accession=accession,
                study_description=description,
                series_number=r,
                instance_number=i + 1,
            )
            generated.append(_emit(out_dir, template, ident, seed))
    return generated

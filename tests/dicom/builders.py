"""Synthetic DICOM files for the dicom/ tests: valid ones, and byte-level damaged ones.

No patient data: every name, ID and UID here is made up.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from pydicom.config import disable_value_validation
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
STUDY_UID = "1.2.826.0.1.3680043.10.1234.1"
SERIES_UID = "1.2.826.0.1.3680043.10.1234.1.1"
SOP_UID = "1.2.826.0.1.3680043.10.1234.1.1.1"


def make_dataset(**attributes: object) -> Dataset:
    """A small Secondary Capture data set without pixels; keyword arguments override."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SC_CLASS
    ds.SOPInstanceUID = SOP_UID
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC0001"
    ds.Modality = "OT"
    ds.ReferringPhysicianName = "Ref^Doctor"
    ds.StudyDescription = "Synthetic study"
    ds.SeriesDescription = "Synthetic series"
    ds.PatientName = "Test^Patient"
    ds.PatientID = "SYN-0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = SERIES_UID
    ds.StudyID = "S1"
    ds.SeriesNumber = 3
    ds.InstanceNumber = 7
    with disable_value_validation():
        for keyword, value in attributes.items():
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
    return ds


def file_meta(ds: Dataset, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = str(ds.get("SOPClassUID", SC_CLASS))
    meta.MediaStorageSOPInstanceUID = str(ds.get("SOPInstanceUID", SOP_UID))
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.10.1234.99"
    return meta


def meta_bytes(ds: Dataset, transfer_syntax: str, preamble: bytes = bytes(128)) -> bytes:
    """Preamble, ``DICM`` and File Meta Information (PS3.10 7.1)."""
    fp = DicomBytesIO()
    with disable_value_validation():
        write_file_meta_info(fp, file_meta(ds, transfer_syntax), enforce_standard=True)
    return preamble + b"DICM" + fp.getvalue()


def data_set_bytes(ds: Dataset, *, implicit: bool = False, little: bool = True) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = little
    fp.is_implicit_VR = implicit
    with disable_value_validation():
        write_dataset(fp, ds)
    return fp.getvalue()


def write_part10(
    path: Path,
    ds: Dataset,
    transfer_syntax: str = ExplicitVRLittleEndian,
    *,
    preamble: bytes = bytes(128),
    tail: bytes = b"",
) -> Path:
    """Write ``ds`` as a Part-10 file, then ``tail`` raw bytes (already encoded)."""
    implicit = transfer_syntax == ImplicitVRLittleEndian
    body = data_set_bytes(ds, implicit=implicit)
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = compressor.compress(body + tail) + compressor.flush()
        tail = b""
    path.write_bytes(meta_bytes(ds, transfer_syntax, preamble) + body + tail)
    return path


def explicit_element(tag: int, vr: bytes, value: bytes) -> bytes:
    """One Explicit VR Little Endian element (PS3.5 7.1.2), 4-byte length form for OB etc."""
    group, element = divmod(tag, 0x10000)
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"OF", b"OD"):
        return struct.pack("<HH2sHL", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def nested_sequences(depth: int, tag: int = 0x0040A730) -> bytes:
    """``depth`` undefined-length sequences, each holding one undefined-length item."""
    group, element = divmod(tag, 0x10000)
    opening = struct.pack("<HH2sHL", group, element, b"SQ", 0, 0xFFFFFFFF) + struct.pack(
        "<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    closing = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    return opening * depth + closing * depth


def deflate_bomb_chunks(ds: Dataset, inflated_size: int) -> Iterator[bytes]:
    """A Deflated file whose data set inflates to about ``inflated_size`` bytes of zeros.

    Built without ever holding the inflated data: one 1 MiB block of zeros is deflated with a
    full flush (so it does not depend on what came before) and repeated, then a final empty
    fixed-Huffman block (``03 00``) ends the stream (RFC 1951 3.2.3).
    """
    yield meta_bytes(ds, DeflatedExplicitVRLittleEndian)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    header = data_set_bytes(ds) + struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, inflated_size)
    yield compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    for _ in range(inflated_size >> 20):
        yield block
    yield b"\x03\x00"

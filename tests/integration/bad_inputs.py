"""Builders of broken and malicious STOW-RS payloads (issue 2, "Bad input").

Every payload is synthetic: made-up names and IDs, fresh UIDs. The valid instances here are built
with pydicom directly (not the synthetic templates) so that each byte offset a test patches or
cuts at is known: Explicit VR Little Endian (PS3.5 A.2), a 16x16 8-bit Secondary Capture image.
"""

from __future__ import annotations

import random
import struct
import warnings
import zlib
from dataclasses import dataclass

from pydicom.config import disable_value_validation
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import UID, generate_uid

SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage (PS3.4 B.5)
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"  # PS3.5 A.5
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1234.99"

PREAMBLE_LENGTH = 128
_PIXEL_DATA_TAG = struct.pack("<HH", 0x7FE0, 0x0010)
_UNDEFINED = 0xFFFFFFFF
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
_ITEM_DELIMITER = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
_SEQUENCE_DELIMITER = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
_CONTENT_SEQUENCE = struct.pack("<HH", 0x0040, 0xA730)  # a tag after every header element

SCRIPT_PATIENT_NAME = "<script>alert(1)</script>"


@dataclass(frozen=True)
class Payload:
    """Part-10 bytes and the UIDs they carry (``None`` where a test removed one)."""

    data: bytes
    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None


def fresh_uid() -> str:
    return str(generate_uid())


# ------------------------------------------------------------------------------ valid instances


def data_set(*, pixels: bool = True, **overrides: object) -> Dataset:
    """A small Secondary Capture data set with fresh UIDs; ``None`` in ``overrides`` deletes.

    Values are set with validation off, so malformed UIDs and odd names go in as given.
    """
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = SC_IMAGE_STORAGE
    ds.SOPInstanceUID = fresh_uid()
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "BADIN0001"
    ds.Modality = "OT"
    ds.ReferringPhysicianName = ""
    ds.PatientName = "SYNTH^BADINPUT"
    ds.PatientID = "SYNBAD01"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = fresh_uid()
    ds.SeriesInstanceUID = fresh_uid()
    ds.StudyID = "BAD1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    if pixels:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = 16
        ds.Columns = 16
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = bytes(range(256))
        ds["PixelData"].VR = "OB"
    with disable_value_validation(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # malformed values are the point here
        for keyword, value in overrides.items():
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
    return ds


def meta_bytes(ds: Dataset, transfer_syntax: str = EXPLICIT_VR_LITTLE_ENDIAN) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group (PS3.10 7.1)."""
    with disable_value_validation(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a malformed UID may be the point
        return _meta_bytes(ds, transfer_syntax)


def _meta_bytes(ds: Dataset, transfer_syntax: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(str(ds.get("SOPClassUID") or SC_IMAGE_STORAGE))
    # With SOPInstanceUID removed, the meta still names a well-formed instance, so the refusal
    # must come from the data set check, not from the meta.
    meta.MediaStorageSOPInstanceUID = UID(str(ds.get("SOPInstanceUID") or fresh_uid()))
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    fp = DicomBytesIO()
    write_file_meta_info(fp, meta, enforce_standard=True)
    return bytes(PREAMBLE_LENGTH) + b"DICM" + fp.getvalue()


def data_set_bytes(ds: Dataset) -> bytes:
    """The data set alone, Explicit VR Little Endian (PS3.5 A.2)."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    with disable_value_validation(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        write_dataset(fp, ds)
    return fp.getvalue()


def payload(ds: Dataset, body: bytes | None = None) -> Payload:
    """A Part-10 file of ``ds`` (or of ``ds``'s meta followed by ``body``)."""
    data = meta_bytes(ds) + (data_set_bytes(ds) if body is None else body)
    return Payload(
        data,
        _uid_or_none(ds, "StudyInstanceUID"),
        _uid_or_none(ds, "SeriesInstanceUID"),
        _uid_or_none(ds, "SOPInstanceUID"),
    )


def _uid_or_none(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    return None if value is None else str(value)


def valid_instance(**overrides: object) -> Payload:
    """A valid instance with fresh UIDs; keyword arguments override attributes."""
    return payload(data_set(pixels=True, **overrides))


# ------------------------------------------------------------------------------ not DICOM at all


def text_body() -> bytes:
    return b"This is a plain text file, certainly not DICOM.\n" * 40


def png_body() -> bytes:
    """A valid 1x1 greyscale PNG (RFC 2083): signature, IHDR, IDAT, IEND."""

    def chunk(kind: bytes, content: bytes) -> bytes:
        crc = zlib.crc32(kind + content) & 0xFFFFFFFF
        return struct.pack(">L", len(content)) + kind + content + struct.pack(">L", crc)

    header = struct.pack(">LLBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x7f"))
        + chunk(b"IEND", b"")
    )


def random_body(size: int = 8192, seed: int = 2) -> bytes:
    return random.Random(seed).randbytes(size)


def not_dicom_bodies() -> dict[str, bytes]:
    return {"text": text_body(), "png": png_body(), "random": random_body()}


# ------------------------------------------------------------------------------ truncations


def meta_end(data: bytes) -> int:
    """Offset of the first data set byte: after (0002,0000) File Meta Information Group Length."""
    start = PREAMBLE_LENGTH + 4
    assert data[start : start + 6] == b"\x02\x00\x00\x00UL"
    (group_length,) = struct.unpack_from("<L", data, start + 8)
    return int(start + 12 + group_length)


def pixel_data_offset(data: bytes) -> int:
    """Offset of the (7FE0,0010) element header (OB: 12 bytes, PS3.5 7.1.2)."""
    offset = data.rfind(_PIXEL_DATA_TAG + b"OB")
    assert offset > 0, "no OB Pixel Data in this file"
    return offset


def truncations(data: bytes) -> dict[str, bytes]:
    """The file cut inside the preamble, the meta, the data set header and the Pixel Data."""
    meta_stop = meta_end(data)
    pixels = pixel_data_offset(data)
    value_start = pixels + 12
    cuts = {
        "in-preamble": 60,
        "after-preamble": PREAMBLE_LENGTH + 2,
        "in-file-meta": PREAMBLE_LENGTH + 4 + (meta_stop - PREAMBLE_LENGTH - 4) // 2,
        "mid-data-set": meta_stop + (pixels - meta_stop) // 2,
        "in-pixel-header": pixels + 6,
        "mid-pixel-data": value_start + (len(data) - value_start) // 2,
        "one-byte-short": len(data) - 1,
    }
    return {name: data[:cut] for name, cut in cuts.items()}


# --------------------------------------------------------------------- lengths past the end


def with_huge_pixel_length(data: bytes) -> bytes:
    """The 32-bit length of Pixel Data set far past the end of the file (not undefined)."""
    offset = pixel_data_offset(data) + 8
    return data[:offset] + struct.pack("<L", 0x7FFFFFF0) + data[offset + 4 :]


def with_huge_short_length(data: bytes, tag: tuple[int, int] = (0x0010, 0x0010)) -> bytes:
    """A 16-bit length (default PatientName, PN) set to 0xFFFF in a file shorter than 64 KiB."""
    assert len(data) < 0xFFFF
    header = struct.pack("<HH", *tag)
    offset = data.find(header, meta_end(data))
    assert offset > 0
    return data[: offset + 6] + struct.pack("<H", 0xFFFF) + data[offset + 8 :]


def with_huge_meta_element_length(data: bytes) -> bytes:
    """MediaStorageSOPInstanceUID (0002,0003), in the File Meta Information, 0xFFFF long."""
    offset = data.find(struct.pack("<HH", 0x0002, 0x0003) + b"UI", PREAMBLE_LENGTH)
    assert offset > 0
    return data[: offset + 6] + struct.pack("<H", 0xFFFF) + data[offset + 8 :]


def length_past_end_cases() -> dict[str, Payload]:
    with_pixels = valid_instance()
    no_pixels = payload(data_set(pixels=False))
    cases = {
        "pixel-data-length": with_huge_pixel_length(with_pixels.data),
        "patient-name-length": with_huge_short_length(no_pixels.data),
        "meta-element-length": with_huge_meta_element_length(with_pixels.data),
    }
    source = {"pixel-data-length": with_pixels, "meta-element-length": with_pixels}
    return {name: _replace_data(source.get(name, no_pixels), data) for name, data in cases.items()}


def _replace_data(original: Payload, data: bytes) -> Payload:
    return Payload(data, original.study_uid, original.series_uid, original.sop_uid)


# ------------------------------------------------------------------------------ deflate bomb

_BOMB_CHUNK = 1024 * 1024


def deflate_bomb(inflated_bytes: int = 1024 * 1024 * 1024) -> Payload:
    """Deflated Explicit VR Little Endian (PS3.5 A.5): ~1 MB sent, ``inflated_bytes`` inflated.

    The data set is a valid header followed by one OB Pixel Data element of ``inflated_bytes``
    zeros. It is deflated in 1 MiB chunks, each ended with a full flush; a full flush resets the
    compressor's state, so every all-zero chunk deflates to the same bytes and the stream is
    built without compressing a gigabyte: memory and time stay small.
    """
    assert inflated_bytes % _BOMB_CHUNK == 0
    ds = data_set(pixels=False)
    header = (
        data_set_bytes(ds) + _PIXEL_DATA_TAG + b"OB\x00\x00" + struct.pack("<L", inflated_bytes)
    )
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(_BOMB_CHUNK)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert block == again, "full-flushed blocks of zeros must be identical"
    tail = compressor.flush(zlib.Z_FINISH)
    count = inflated_bytes // _BOMB_CHUNK
    deflated = b"".join([head, block * count, tail])
    data = meta_bytes(ds, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN) + deflated
    return Payload(
        data, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
    )


def inflated_size(deflated: bytes, limit: int) -> int:
    """How many bytes ``deflated`` (raw deflate) inflates to, reading at most ``limit``."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    data = deflated
    while data and total <= limit:
        total += len(inflater.decompress(data, _BOMB_CHUNK))
        data = inflater.unconsumed_tail
    return total


# ------------------------------------------------------------------------------ deep sequences


def nested_sequences(depth: int, *, defined_length: bool) -> bytes:
    """ContentSequence (0040,A730) items nested ``depth`` deep (PS3.5 7.5), raw bytes.

    Undefined lengths end each level with delimitation items (PS3.5 7.5.2); defined lengths are
    computed from the innermost level outwards.
    """
    if not defined_length:
        opening = _CONTENT_SEQUENCE + b"SQ\x00\x00" + struct.pack("<L", _UNDEFINED)
        opening += _ITEM + struct.pack("<L", _UNDEFINED)
        return opening * depth + (_ITEM_DELIMITER + _SEQUENCE_DELIMITER) * depth
    inner = b""
    for _ in range(depth):
        item = _ITEM + struct.pack("<L", len(inner)) + inner
        inner = _CONTENT_SEQUENCE + b"SQ\x00\x00" + struct.pack("<L", len(item)) + item
    return inner


def deeply_nested(depth: int = 300, *, defined_length: bool = False) -> Payload:
    """A valid header followed by sequences nested ``depth`` deep (no Pixel Data)."""
    ds = data_set(pixels=False)
    body = data_set_bytes(ds) + nested_sequences(depth, defined_length=defined_length)
    return payload(ds, body)


# ------------------------------------------------------------------------------ multipart


def multipart_body(
    parts: list[bytes],
    boundary: str,
    *,
    part_type: str = "application/dicom",
    close: bool = True,
) -> bytes:
    """A multipart/related body (RFC 2387); without ``close`` the closing delimiter is left off."""
    out = bytearray()
    for data in parts:
        out += f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode("latin-1")
        out += data + b"\r\n"
    if close:
        out += f"--{boundary}--\r\n".encode("latin-1")
    return bytes(out)


def multipart_type(boundary: str | None, part_type: str | None = "application/dicom") -> str:
    value = "multipart/related"
    if part_type is not None:
        value += f'; type="{part_type}"'
    if boundary is not None:
        value += f"; boundary={boundary}"
    return value

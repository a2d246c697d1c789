"""Frame addressing and decoding for WADO-RS /frames (PS3.18 10.4.1.1.3)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset, read_file_meta_info
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from dicomvault.dicom.inflate import inflate_data_set
from dicomvault.dicom.parse import ParseLimits
from dicomvault.dicom.pixels import native_frame_length
from dicomvault.dicom.problems import InvalidDicom

_PREAMBLE_AND_PREFIX = 132
_LONG_VRS = frozenset(vr.encode("ascii") for vr in EXPLICIT_VR_LENGTH_32)
_PIXEL_DATA_TAG = struct.pack("<HH", 0x7FE0, 0x0010)


def frame_ranges(pixel: dict[str, Any], number: int) -> list[tuple[int, int]] | None:
    """Byte ranges (offset, length) in the stored file that hold frame ``number`` (1-based).

    ``None`` when the frame cannot be located without decoding.
    """
    index = number - 1
    if not pixel["encapsulated"]:
        length = pixel.get("frame_length")
        if not length:
            return None
        return [(pixel["value_offset"] + index * length, length)]
    by_frame = pixel.get("fragments_by_frame")
    if not by_frame or index >= len(by_frame):
        return None
    return [(int(offset), int(length)) for offset, length in by_frame[index]]


def decode_frame_native(path: Path, index: int) -> bytes:
    """Decode one frame (0-based) to native little-endian bytes with pydicom's decoder plugins."""
    import numpy as np
    from pydicom.pixels.utils import pixel_array

    array = pixel_array(str(path), index=index)
    return bytes(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())


def _data_set_start(file: BinaryIO) -> int:
    """Offset of the data set after the File Meta Information (PS3.10 7.1), which is always
    Explicit VR Little Endian and never deflated: walk group 0002's element headers."""
    position = _PREAMBLE_AND_PREFIX
    file.seek(position)
    while True:
        header = file.read(8)
        if len(header) < 8:
            raise InvalidDicom("File Meta Information is truncated")
        group, _element, vr = struct.unpack("<HH2s", header[:6])
        if group != 0x0002:
            return position
        if vr in _LONG_VRS:
            extra = file.read(4)
            if len(extra) < 4:
                raise InvalidDicom("File Meta Information is truncated")
            (length,) = struct.unpack("<L", extra)
            position += 12 + length
        else:
            (length,) = struct.unpack("<H", header[6:8])
            position += 8 + length
        file.seek(position)


def read_deflated_frames(
    path: Path, numbers: Sequence[int], limits: ParseLimits
) -> tuple[Dataset, list[bytes]]:
    """The header and the native frames ``numbers`` (1-based) of a Deflated Explicit VR Little
    Endian file (PS3.5 A.5), inflated under ``limits`` (:mod:`dicomvault.dicom.inflate`).

    The offsets recorded at ingest would point into the inflated stream, so there are none:
    the data set is inflated into a spooled temporary file, pydicom reads the elements before
    Pixel Data, and each frame is read at ``value offset + (n - 1) x frame length`` (PS3.5
    8.1.1). Frames are Explicit VR Little Endian bytes, as the inflated data set holds them.
    """
    with path.open("rb") as file:
        file.seek(_data_set_start(file))
        inflated, _size = inflate_data_set(
            file, limits.max_inflated_bytes, limits.max_inflation_ratio
        )
    with inflated:
        header = read_dataset(
            cast(BinaryIO, inflated),
            is_implicit_VR=False,
            is_little_endian=True,
            stop_when=_at_pixel_data,
        )
        element = inflated.read(12)
        if len(element) < 12 or element[:4] != _PIXEL_DATA_TAG:
            raise InvalidDicom("the deflated data set has no native Pixel Data")
        (value_length,) = struct.unpack("<L", element[8:12])
        if value_length == 0xFFFFFFFF:
            raise InvalidDicom("encapsulated Pixel Data cannot be deflated (PS3.5 A.5)")
        value_offset = inflated.tell()
        frame_length = native_frame_length(
            _int_of(header, "Rows"),
            _int_of(header, "Columns"),
            _int_of(header, "SamplesPerPixel"),
            _int_of(header, "BitsAllocated"),
            str(header.get("PhotometricInterpretation") or "").strip(),
        )
        count = max(_int_of(header, "NumberOfFrames") or 1, 1)
        if frame_length is None or frame_length * count > value_length:
            raise InvalidDicom("the deflated Pixel Data does not hold the frames it declares")
        frames = []
        for number in numbers:
            inflated.seek(value_offset + (number - 1) * frame_length)
            frames.append(inflated.read(frame_length))
    header.file_meta = read_file_meta_info(str(path))
    return header, frames


def _at_pixel_data(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) == 0x7FE00010


def _int_of(header: Dataset, keyword: str) -> int | None:
    try:
        value = header.get(keyword)
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None

"""Where the Pixel Data value and its frames lie in a file, without reading the pixels.

Native (uncompressed) Pixel Data is one value; frame *i* occupies ``frame_length`` bytes at
``value_offset + i * frame_length`` (PS3.5 8.1.1, 8.2). Encapsulated Pixel Data is a sequence of
items (PS3.5 A.4): a Basic Offset Table item, then fragments; a frame is one or more fragments.
Which fragments make a frame is taken from the Basic Offset Table, the Extended Offset Table
(7FE0,0001) or, when both are empty, from the fragment count (PS3.5 A.4 Table A.4-1 notes).

Offsets are positions in the file as stored, so frames can be served with range reads.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from dicomvault.dicom.problems import InvalidDicom

__all__ = [
    "ITEM_TAG",
    "MAX_FRAGMENTS",
    "SEQUENCE_DELIMITER_TAG",
    "PixelDataInfo",
    "frames_from_offsets",
    "map_fragments_to_frames",
    "native_frame_length",
    "walk_fragments",
]

ITEM_TAG = 0xFFFEE000
ITEM_DELIMITER_TAG = 0xFFFEE00D
SEQUENCE_DELIMITER_TAG = 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF
MAX_FRAGMENTS = 1 << 20  # more fragments than this is an attack, not an image
_MAX_OFFSET_TABLE_BYTES = 64 * 1024 * 1024

Fragment = tuple[int, int]  # (offset of the fragment's data in the file, its length)


@dataclass(frozen=True)
class PixelDataInfo:
    """The location of the top-level Pixel Data (7FE0,0010) value in the file as stored.

    ``frame_length`` is ``None`` when frames cannot be addressed by byte ranges (for example
    BitsAllocated 1 with frames not ending on a byte boundary, or a value too short for the
    declared frames). ``fragments_by_frame`` is ``None`` for native data, and for encapsulated
    data whose frame boundaries cannot be determined without decoding. Native values of an
    Explicit VR Big Endian file are in big-endian byte order, as stored.
    """

    value_offset: int
    value_length: int | None
    encapsulated: bool
    number_of_frames: int
    frame_length: int | None
    fragments_by_frame: tuple[tuple[Fragment, ...], ...] | None
    vr: str


def walk_fragments(stream: IO[bytes], value_offset: int, limit: int) -> list[Fragment]:
    """Walk the items of an encapsulated value starting at ``value_offset`` (PS3.5 A.4).

    Returns (data offset, length) of every item, the Basic Offset Table first, and leaves the
    stream after the Sequence Delimitation Item. Only item headers are read; item data is
    skipped with seeks. Raises :class:`InvalidDicom` when an item overruns ``limit`` (end of
    the enclosing value or file) or the structure is not item, item, ..., delimiter.
    """
    items: list[Fragment] = []
    position = value_offset
    stream.seek(position)
    while True:
        header = stream.read(8)
        if len(header) < 8:
            raise InvalidDicom(f"encapsulated Pixel Data is truncated at offset {position}")
        group, element, length = struct.unpack("<HHL", header)
        tag = group << 16 | element
        position += 8
        if tag == SEQUENCE_DELIMITER_TAG:
            return items
        if tag != ITEM_TAG:
            raise InvalidDicom(
                f"unexpected tag ({group:04X},{element:04X}) in encapsulated Pixel Data "
                f"at offset {position - 8} (PS3.5 A.4)"
            )
        if length == UNDEFINED_LENGTH or position + length > limit:
            raise InvalidDicom(
                f"encapsulated Pixel Data item at offset {position - 8} has a length past the "
                "end of the value"
            )
        if len(items) >= MAX_FRAGMENTS:
            raise InvalidDicom(f"encapsulated Pixel Data has more than {MAX_FRAGMENTS} fragments")
        items.append((position, length))
        position += length
        stream.seek(position)


def native_frame_length(
    rows: int | None,
    columns: int | None,
    samples_per_pixel: int | None,
    bits_allocated: int | None,
    photometric_interpretation: str | None,
) -> int | None:
    """Bytes per frame of native Pixel Data (PS3.5 8.1.1, PS3.3 C.7.6.3.1.2), or ``None``.

    ``None`` when an attribute is missing or not positive, or when BitsAllocated 1 frames do
    not end on a byte boundary (PS3.5 8.1.1: single-bit frames are packed back to back, so frame
    *i* would start mid-byte and cannot be served as a byte range). YBR_FULL_422 stores two
    chroma samples per two pixels, two thirds of the full size (PS3.3 C.7.6.3.1.2).
    """
    if not rows or not columns or not samples_per_pixel or not bits_allocated:
        return None
    if min(rows, columns, samples_per_pixel, bits_allocated) <= 0:
        return None
    bits = rows * columns * samples_per_pixel * bits_allocated
    if bits % 8:
        return None
    length = bits // 8
    if photometric_interpretation == "YBR_FULL_422" and samples_per_pixel == 3:
        length = length // 3 * 2
    return length


def _read_offsets(stream: IO[bytes], offset: int, length: int, size: int) -> list[int] | None:
    """Read ``length`` bytes at ``offset`` as little-endian unsigned integers of ``size`` bytes."""
    if length % size or length > _MAX_OFFSET_TABLE_BYTES:
        return None
    stream.seek(offset)
    data = stream.read(length)
    if len(data) != length:
        return None
    code = "<" + ("L" if size == 4 else "Q") * (length // size)
    return list(struct.unpack(code, data))


def frames_from_offsets(
    fragments: Sequence[Fragment], frame_offsets: Sequence[int]
) -> tuple[tuple[Fragment, ...], ...] | None:
    """Group ``fragments`` into frames given each frame's offset (PS3.5 A.4).

    Offsets count from the first byte of the first fragment's item tag, as in the Basic and
    Extended Offset Tables. ``None`` when an offset does not start a fragment, the offsets do
    not ascend, or the first frame does not start at the first fragment.
    """
    if not fragments or not frame_offsets:
        return None
    base = fragments[0][0] - 8
    index_by_offset = {offset - 8 - base: index for index, (offset, _) in enumerate(fragments)}
    starts: list[int] = []
    for frame_offset in frame_offsets:
        index = index_by_offset.get(frame_offset)
        if index is None or (starts and index <= starts[-1]):
            return None
        starts.append(index)
    if starts[0] != 0:
        return None
    ends = [*starts[1:], len(fragments)]
    return tuple(tuple(fragments[start:end]) for start, end in zip(starts, ends, strict=True))


def map_fragments_to_frames(
    stream: IO[bytes],
    items: Sequence[Fragment],
    number_of_frames: int,
    extended_offset_table: bytes | None,
) -> tuple[tuple[Fragment, ...], ...] | None:
    """Decide which fragments form each frame of encapsulated Pixel Data (PS3.5 A.4).

    ``items`` are all items of the value, Basic Offset Table first. In order of preference:
    the Basic Offset Table, the Extended Offset Table (7FE0,0001, only allowed with an empty
    Basic Offset Table), one fragment per frame when the counts agree, all fragments when there
    is a single frame. Otherwise ``None``: the caller must decode to find frames.
    """
    if not items:
        raise InvalidDicom("encapsulated Pixel Data has no Basic Offset Table item (PS3.5 A.4)")
    (table_offset, table_length), fragments = items[0], items[1:]
    if not fragments:
        return None
    if table_length:
        offsets = _read_offsets(stream, table_offset, table_length, 4)
        if offsets is not None and len(offsets) == number_of_frames:
            mapped = frames_from_offsets(fragments, offsets)
            if mapped is not None:
                return mapped
    elif extended_offset_table:
        offsets = _offsets_from_bytes(extended_offset_table)
        if offsets is not None and len(offsets) == number_of_frames:
            mapped = frames_from_offsets(fragments, offsets)
            if mapped is not None:
                return mapped
    if len(fragments) == number_of_frames:
        return tuple((fragment,) for fragment in fragments)
    if number_of_frames == 1:
        return (tuple(fragments),)
    return None


def _offsets_from_bytes(table: bytes) -> list[int] | None:
    """Decode an Extended Offset Table value (OV, 64-bit little endian, PS3.3 C.7.6.3.1.8)."""
    if len(table) % 8:
        return None
    return list(struct.unpack("<" + "Q" * (len(table) // 8), table))

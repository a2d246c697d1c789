"""Frame addressing and decoding for WADO-RS /frames (PS3.18 10.4.1.1.3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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

"""What makes a frame renderable, checked from the header before anything is decoded.

:func:`check_bounds` compares the header's dimensions (PS3.3 C.7.6.3) with a cap and with the
Pixel Data length, :func:`check_codestream` compares a compressed frame's own dimensions (JPEG
SOF, JPEG-LS SOF55, JPEG 2000 SIZ) with the header's, so that a small header cannot smuggle in a
codestream that decodes to gigabytes. The refusals are the rendering problems below; the HTTP
edge answers 406 for what is not an image and 422 for the rest.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicomvault.dicom.problems import DicomProblem, TooLarge

__all__ = [
    "ImageGeometry",
    "InvalidRenderRequest",
    "UnrenderableImage",
    "UnsupportedImage",
    "check_bounds",
    "check_codestream",
    "image_geometry",
]

_J2K_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.92",
        "1.2.840.10008.1.2.4.93",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
    }
)
_JPEG_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
    }
)
_RENDERABLE_PHOTOMETRIC = frozenset(
    {
        "MONOCHROME1",
        "MONOCHROME2",
        "RGB",
        "YBR_FULL",
        "YBR_FULL_422",
        "YBR_ICT",
        "YBR_RCT",
        "PALETTE COLOR",
    }
)


class UnsupportedImage(DicomProblem):
    """The instance is not an image this server can render (no Pixel Data, a video or an
    unsupported Photometric Interpretation): no rendered media type is available for it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, failure_reason=0xC000, kind="unsupported_image")


class UnrenderableImage(DicomProblem):
    """An image whose header and pixels disagree, or whose pixels cannot be decoded."""

    def __init__(self, message: str) -> None:
        super().__init__(message, failure_reason=0xC000, kind="unrenderable_image")


class InvalidRenderRequest(DicomProblem):
    """Rendering parameters that cannot apply to this image (an empty source region)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, failure_reason=0xC000, kind="invalid_request")


@dataclass(frozen=True)
class ImageGeometry:
    """The Image Pixel Module attributes that size a frame (PS3.3 C.7.6.3)."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    number_of_frames: int

    @property
    def frame_samples(self) -> int:
        return self.rows * self.columns * self.samples_per_pixel

    @property
    def display_samples(self) -> int:
        """Samples per pixel of the rendered image: 1 for grayscale, 3 for every colour
        interpretation (PALETTE COLOR has one stored sample but renders as RGB)."""
        return 1 if self.photometric_interpretation.startswith("MONOCHROME") else 3

    @property
    def native_frame_bytes(self) -> int:
        """Bytes of one native frame, sub-sampling of YBR_FULL_422 included (PS3.5 8.2)."""
        samples = self.frame_samples
        if self.photometric_interpretation == "YBR_FULL_422":
            samples = samples // 3 * 2
        return math.ceil(samples * self.bits_allocated / 8)


def _int(header: Dataset, keyword: str, default: int | None = None) -> int:
    try:
        value = header.get(keyword)
        if value is None or value == "":
            if default is None:
                raise UnsupportedImage(f"no {keyword}: not an image (PS3.3 C.7.6.3)")
            return default
        return int(value)
    except (TypeError, ValueError):
        raise UnrenderableImage(f"{keyword} is not a number") from None


def image_geometry(header: Dataset) -> ImageGeometry:
    """The frame dimensions of ``header``, checked for sense (not yet for size)."""
    if "Rows" not in header or "Columns" not in header:
        raise UnsupportedImage("no Rows/Columns: the instance is not an image")
    photometric = str(header.get("PhotometricInterpretation") or "").strip().upper()
    geometry = ImageGeometry(
        rows=_int(header, "Rows"),
        columns=_int(header, "Columns"),
        samples_per_pixel=_int(header, "SamplesPerPixel", 1),
        bits_allocated=_int(header, "BitsAllocated"),
        bits_stored=_int(header, "BitsStored", _int(header, "BitsAllocated")),
        pixel_representation=_int(header, "PixelRepresentation", 0),
        photometric_interpretation=photometric,
        number_of_frames=max(_int(header, "NumberOfFrames", 1), 1),
    )
    if photometric not in _RENDERABLE_PHOTOMETRIC:
        raise UnsupportedImage(f"Photometric Interpretation {photometric!r} is not rendered")
    if geometry.rows <= 0 or geometry.columns <= 0:
        raise UnrenderableImage("Rows and Columns must be positive")
    single_sample = photometric.startswith("MONOCHROME") or photometric == "PALETTE COLOR"
    if geometry.samples_per_pixel != (1 if single_sample else 3):
        raise UnrenderableImage(
            f"Samples per Pixel {geometry.samples_per_pixel} does not fit {photometric}"
        )
    if geometry.bits_allocated not in (1, 8, 16, 32):
        raise UnrenderableImage(f"Bits Allocated {geometry.bits_allocated} is not rendered")
    if not 1 <= geometry.bits_stored <= geometry.bits_allocated:
        raise UnrenderableImage("Bits Stored must be between 1 and Bits Allocated")
    return geometry


def check_bounds(
    geometry: ImageGeometry, *, native_value_length: int | None, max_frame_samples: int
) -> None:
    """Refuse dimension bombs before decoding anything.

    One frame is decoded at a time, so a frame's samples (Rows x Columns x Samples per Pixel)
    must fit ``max_frame_samples``. For native data, all frames together (x Bits Allocated)
    must fit the Pixel Data value: a header that claims more than the file holds is lying.
    """
    if geometry.frame_samples > max_frame_samples:
        raise TooLarge(
            f"a frame of {geometry.rows} x {geometry.columns} x {geometry.samples_per_pixel} "
            f"samples is more than this server renders ({max_frame_samples})"
        )
    if native_value_length is not None:
        needed = geometry.native_frame_bytes * geometry.number_of_frames
        if geometry.bits_allocated == 1:
            needed = math.ceil(geometry.frame_samples * geometry.number_of_frames / 8)
        if needed > native_value_length:
            raise UnrenderableImage(
                f"the header describes {needed} bytes of pixels but Pixel Data holds "
                f"{native_value_length} (PS3.5 8.1.1)"
            )


def _jpeg_dimensions(data: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) from a JPEG (ISO/IEC 10918-1 B.2.2) or JPEG-LS (ISO/IEC
    14495-1 C.2.2) frame header; ``None`` when the stream has none."""
    if data[:2] != b"\xff\xd8":
        return None
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        # SOF0-SOF15 except DHT (C4), JPG (C8), DAC (CC); SOF55 (F7) is JPEG-LS.
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7:
            if offset + 10 > len(data):
                return None
            rows, columns = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return rows, columns, data[offset + 9]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            offset += 2
            continue
        if marker == 0xDA:  # start of scan before any frame header
            return None
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        offset += 2 + length
    return None


def _j2k_dimensions(data: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) from a JPEG 2000 SIZ marker segment (ISO/IEC 15444-1
    A.5.1), also inside a JP2 file's contiguous codestream box (15444-1 I.5.4)."""
    offset = 0
    if data[4:8] == b"jP  ":
        while offset + 8 <= len(data):
            length, box = struct.unpack(">I4s", data[offset : offset + 8])
            if box == b"jp2c":
                offset += 8
                break
            if length < 8:
                return None
            offset += length
        else:
            return None
    if data[offset : offset + 4] != b"\xff\x4f\xff\x51" or offset + 42 > len(data):
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", data[offset + 8 : offset + 24])
    (components,) = struct.unpack(">H", data[offset + 40 : offset + 42])
    return ysiz - yosiz, xsiz - xosiz, components


def check_codestream(transfer_syntax: str, frame: bytes, geometry: ImageGeometry) -> None:
    """Refuse a compressed frame whose own dimensions exceed the header's (a decompression
    bomb: the decoder allocates what the codestream says, not what the header says).

    JPEG, JPEG-LS and JPEG 2000 streams must declare their size; RLE (PS3.5 G) and native
    data are decoded into buffers sized from the header, so they need no check here.
    """
    if transfer_syntax in _JPEG_SYNTAXES:
        found = _jpeg_dimensions(frame)
    elif transfer_syntax in _J2K_SYNTAXES:
        found = _j2k_dimensions(frame)
    else:
        return
    if found is None:
        raise UnrenderableImage("the compressed frame does not declare its dimensions")
    rows, columns, components = found
    if rows == 0:  # JPEG allows the height to come later (DNL marker): take the header's
        rows = geometry.rows
    if rows * columns * max(components, 1) > geometry.frame_samples:
        raise UnrenderableImage(
            f"the compressed frame is {rows} x {columns} x {components}, larger than the "
            f"header's {geometry.rows} x {geometry.columns} x {geometry.samples_per_pixel}"
        )

"""Rendering image frames into consumer media types (PS3.18 8.3.5, 8.7.4; PS3.4 N.2).

Pure pixel logic, no I/O: the caller hands over the header (a pydicom data set read without
Pixel Data) and the encoded bytes of the frames to render; out come JPEG, PNG or GIF bytes.

The grayscale pipeline follows PS3.4 N.2.1: stored values → Modality LUT (Rescale Slope and
Intercept, or a Modality LUT Sequence) → VOI LUT (the request's ``window``, else the VOI LUT
Sequence, else the file's first Window Center/Width, else the frame's own range) → MONOCHROME1
or Presentation LUT Shape INVERSE inverts → 8 bits (PS3.18 8.7.4: at most 8 bits per channel).
Color: YBR is converted to RGB, PALETTE COLOR goes through its palette (PS3.3 C.7.6.3.1.5),
more than 8 bits per sample are scaled. Then the source region and viewport (PS3.18 8.3.5.1.3)
and the encoder. pydicom's own helpers (``pydicom.pixels``) do the DICOM arithmetic.

Nothing is decoded before it is known to fit (``dicom/image_checks.py``); animations are
written frame by frame (``dicom/gif.py``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    apply_windowing,
    convert_color_space,
)
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from dicomvault.dicom.gif import AnimatedGif
from dicomvault.dicom.image_checks import (
    ImageGeometry,
    InvalidRenderRequest,
    UnrenderableImage,
    UnsupportedImage,
    check_bounds,
    check_codestream,
    image_geometry,
)
from dicomvault.dicom.problems import DicomProblem

__all__ = [
    "GIF",
    "JPEG",
    "PNG",
    "RENDERED_MEDIA_TYPES",
    "EncodedFrame",
    "RenderOptions",
    "Viewport",
    "Window",
    "decode_frame",
    "display_values",
    "encode_images",
    "fit_viewport",
    "frame_attributes",
    "frame_duration_ms",
    "output_size",
    "render_frame",
    "render_image",
]

JPEG = "image/jpeg"
PNG = "image/png"
GIF = "image/gif"
#: What the origin server renders to (PS3.18 Table 8.7.4-1: JPEG default, PNG and GIF required).
RENDERED_MEDIA_TYPES = (JPEG, PNG, GIF)
VOI_FUNCTIONS = frozenset({"LINEAR", "LINEAR_EXACT", "SIGMOID"})
#: Largest side of an output image (JPEG's limit is 65,535; a GIF's too).
MAX_OUTPUT_SIDE = 16384
_CHUNK_SAMPLES = 1 << 20  # grayscale arithmetic runs on this many samples at a time
_MAX_TABLE = 1 << 16  # stored values one display table may cover
_DEFAULT_FRAME_MS = 100
U8Array = npt.NDArray[np.uint8]


# --------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class Window:
    """``window=center,width,function`` (PS3.18 8.3.5.1.4): a VOI LUT Function (PS3.3
    C.11.2.1.2) applied instead of the instance's own VOI."""

    center: float
    width: float
    function: str = "LINEAR"


@dataclass(frozen=True)
class Viewport:
    """``viewport=vw,vh[,sx,sy,sw,sh]`` (PS3.18 8.3.5.1.3).

    The source region starts at (``sx``, ``sy``) and is ``sw`` x ``sh`` pixels (by default the
    rest of the image); a negative ``sw`` or ``sh`` takes the region to the left of / above the
    start and flips it. The region is scaled to fit ``vw`` x ``vh``, keeping its aspect ratio.
    """

    width: int
    height: int
    sx: int | None = None
    sy: int | None = None
    sw: int | None = None
    sh: int | None = None

    @property
    def has_region(self) -> bool:
        return any(v is not None for v in (self.sx, self.sy, self.sw, self.sh))


@dataclass(frozen=True)
class RenderOptions:
    """Everything that changes the rendered bytes; :meth:`cache_key` is their normal form."""

    media_type: str = JPEG
    window: Window | None = None
    viewport: Viewport | None = None
    quality: int = 90
    # A thumbnail is never enlarged beyond the image's own size; a rendered viewport is.
    upscale: bool = True

    def cache_key(self) -> str:
        window = "-" if self.window is None else repr(self.window)
        viewport = "-" if self.viewport is None else repr(self.viewport)
        quality = self.quality if self.media_type == JPEG else "-"
        return f"{self.media_type}|{window}|{viewport}|q{quality}|up{int(self.upscale)}"


@dataclass(frozen=True)
class EncodedFrame:
    """Encoded pixels of one frame as the file holds them.

    Native data: the frame's bytes (``index`` 0, ``frames_in_data`` 1), or a whole Pixel Data
    value holding ``frames_in_data`` frames of which ``index`` is wanted (bit-packed frames).
    Encapsulated data: the frame's fragments joined into one codestream. ``number`` is the
    frame's 1-based number in the instance, for per-frame functional groups.
    """

    data: bytes
    number: int = 1
    index: int = 0
    frames_in_data: int = 1


# --------------------------------------------------------------------------------------------
# Decoding


def _replace(ds: Dataset, keyword: str, value: Any, vr: str | None = None) -> None:
    """Put a new element in ``ds``: assigning an attribute would change the value of the
    element object ``ds`` shares with the header it was detached from."""
    tag = tag_for_keyword(keyword)
    assert tag is not None
    ds[tag] = DataElement(tag, vr or dictionary_VR(tag), value)


def _detached(header: Dataset) -> Dataset:
    """A data set holding the same elements in a mapping of its own, with the same File Meta
    Information and original encoding: adding, replacing (:func:`_replace`) or deleting its
    elements leaves ``header`` alone (``copy.copy`` of a pydicom data set shares the mapping)."""
    view = Dataset(dict(header.items()))
    file_meta = getattr(header, "file_meta", None)
    if file_meta is not None:
        view.file_meta = file_meta
    implicit, little = header.original_encoding
    view.set_original_encoding(implicit, little, header.original_character_set)
    return view


def decode_frame(
    header: Dataset, transfer_syntax: str, frame: EncodedFrame
) -> tuple[npt.NDArray[Any], str]:
    """Decode one frame with pydicom's decoder plugins: (array, its photometric interpretation).

    YBR_FULL and YBR_FULL_422 come back as RGB (pydicom ``as_rgb``); JPEG 2000's YBR_ICT and
    YBR_RCT are RGB once the decoder has undone the component transform.
    """
    syntax = UID(transfer_syntax)
    ds = _detached(header)
    for tag in (0x7FE00001, 0x7FE00002):  # offset tables of the whole value, not this frame
        if tag in ds:
            del ds[tag]
    if syntax.is_encapsulated:
        _replace(ds, "PixelData", encapsulate([frame.data]), "OB")
        _replace(ds, "NumberOfFrames", 1)
        index = 0
    else:
        _replace(ds, "PixelData", frame.data, "OB" if int(header.BitsAllocated) <= 8 else "OW")
        _replace(ds, "NumberOfFrames", frame.frames_in_data)
        index = frame.index
        if syntax == DeflatedExplicitVRLittleEndian:
            syntax = ExplicitVRLittleEndian  # the caller has inflated the data set
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = syntax
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise UnsupportedImage(f"no decoder for transfer syntax {transfer_syntax}") from None
    if not decoder.is_available:
        raise UnsupportedImage(f"no decoder installed for transfer syntax {transfer_syntax}")
    try:
        array, properties = decoder.as_array(ds, index=index)  # as_rgb by default
    except Exception as exc:  # any decoder failure on untrusted bytes is the image's fault
        raise UnrenderableImage(f"the pixel data cannot be decoded: {type(exc).__name__}") from None
    photometric = str(properties.get("photometric_interpretation", "")).upper()
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        array = convert_color_space(array, "YBR_FULL", "RGB")
        photometric = "RGB"
    elif photometric in ("YBR_ICT", "YBR_RCT"):
        photometric = "RGB"
    return array, photometric


_FRAME_GROUP_ATTRIBUTES = {
    # Pixel Value Transformation (PS3.3 C.7.6.16.2.9) and Frame VOI LUT (C.7.6.16.2.10)
    0x00289145: ("RescaleSlope", "RescaleIntercept"),
    0x00289132: ("WindowCenter", "WindowWidth", "VOILUTFunction"),
}


def frame_attributes(header: Dataset, number: int) -> Dataset:
    """The header as seen by frame ``number``: for enhanced multi-frame objects the Pixel
    Value Transformation and Frame VOI LUT of the Per-Frame, else Shared, Functional Groups
    (PS3.3 C.7.6.16) become top-level attributes, where the classic pipeline looks for them."""
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    shared = header.get("SharedFunctionalGroupsSequence")
    if not per_frame and not shared:
        return header
    view = _detached(header)
    groups: list[Dataset] = []
    if per_frame and 1 <= number <= len(per_frame):
        groups.append(per_frame[number - 1])
    if shared:
        groups.append(shared[0])
    for sequence_tag, keywords in _FRAME_GROUP_ATTRIBUTES.items():
        for group in groups:
            items = group.get(sequence_tag)
            if items is not None and items.value:
                item = items.value[0]
                for keyword in keywords:
                    if keyword in item and keyword not in header:
                        view[item[keyword].tag] = item[keyword]
                break
    return view


# --------------------------------------------------------------------------------------------
# Values for display


def display_values(
    pixels: npt.NDArray[Any], photometric: str, header: Dataset, window: Window | None
) -> U8Array:
    """8-bit display values, (rows, columns) grayscale or (rows, columns, 3) RGB."""
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        return _grayscale(pixels, header, window, photometric == "MONOCHROME1")
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, header)[..., :3]
        depth = int(header.RedPaletteColorLookupTableDescriptor[2])
        return _to_u8(rgb, 2**depth - 1)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise UnrenderableImage("a color frame must have three samples per pixel")
    bits = int(header.get("BitsStored") or header.BitsAllocated)
    if pixels.dtype == np.uint8 and bits >= 8:
        return np.ascontiguousarray(pixels)
    return _to_u8(pixels, 2 ** min(bits, 32) - 1)


def _to_u8(values: npt.NDArray[Any], maximum: int) -> U8Array:
    if maximum == 255 and values.dtype == np.uint8:
        return np.ascontiguousarray(values, dtype=np.uint8)
    scaled = values.astype(np.float64) * (255.0 / max(maximum, 1))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _grayscale(
    pixels: npt.NDArray[Any], header: Dataset, window: Window | None, monochrome1: bool
) -> U8Array:
    """PS3.4 N.2.1.1. Integer frames whose values span at most 65,536 numbers (every 8- to
    16-bit image) go through a table: the pipeline runs once per stored value from the frame's
    minimum to its maximum, then each pixel looks its value up. Other frames are computed a
    block of rows at a time, so float intermediates stay small either way."""
    voi = _voi_of(header, window)
    rows = pixels.shape[0]
    step = max(1, _CHUNK_SAMPLES // max(int(np.prod(pixels.shape[1:])), 1))
    blocks = [(start, min(start + step, rows)) for start in range(0, rows, step)]
    low = int(pixels.min()) if pixels.size else 0
    if pixels.dtype.kind in "iu" and pixels.size and int(pixels.max()) - low < _MAX_TABLE:
        out = _through_table(pixels, header, voi, blocks, low)
    else:
        out = _computed(pixels, header, voi, blocks)
    if monochrome1 or str(header.get("PresentationLUTShape", "")).upper() == "INVERSE":
        np.subtract(255, out, out=out)
    return out


def _through_table(
    pixels: npt.NDArray[Any],
    header: Dataset,
    voi: Window | Dataset | None,
    blocks: Sequence[tuple[int, int]],
    low: int,
) -> U8Array:
    domain = np.arange(low, int(pixels.max()) + 1, dtype=np.int64)
    values = apply_modality_lut(domain, header)
    offsets = [np.subtract(pixels[start:stop], low, dtype=np.int64) for start, stop in blocks]
    value_range: tuple[float, float] | None = None
    if voi is None:  # no VOI anywhere: the range of the values present, after the Modality LUT
        present = np.zeros(domain.shape, dtype=bool)
        for offset in offsets:
            present[offset] = True
        found = values[present]
        value_range = (float(found.min()), float(found.max()))
    table = _apply_voi_block(values, voi, value_range)
    out = np.empty(pixels.shape[:2], dtype=np.uint8)
    for (start, stop), offset in zip(blocks, offsets, strict=True):
        out[start:stop] = table[offset]
    return out


def _computed(
    pixels: npt.NDArray[Any],
    header: Dataset,
    voi: Window | Dataset | None,
    blocks: Sequence[tuple[int, int]],
) -> U8Array:
    value_range: tuple[float, float] | None = None
    if voi is None:  # no VOI anywhere: the frame's own range after the Modality LUT
        lows, highs = [], []
        for start, stop in blocks:
            values = apply_modality_lut(pixels[start:stop], header)
            lows.append(float(np.min(values)))
            highs.append(float(np.max(values)))
        value_range = (min(lows), max(highs))
    out = np.empty(pixels.shape[:2], dtype=np.uint8)
    for start, stop in blocks:
        values = apply_modality_lut(pixels[start:stop], header)
        out[start:stop] = _apply_voi_block(values, voi, value_range)
    return out


def _voi_of(header: Dataset, window: Window | None) -> Window | Dataset | None:
    """The VOI transformation to apply: the request's window, the VOI LUT Sequence's first
    item (as pydicom prefers), the first Window Center/Width (PS3.3 C.11.2.1.2), or none."""
    if window is not None:
        return window
    sequence = header.get("VOILUTSequence")
    if sequence:
        item = sequence[0]
        if item.get("LUTDescriptor") is not None and item.get("LUTData") is not None:
            return header
    center, width = _first(header.get("WindowCenter")), _first(header.get("WindowWidth"))
    if center is None or width is None:
        return None
    function = str(header.get("VOILUTFunction") or "LINEAR").strip().upper()
    if function not in VOI_FUNCTIONS:
        function = "LINEAR"
    minimum_width = 1.0 if function == "LINEAR" else 0.0
    if not math.isfinite(center) or not math.isfinite(width) or width <= minimum_width:
        return None  # an unusable stored window: fall back to the frame's range
    return Window(center, width, function)


def _first(value: Any) -> float | None:
    """First value of a possibly multi-valued DS (PS3.3 C.11.2.1.2: several alternative views)."""
    if value is None or value == "":
        return None
    if isinstance(value, str | bytes):
        return None
    try:
        return float(value[0] if isinstance(value, Sequence) else value)
    except (TypeError, ValueError, IndexError):
        return None


def _window_dataset(window: Window) -> Dataset:
    """A VOI LUT Module for pydicom's ``apply_windowing`` whose output range is 0-255:
    unsigned 8 bits stored and no rescale make pydicom's y_min 0 and y_max 255."""
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored = 8
    ds.PixelRepresentation = 0
    ds.WindowCenter = window.center
    ds.WindowWidth = window.width
    ds.VOILUTFunction = window.function
    return ds


def _apply_voi_block(
    values: npt.NDArray[Any],
    voi: Window | Dataset | None,
    value_range: tuple[float, float] | None,
) -> U8Array:
    if isinstance(voi, Window):
        windowed: npt.NDArray[np.float64] = apply_windowing(values, _window_dataset(voi))
        return np.clip(np.rint(windowed), 0, 255).astype(np.uint8)
    if isinstance(voi, Dataset):
        item = voi.VOILUTSequence[0]
        depth = int(item.LUTDescriptor[2])
        mapped = apply_voi(np.rint(values).astype(np.int64), voi)
        return _to_u8(mapped, 2**depth - 1)
    assert value_range is not None
    low, high = value_range
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Geometry and encoding


def output_size(
    columns: int, rows: int, viewport: Viewport | None, *, upscale: bool
) -> tuple[int, int]:
    """(width, height) of the image rendered from a ``columns`` x ``rows`` frame: what
    :func:`fit_viewport` makes of it, computed without any pixels, so that a response can be
    sized (and refused) before anything is decoded."""
    if viewport is None:
        return columns, rows
    if viewport.has_region:
        left, top, right, bottom = _region_box(columns, rows, viewport)
        columns, rows = right - left, bottom - top
    return _scaled_size(columns, rows, viewport, upscale=upscale)


def _scaled_size(width: int, height: int, viewport: Viewport, *, upscale: bool) -> tuple[int, int]:
    scale = min(viewport.width / width, viewport.height / height)
    if not upscale:
        scale = min(scale, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit_viewport(image: Image.Image, viewport: Viewport | None, *, upscale: bool) -> Image.Image:
    """Crop to the source region, flip for negative extents, scale into the viewport keeping
    the aspect ratio (PS3.18 8.3.5.1.3); without a viewport the image keeps its size."""
    if viewport is None:
        return image
    if viewport.has_region:
        image = _source_region(image, viewport)
    size = _scaled_size(image.width, image.height, viewport, upscale=upscale)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _region_box(width: int, height: int, viewport: Viewport) -> tuple[int, int, int, int]:
    """The source region (left, top, right, bottom) clipped to the image; 400 when empty."""
    sx = viewport.sx or 0
    sy = viewport.sy or 0
    sw = viewport.sw if viewport.sw is not None else width - sx
    sh = viewport.sh if viewport.sh is not None else height - sy
    left, right = sorted((sx, sx + sw))
    top, bottom = sorted((sy, sy + sh))
    left, top = max(left, 0), max(top, 0)
    right, bottom = min(right, width), min(bottom, height)
    if right <= left or bottom <= top:
        raise InvalidRenderRequest("the viewport's source region lies outside the image")
    return left, top, right, bottom


def _source_region(image: Image.Image, viewport: Viewport) -> Image.Image:
    region = image.crop(_region_box(image.width, image.height, viewport))
    if viewport.sw is not None and viewport.sw < 0:
        region = region.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if viewport.sh is not None and viewport.sh < 0:
        region = region.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return region


def encode_images(
    images: Sequence[Image.Image], media_type: str, *, quality: int, frame_ms: int
) -> bytes:
    """JPEG baseline (PS3.18 8.7.4 requires the baseline 8-bit Huffman process), PNG, or GIF
    (animated when there are several frames, written as :class:`AnimatedGif` does)."""
    out = io.BytesIO()
    first = images[0]
    if media_type == JPEG:
        first.save(out, format="JPEG", quality=quality, optimize=False, progressive=False)
    elif media_type == PNG:
        first.save(out, format="PNG", compress_level=3)
    elif media_type == GIF:
        if len(images) == 1:
            first.save(out, format="GIF")
        else:
            animation = AnimatedGif(frame_ms)
            for image in images:
                out.write(animation.add(image))
            out.write(animation.end())
    else:
        raise ValueError(f"not a rendered media type: {media_type}")
    return out.getvalue()


def frame_duration_ms(header: Dataset) -> int:
    """Display time of one frame: Frame Time (0018,1063), else Recommended Display Frame Rate
    (0008,2144) or Cine Rate (0018,0040); 100 ms when none is given (PS3.3 C.7.6.5)."""
    for keyword, per_second in (
        ("FrameTime", False),
        ("RecommendedDisplayFrameRate", True),
        ("CineRate", True),
    ):
        value = _first(header.get(keyword))
        if value is not None and value > 0 and math.isfinite(value):
            return round(1000 / value) if per_second else round(value)
    return _DEFAULT_FRAME_MS


def render_frame(
    header: Dataset,
    transfer_syntax: str,
    frame: EncodedFrame,
    options: RenderOptions,
    geometry: ImageGeometry,
) -> Image.Image:
    """One frame through the pipeline, up to the image to encode (8-bit "L" or "RGB").

    ``geometry`` is the header's, already checked with :func:`check_bounds`; a compressed frame
    is checked with :func:`check_codestream` before it is decoded. The decoded arrays live only
    in this call: what comes out is the (viewport-sized) image.
    """
    if UID(transfer_syntax).is_encapsulated:
        check_codestream(transfer_syntax, frame.data, geometry)
    pixels, photometric = decode_frame(header, transfer_syntax, frame)
    view = frame_attributes(header, frame.number)
    try:
        values = display_values(pixels, photometric, view, options.window)
    except DicomProblem:
        raise
    except Exception as exc:  # LUTs and palettes of untrusted files
        raise UnrenderableImage(f"the pixels cannot be rendered: {type(exc).__name__}") from None
    del pixels
    image = Image.fromarray(values)  # uint8: "L" for (rows, columns), "RGB" with 3 samples
    return fit_viewport(image, options.viewport, upscale=options.upscale)


def render_image(
    header: Dataset,
    transfer_syntax: str,
    frames: Sequence[EncodedFrame],
    options: RenderOptions,
    *,
    max_frame_samples: int,
) -> bytes:
    """The whole pipeline for one output image (several frames only for an animated GIF,
    encoded frame by frame: one decoded frame at a time).

    ``header`` must already have passed :func:`check_bounds`; each compressed frame is checked
    with :func:`check_codestream` before it is decoded.
    """
    geometry = image_geometry(header)
    check_bounds(geometry, native_value_length=None, max_frame_samples=max_frame_samples)
    if options.media_type == GIF and len(frames) > 1:
        animation = AnimatedGif(frame_duration_ms(header))
        out = io.BytesIO()
        for frame in frames:
            out.write(
                animation.add(render_frame(header, transfer_syntax, frame, options, geometry))
            )
        out.write(animation.end())
        return out.getvalue()
    image = render_frame(header, transfer_syntax, frames[0], options, geometry)
    return encode_images(
        [image], options.media_type, quality=options.quality, frame_ms=frame_duration_ms(header)
    )

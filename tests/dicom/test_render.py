"""dicom/render.py against hand-computed pixel values (PS3.4 N.2, PS3.3 C.11, PS3.18 8.3.5).

Every expectation below is worked out by hand from the Standard's formulas and written as a
literal; PNG output is lossless, so the rendered values are compared exactly. Small synthetic
data sets only.
"""

from __future__ import annotations

import copy
import io
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from dicomvault.dicom.gif import AnimatedGif
from dicomvault.dicom.image_checks import (
    InvalidRenderRequest,
    UnrenderableImage,
    UnsupportedImage,
    check_bounds,
    check_codestream,
    image_geometry,
)
from dicomvault.dicom.problems import TooLarge
from dicomvault.dicom.render import (
    GIF,
    JPEG,
    PNG,
    EncodedFrame,
    RenderOptions,
    Viewport,
    Window,
    fit_viewport,
    output_size,
    render_image,
)

LE = str(ExplicitVRLittleEndian)
CAP = 1 << 24


def header(
    rows: int,
    columns: int,
    *,
    photometric: str = "MONOCHROME2",
    bits_allocated: int = 16,
    bits_stored: int | None = None,
    signed: bool = False,
    samples: int = 1,
    frames: int | None = None,
    **attributes: Any,
) -> Dataset:
    """An Image Pixel Module (PS3.3 C.7.6.3) without Pixel Data."""
    ds = Dataset()
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored or bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames is not None:
        ds.NumberOfFrames = frames
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def png(
    hdr: Dataset,
    data: bytes,
    *,
    syntax: str = LE,
    frame: EncodedFrame | None = None,
    **options: Any,
) -> npt.NDArray[np.uint8]:
    """Render to PNG and read the pixels back."""
    encoded = frame or EncodedFrame(data)
    out = render_image(
        hdr, syntax, [encoded], RenderOptions(media_type=PNG, **options), max_frame_samples=CAP
    )
    return np.asarray(Image.open(io.BytesIO(out)))


def _testdata(name: str) -> str:
    return str(get_testdata_file(name))


def row(values: list[int], dtype: str) -> bytes:
    return np.array([values], dtype=dtype).tobytes()


# -- grayscale: Modality LUT, VOI, polarity ------------------------------------------------------


def test_file_window_linear_16_bit_unsigned() -> None:
    # PS3.3 C.11.2.1.2.1, c=100 w=101: x <= 49.5 -> 0, x > 149.5 -> 255,
    # else ((x - 99.5) / 100 + 0.5) * 255: 50 -> 1.275, 100 -> 128.775, 149 -> 254.0
    hdr = header(1, 6, WindowCenter=100, WindowWidth=101)
    got = png(hdr, row([0, 49, 50, 100, 149, 300], "<u2"))
    assert got.tolist() == [[0, 0, 1, 129, 254, 255]]


def test_monochrome1_is_inverted() -> None:
    hdr = header(1, 6, photometric="MONOCHROME1", WindowCenter=100, WindowWidth=101)
    got = png(hdr, row([0, 49, 50, 100, 149, 300], "<u2"))
    assert got.tolist() == [[255, 255, 254, 126, 1, 0]]


def test_presentation_lut_shape_inverse_inverts_monochrome2() -> None:
    hdr = header(1, 3, PresentationLUTShape="INVERSE", WindowCenter=100, WindowWidth=101)
    assert png(hdr, row([0, 100, 300], "<u2")).tolist() == [[255, 126, 0]]


def test_signed_16_bit_with_rescale_and_window() -> None:
    # HU = stored - 1024; c=-1000 w=100: HU <= -1050 -> 0, HU > -951 -> 255,
    # -1048 -> ((-1048 + 1000.5) / 99 + 0.5) * 255 = 5.15; -1024 -> 66.97
    hdr = header(
        1,
        4,
        signed=True,
        RescaleSlope=1,
        RescaleIntercept=-1024,
        WindowCenter=-1000,
        WindowWidth=100,
    )
    got = png(hdr, row([-1000, -24, 0, 1000], "<i2"))
    # stored -1000 -> HU -2024 -> 0; -24 -> -1048 -> 5; 0 -> -1024 -> 67; 1000 -> -24 -> 255
    assert got.tolist() == [[0, 5, 67, 255]]


def test_fractional_rescale_slope() -> None:
    # value = 0.5 * stored + 10; c=60 w=41: v <= 39.5 -> 0, v > 79.5 -> 255,
    # stored 100 -> 60 -> ((60 - 59.5) / 40 + 0.5) * 255 = 130.6
    hdr = header(1, 3, RescaleSlope=0.5, RescaleIntercept=10, WindowCenter=60, WindowWidth=41)
    assert png(hdr, row([50, 100, 200], "<u2")).tolist() == [[0, 131, 255]]


def test_12_bits_stored_in_16() -> None:
    # c=2048 w=4096: x <= 0 -> 0; 2048 -> ((2048 - 2047.5) / 4095 + 0.5) * 255 = 127.53;
    # 4095 -> (2047.5 / 4095 + 0.5) * 255 = 255
    hdr = header(1, 3, bits_stored=12, WindowCenter=2048, WindowWidth=4096)
    assert png(hdr, row([0, 2048, 4095], "<u2")).tolist() == [[0, 128, 255]]


def test_8_bit_without_any_window_uses_the_frame_range() -> None:
    # min 10 -> 0, max 30 -> 255, 20 -> 127.5 rounds to even 128
    hdr = header(1, 3, bits_allocated=8)
    assert png(hdr, row([10, 20, 30], "u1")).tolist() == [[0, 128, 255]]


def test_8_bit_signed() -> None:
    # frame range -128..127 after no rescale: -128 -> 0, 127 -> 255, 0 -> 128 * 255/255 = 128
    hdr = header(1, 3, bits_allocated=8, signed=True)
    assert png(hdr, row([-128, 0, 127], "i1")).tolist() == [[0, 128, 255]]


def test_32_bit_values_too_wide_for_a_table_are_computed() -> None:
    # 0..200000 spans more than 65,536 values: 50000 -> 50000 * 255 / 200000 = 63.75
    hdr = header(1, 3, bits_allocated=32)
    assert png(hdr, row([0, 50000, 200000], "<u4")).tolist() == [[0, 64, 255]]
    # c=100000 w=100001: 100000 -> ((100000 - 99999.5) / 100000 + 0.5) * 255 = 127.501
    hdr = header(1, 3, bits_allocated=32, WindowCenter=100000, WindowWidth=100001)
    assert png(hdr, row([0, 100000, 200000], "<u4")).tolist() == [[0, 128, 255]]


def test_constant_frame_without_window_is_black() -> None:
    assert png(header(1, 2), row([7, 7], "<u2")).tolist() == [[0, 0]]


def test_first_of_several_window_values() -> None:
    hdr = header(1, 3, WindowCenter=[100, 5000], WindowWidth=[101, 10])
    assert png(hdr, row([0, 100, 300], "<u2")).tolist() == [[0, 129, 255]]


def test_unusable_file_window_falls_back_to_the_frame_range() -> None:
    # 0..100 -> 0..255: 60 -> 153
    hdr = header(1, 3, WindowCenter=100, WindowWidth=0)
    assert png(hdr, row([0, 60, 100], "<u2")).tolist() == [[0, 153, 255]]


def test_requested_window_replaces_the_file_window() -> None:
    hdr = header(1, 3, WindowCenter=5000, WindowWidth=2)
    got = png(hdr, row([0, 100, 300], "<u2"), window=Window(100, 101))
    assert got.tolist() == [[0, 129, 255]]


def test_linear_exact_window() -> None:
    # PS3.3 C.11.2.1.3.2, c=100 w=100: x <= 50 -> 0, x > 150 -> 255, else ((x-100)/100+0.5)*255
    # 75 -> 63.75, 100 -> 127.5 (rounds to 128), 150 -> 255
    got = png(
        header(1, 5), row([50, 75, 100, 150, 151], "<u2"), window=Window(100, 100, "LINEAR_EXACT")
    )
    assert got.tolist() == [[0, 64, 128, 255, 255]]


def test_sigmoid_window() -> None:
    # PS3.3 C.11.2.1.3.1: 255 / (1 + exp(-4 (x - 100) / 100)):
    # 50 -> 255 / (1 + e^2) = 30.4, 100 -> 127.5, 150 -> 255 / (1 + e^-2) = 224.6
    got = png(header(1, 3), row([50, 100, 150], "<u2"), window=Window(100, 100, "SIGMOID"))
    assert got.tolist() == [[30, 128, 225]]


def test_voi_lut_sequence_8_bit() -> None:
    # PS3.3 C.11.2.1.1: 4 entries from 10; below the first -> first entry, above -> last entry
    item = Dataset()
    item.LUTDescriptor = [4, 10, 8]
    item.LUTData = [0, 100, 200, 255]
    hdr = header(1, 6, VOILUTSequence=[item])
    got = png(hdr, row([5, 10, 11, 12, 13, 40], "<u2"))
    assert got.tolist() == [[0, 0, 100, 200, 255, 255]]


def test_voi_lut_sequence_16_bit_is_preferred_over_the_window() -> None:
    item = Dataset()
    item.LUTDescriptor = [3, 0, 16]
    item.LUTData = [0, 32768, 65535]
    # 32768 * 255 / 65535 = 127.502 -> 128
    hdr = header(1, 3, VOILUTSequence=[item], WindowCenter=1, WindowWidth=1)
    assert png(hdr, row([0, 1, 2], "<u2")).tolist() == [[0, 128, 255]]


def test_enhanced_multi_frame_rescale_and_window_from_functional_groups() -> None:
    transform = Dataset()
    transform.RescaleSlope = 1
    transform.RescaleIntercept = -1024
    shared = Dataset()
    shared.PixelValueTransformationSequence = [transform]
    voi = Dataset()
    voi.WindowCenter = -1000
    voi.WindowWidth = 100
    per_frame = Dataset()
    per_frame.FrameVOILUTSequence = [voi]
    hdr = header(
        1,
        4,
        signed=True,
        frames=1,
        SharedFunctionalGroupsSequence=[shared],
        PerFrameFunctionalGroupsSequence=[per_frame],
    )
    # same numbers as the classic rescale test
    assert png(hdr, row([-1000, -24, 0, 1000], "<i2")).tolist() == [[0, 5, 67, 255]]


def test_each_frame_gets_its_own_functional_groups_and_the_header_is_left_alone() -> None:
    # the same stored values; frame 2's Rescale Intercept lifts it by 500 (window 0..1000)
    groups = []
    for intercept in (0, 500):
        transform = Dataset()
        transform.RescaleSlope = 1
        transform.RescaleIntercept = intercept
        item = Dataset()
        item.PixelValueTransformationSequence = [transform]
        groups.append(item)
    hdr = header(
        1,
        2,
        frames=2,
        PerFrameFunctionalGroupsSequence=groups,
        WindowCenter=500,
        WindowWidth=1001,
    )
    before = copy.deepcopy(hdr)
    frames = [EncodedFrame(row([0, 400], "<u2"), n) for n in (1, 2)]
    out = render_image(hdr, LE, frames, RenderOptions(media_type=GIF), max_frame_samples=CAP)
    assert hdr == before
    gif = Image.open(io.BytesIO(out))
    first = np.asarray(gif.convert("L")).tolist()
    gif.seek(1)
    second = np.asarray(gif.convert("L")).tolist()
    # ((v - 499.5) / 1000 + 0.5) * 255: 0 -> 0.1, 400 -> 102.1, 500 -> 127.6, 900 -> 229.6
    assert first == [[0, 102]] and second == [[128, 230]]


def test_one_bit_pixels() -> None:
    # 8 pixels packed into one byte, least significant bit first (PS3.5 8.1.1)
    hdr = header(1, 8, bits_allocated=1)
    assert png(hdr, bytes([0b01010011])).tolist() == [[255, 255, 0, 0, 255, 0, 255, 0]]


def test_big_endian_native() -> None:
    hdr = header(1, 3, WindowCenter=100, WindowWidth=101)
    got = png(hdr, row([0, 100, 300], ">u2"), syntax=str(ExplicitVRBigEndian))
    assert got.tolist() == [[0, 129, 255]]


# -- color -----------------------------------------------------------------------------------------


def test_rgb_8_bit_is_unchanged() -> None:
    pixels = np.array([[[255, 0, 0], [0, 128, 255]]], dtype=np.uint8)
    hdr = header(1, 2, photometric="RGB", samples=3, bits_allocated=8)
    assert png(hdr, pixels.tobytes()).tolist() == pixels.tolist()


def test_rgb_16_bit_is_scaled_to_8() -> None:
    # 32768 * 255 / 65535 = 127.502 -> 128
    pixels = np.array([[[0, 65535, 32768]]], dtype="<u2")
    hdr = header(1, 1, photometric="RGB", samples=3)
    assert png(hdr, pixels.tobytes()).tolist() == [[[0, 255, 128]]]


def test_rgb_planar_configuration_1() -> None:
    # planes: all R, then all G, then all B (PS3.3 C.7.6.3.1.3)
    hdr = header(1, 2, photometric="RGB", samples=3, bits_allocated=8, PlanarConfiguration=1)
    got = png(hdr, bytes([10, 20, 30, 40, 50, 60]))
    assert got.tolist() == [[[10, 30, 50], [20, 40, 60]]]


def _ybr(r: float, g: float, b: float) -> list[int]:
    """RGB -> YBR_FULL by PS3.3 C.7.6.3.1.2 (JPEG/JFIF coefficients)."""
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    return [round(min(max(v, 0), 255)) for v in (y, cb, cr)]


def test_ybr_full_becomes_rgb() -> None:
    colors = [(255, 0, 0), (0, 255, 0), (128, 128, 128), (255, 255, 255)]
    data = bytes(v for c in colors for v in _ybr(*c))
    hdr = header(1, 4, photometric="YBR_FULL", samples=3, bits_allocated=8)
    got = png(hdr, data).astype(int)
    assert np.abs(got - np.array([colors])).max() <= 2


def test_ybr_full_422_shares_chroma_between_two_pixels() -> None:
    # PS3.3 C.7.6.3.1.2: Y1 Y2 Cb Cr for each pair; gray pair and a red-ish pair
    y1, cb, cr = _ybr(255, 0, 0)
    data = bytes([100, 200, 128, 128, y1, y1, cb, cr])
    hdr = header(1, 4, photometric="YBR_FULL_422", samples=3, bits_allocated=8)
    got = png(hdr, data).astype(int)
    expected = np.array([[[100] * 3, [200] * 3, [255, 0, 0], [255, 0, 0]]])
    assert np.abs(got - expected).max() <= 2


def _palette(depth: int, red: list[int], green: list[int], blue: list[int]) -> dict[str, Any]:
    size = len(red)
    lut = {"Red": red, "Green": green, "Blue": blue}
    attributes: dict[str, Any] = {}
    for color, values in lut.items():
        attributes[f"{color}PaletteColorLookupTableDescriptor"] = [size, 0, depth]
        # LUT Data is OW: 8-bit entries still take 16 bits each
        data = np.array(values, dtype="<u2").tobytes()
        attributes[f"{color}PaletteColorLookupTableData"] = data
    return attributes


def test_palette_color_8_bit_entries() -> None:
    attributes = _palette(8, [0, 255, 0, 10], [0, 0, 255, 20], [0, 0, 0, 30])
    hdr = header(1, 4, photometric="PALETTE COLOR", bits_allocated=8, **attributes)
    got = png(hdr, bytes([0, 1, 2, 3]))
    assert got.tolist() == [[[0, 0, 0], [255, 0, 0], [0, 255, 0], [10, 20, 30]]]


def test_palette_color_16_bit_entries() -> None:
    # 2570 * 255 / 65535 = 10
    attributes = _palette(16, [0, 65535, 2570], [0, 0, 65535], [65535, 0, 2570])
    hdr = header(1, 3, photometric="PALETTE COLOR", bits_allocated=8, **attributes)
    got = png(hdr, bytes([0, 1, 2]))
    assert got.tolist() == [[[0, 0, 255], [255, 0, 0], [10, 255, 10]]]


# -- multi-frame and compressed syntaxes -----------------------------------------------------------


def _frames_16(count: int, rows: int = 32, columns: int = 32) -> npt.NDArray[np.int16]:
    base = np.arange(rows * columns, dtype=np.int16).reshape(rows, columns) % 400 - 200
    return np.stack([base + 100 * i for i in range(count)])


def test_one_frame_of_a_native_multi_frame_value() -> None:
    frames = _frames_16(3, 4, 4)
    hdr = header(4, 4, signed=True, frames=3, WindowCenter=0, WindowWidth=1000)
    whole = frames.tobytes()
    third = png(hdr, b"", frame=EncodedFrame(whole, number=3, index=2, frames_in_data=3))
    alone = png(header(4, 4, signed=True, WindowCenter=0, WindowWidth=1000), frames[2].tobytes())
    assert third.tolist() == alone.tolist()
    assert third.tolist() != png(hdr, b"", frame=EncodedFrame(whole, 1, 0, 3)).tolist()


def test_animated_gif_of_all_frames() -> None:
    frames = _frames_16(3, 4, 4)
    hdr = header(4, 4, signed=True, frames=3, WindowCenter=0, WindowWidth=1000, FrameTime=40)
    encoded = [EncodedFrame(f.tobytes(), n) for n, f in enumerate(frames, 1)]
    out = render_image(hdr, LE, encoded, RenderOptions(media_type=GIF), max_frame_samples=CAP)
    gif = Image.open(io.BytesIO(out))
    assert gif.format == "GIF" and getattr(gif, "n_frames", 1) == 3
    assert gif.info["duration"] == 40


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_lossless_compressed_frames_render_like_native(syntax: str) -> None:
    pixels = _frames_16(1)[0]
    hdr = header(32, 32, signed=True, WindowCenter=0, WindowWidth=300)
    native = png(hdr, pixels.tobytes())
    ds = copy.deepcopy(hdr)
    ds.PixelData = pixels.tobytes()
    ds.compress(syntax, pixels)
    (codestream,) = generate_frames(ds.PixelData, number_of_frames=1)
    compressed = png(hdr, codestream, syntax=str(syntax))
    assert compressed.tolist() == native.tolist()
    assert len(set(native.flatten().tolist())) > 100  # a real gradient, not a blank


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL
        "SC_rgb_dcmtk_+eb+cy+np.dcm",  # JPEG baseline, YBR_FULL_422
        "SC_rgb_jls_lossy_line.dcm",  # JPEG-LS
        "SC_rgb_gdcm_KY.dcm",  # JPEG 2000
        "SC_rgb_rle.dcm",  # RLE
        "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless
    ],
)
def test_compressed_color_samples_match_pydicoms_rgb(name: str) -> None:
    path = _testdata(name)
    full = pydicom.dcmread(path)
    hdr = pydicom.dcmread(path, stop_before_pixels=True)
    syntax = str(full.file_meta.TransferSyntaxUID)
    (codestream,) = generate_frames(full.PixelData, number_of_frames=1)
    got = png(hdr, codestream, syntax=syntax)
    assert got.tolist() == full.pixel_array.tolist()


def test_jpeg_extended_12_bit() -> None:
    path = _testdata("JPGExtended.dcm")
    full = pydicom.dcmread(path)
    hdr = pydicom.dcmread(path, stop_before_pixels=True)
    (codestream,) = generate_frames(full.PixelData, number_of_frames=1)
    got = png(hdr, codestream, syntax=str(full.file_meta.TransferSyntaxUID))
    assert got.shape == (1024, 256) and got.max() > got.min()


# -- refusing bombs before decoding ----------------------------------------------------------------


def test_a_dimension_bomb_is_refused_from_the_header() -> None:
    geometry = image_geometry(header(60000, 60000, frames=1000))
    with pytest.raises(TooLarge):
        check_bounds(geometry, native_value_length=16, max_frame_samples=CAP)


def test_a_header_claiming_more_than_the_pixel_data_holds_is_refused() -> None:
    geometry = image_geometry(header(64, 64, frames=10))
    check_bounds(geometry, native_value_length=64 * 64 * 2 * 10, max_frame_samples=CAP)
    with pytest.raises(UnrenderableImage):
        check_bounds(geometry, native_value_length=64 * 64 * 2 * 10 - 1, max_frame_samples=CAP)


def test_a_codestream_larger_than_its_header_is_refused_before_decoding() -> None:
    path = _testdata("JPEG2000.dcm")  # a 1024 x 256 codestream
    full = pydicom.dcmread(path)
    (codestream,) = generate_frames(full.PixelData, number_of_frames=1)
    small = pydicom.dcmread(path, stop_before_pixels=True)
    small.Rows, small.Columns = 16, 16
    check_codestream(str(full.file_meta.TransferSyntaxUID), codestream, image_geometry(full))
    with pytest.raises(UnrenderableImage, match="larger than the header"):
        check_codestream(str(full.file_meta.TransferSyntaxUID), codestream, image_geometry(small))
    with pytest.raises(UnrenderableImage):
        png(small, codestream, syntax=str(full.file_meta.TransferSyntaxUID))


def test_jpeg_dimensions_are_read_from_the_frame_header() -> None:
    path = _testdata("SC_rgb_jpeg_dcmtk.dcm")  # 100 x 100 x 3
    full = pydicom.dcmread(path)
    (codestream,) = generate_frames(full.PixelData, number_of_frames=1)
    small = pydicom.dcmread(path, stop_before_pixels=True)
    small.Rows = 99
    with pytest.raises(UnrenderableImage):
        check_codestream(str(full.file_meta.TransferSyntaxUID), codestream, image_geometry(small))
    with pytest.raises(UnrenderableImage, match="does not declare"):
        check_codestream(str(full.file_meta.TransferSyntaxUID), b"\x00" * 64, image_geometry(full))


def test_corrupt_pixels_are_unrenderable_not_a_crash() -> None:
    with pytest.raises(UnrenderableImage):
        png(header(4, 4), b"\x00" * 7)  # 32 bytes needed


@pytest.mark.parametrize(
    ("attributes", "error"),
    [
        ({"photometric": "CMYK", "samples": 4}, UnsupportedImage),
        ({"photometric": "RGB", "samples": 1}, UnrenderableImage),
        ({"bits_allocated": 12}, UnrenderableImage),
        ({"bits_stored": 17}, UnrenderableImage),
    ],
)
def test_headers_that_cannot_be_rendered(attributes: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        image_geometry(header(2, 2, **attributes))


def test_not_an_image() -> None:
    ds = Dataset()
    ds.Modality = "SR"
    with pytest.raises(UnsupportedImage):
        image_geometry(ds)


# -- viewport and encoders -------------------------------------------------------------------------

GRADIENT = list(range(0, 256, 32))  # 8 distinct gray values, 0..224


def _gray_4x2() -> tuple[Dataset, bytes]:
    hdr = header(2, 4, bits_allocated=8, WindowCenter=127.5, WindowWidth=256)
    return hdr, bytes(GRADIENT)


def test_viewport_scales_keeping_the_aspect_ratio() -> None:
    hdr, data = _gray_4x2()
    assert png(hdr, data, viewport=Viewport(2, 2)).shape == (1, 2)
    assert png(hdr, data, viewport=Viewport(40, 100)).shape == (20, 40)


def test_without_upscale_a_small_image_keeps_its_size() -> None:
    hdr, data = _gray_4x2()
    assert png(hdr, data, viewport=Viewport(128, 128), upscale=False).shape == (2, 4)


def test_source_region_is_cut_out() -> None:
    # window c=127.5 w=256 is the identity on 0..255: ((x - 127) / 255 + 0.5) * 255 = x + 0.5
    hdr, data = _gray_4x2()
    whole = png(hdr, data)
    got = png(hdr, data, viewport=Viewport(2, 1, 1, 1, 2, 1))
    assert got.tolist() == whole[1:2, 1:3].tolist()


def test_negative_region_width_and_height_flip() -> None:
    hdr, data = _gray_4x2()
    whole = png(hdr, data)
    flipped = png(hdr, data, viewport=Viewport(4, 2, 4, 2, -4, -2))
    assert flipped.tolist() == whole[::-1, ::-1].tolist()


def test_a_region_outside_the_image_is_a_bad_request() -> None:
    hdr, data = _gray_4x2()
    with pytest.raises(InvalidRenderRequest):
        png(hdr, data, viewport=Viewport(4, 4, 10, 10, 2, 2))


def test_jpeg_quality_changes_the_size() -> None:
    rng = np.random.default_rng(1)
    hdr = header(64, 64, bits_allocated=8, WindowCenter=127.5, WindowWidth=256)
    data = rng.integers(0, 256, size=(64, 64), dtype=np.uint8).tobytes()

    def jpeg(quality: int) -> bytes:
        options = RenderOptions(media_type=JPEG, quality=quality)
        return render_image(hdr, LE, [EncodedFrame(data)], options, max_frame_samples=CAP)

    low, high = jpeg(10), jpeg(95)
    assert low[:2] == b"\xff\xd8" and len(low) < len(high)
    assert Image.open(io.BytesIO(high)).mode == "L"


def test_cache_key_names_every_parameter() -> None:
    keys = {
        RenderOptions().cache_key(),
        RenderOptions(media_type=PNG).cache_key(),
        RenderOptions(quality=50).cache_key(),
        RenderOptions(window=Window(1, 2)).cache_key(),
        RenderOptions(window=Window(1, 2, "SIGMOID")).cache_key(),
        RenderOptions(viewport=Viewport(1, 2)).cache_key(),
        RenderOptions(viewport=Viewport(1, 2, 0, 0, 1, 1)).cache_key(),
        RenderOptions(upscale=False).cache_key(),
    }
    assert len(keys) == 8
    # quality does not change a PNG
    assert RenderOptions(PNG, quality=5).cache_key() == RenderOptions(PNG).cache_key()


# -- response sizing and animated GIFs written frame by frame ----------------------------------


@given(
    size=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    viewport=st.tuples(st.integers(1, 60), st.integers(1, 60)),
    region=st.one_of(
        st.none(),
        st.tuples(
            st.one_of(st.none(), st.integers(0, 45)),
            st.one_of(st.none(), st.integers(0, 45)),
            st.one_of(st.none(), st.integers(-45, 45).filter(bool)),
            st.one_of(st.none(), st.integers(-45, 45).filter(bool)),
        ),
    ),
    upscale=st.booleans(),
)
def test_output_size_is_what_fit_viewport_makes(
    size: tuple[int, int],
    viewport: tuple[int, int],
    region: tuple[int | None, int | None, int | None, int | None] | None,
    upscale: bool,
) -> None:
    port = Viewport(*viewport, *(region or (None, None, None, None)))
    try:
        fitted = fit_viewport(Image.new("L", size), port, upscale=upscale).size
    except InvalidRenderRequest:
        with pytest.raises(InvalidRenderRequest):
            output_size(*size, port, upscale=upscale)
        return
    assert output_size(*size, port, upscale=upscale) == fitted
    assert output_size(*size, None, upscale=upscale) == size


def test_rendered_samples_per_pixel() -> None:
    assert image_geometry(header(2, 2)).display_samples == 1
    assert image_geometry(header(2, 2, photometric="MONOCHROME1")).display_samples == 1
    rgb = header(2, 2, photometric="RGB", samples=3, bits_allocated=8)
    assert image_geometry(rgb).display_samples == 3
    palette = header(2, 2, photometric="PALETTE COLOR", bits_allocated=8)
    assert image_geometry(palette).display_samples == 3  # one stored sample, rendered as RGB


def _gif_frames(data: bytes) -> list[npt.NDArray[np.uint8]]:
    gif = Image.open(io.BytesIO(data))
    frames = []
    for index in range(getattr(gif, "n_frames", 1)):
        gif.seek(index)
        frames.append(np.asarray(gif.convert("RGB")))
    return frames


def test_an_animated_gif_written_frame_by_frame_reads_back_frame_for_frame() -> None:
    rng = np.random.default_rng(7)
    gray = [Image.fromarray(rng.integers(0, 256, (24, 40), dtype=np.uint8)) for _ in range(3)]
    # colour frames get an adaptive palette each: the later ones carry a Local Color Table
    red = Image.new("RGB", (40, 24), (200, 10, 10))
    blue = Image.new("RGB", (40, 24), (10, 20, 230))
    images = [*gray, red, blue]
    animation = AnimatedGif(frame_ms=40)
    chunks = [animation.add(image) for image in images] + [animation.end()]
    assert chunks[0][:6] == b"GIF89a" and chunks[-1] == b";"
    assert all(not chunk.startswith(b"GIF") for chunk in chunks[1:])  # one header only
    data = b"".join(chunks)
    gif = Image.open(io.BytesIO(data))
    assert gif.format == "GIF" and getattr(gif, "n_frames", 1) == 5
    assert gif.size == (40, 24) and gif.info["duration"] == 40 and gif.info["loop"] == 0
    got = _gif_frames(data)
    for image, frame in zip(images, got, strict=True):
        assert frame.tolist() == np.asarray(image.convert("RGB")).tolist()


def test_an_animated_gif_needs_a_frame() -> None:
    with pytest.raises(ValueError):
        AnimatedGif(frame_ms=100).end()


def test_a_gif_of_many_frames_is_rendered_one_frame_at_a_time() -> None:
    """Each frame is rendered and encoded before the next is decoded: the animation's bytes
    equal its frames' pixels, rendered alone."""
    frames = _frames_16(12, 16, 16)
    hdr = header(16, 16, signed=True, frames=12, WindowCenter=0, WindowWidth=1000)
    encoded = [EncodedFrame(f.tobytes(), n) for n, f in enumerate(frames, 1)]
    out = render_image(hdr, LE, encoded, RenderOptions(media_type=GIF), max_frame_samples=CAP)
    alone = [
        png(header(16, 16, signed=True, WindowCenter=0, WindowWidth=1000), f.tobytes())
        for f in frames
    ]
    got = _gif_frames(out)
    assert [g[..., 0].tolist() for g in got] == [a.tolist() for a in alone]

"""PixelDataInfo: frames located by byte ranges, checked against pydicom (PS3.5 8.2, A.4)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, RLELossless

from dicomvault.dicom.parse import PixelDataInfo, read_instance_header
from dicomvault.dicom.pixels import native_frame_length
from tests.dicom import builders


def _testdata(name: str) -> Path:
    return Path(str(get_testdata_file(name)))


def _read(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as file:
        file.seek(offset)
        return file.read(length)


def _native_frames(path: Path, info: PixelDataInfo) -> list[bytes]:
    assert not info.encapsulated and info.frame_length is not None
    return [
        _read(path, info.value_offset + index * info.frame_length, info.frame_length)
        for index in range(info.number_of_frames)
    ]


def _encapsulated_frames(path: Path, info: PixelDataInfo) -> list[bytes]:
    assert info.encapsulated and info.fragments_by_frame is not None
    return [
        b"".join(_read(path, offset, length) for offset, length in fragments)
        for fragments in info.fragments_by_frame
    ]


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "SC_rgb_small_odd.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "examples_rgb_color.dcm",
    ],
)
def test_native_single_frame(name: str) -> None:
    path = _testdata(name)
    info = read_instance_header(path).pixel_data
    assert info is not None and not info.encapsulated
    (frame,) = _native_frames(path, info)
    assert frame == pydicom.dcmread(path).PixelData[: info.frame_length]
    assert info.vr in ("OB", "OW")


def _multiframe_native(tmp_path: Path, transfer_syntax: str, frames: int = 20) -> Path:
    pixels = np.random.default_rng(7).integers(0, 4096, (frames, 64, 64), dtype=np.uint16)
    ds = builders.make_dataset(
        Rows=64,
        Columns=64,
        NumberOfFrames=str(frames),
        SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME2",
        BitsAllocated=16,
        BitsStored=12,
        HighBit=11,
        PixelRepresentation=0,
    )
    big = transfer_syntax == ExplicitVRBigEndian
    ds.PixelData = pixels.astype(">u2" if big else "<u2").tobytes()
    ds["PixelData"].VR = "OW"
    ds.file_meta = builders.file_meta(ds, transfer_syntax)
    path = tmp_path / "multiframe.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_native_multiframe(tmp_path: Path, transfer_syntax: str) -> None:
    path = _multiframe_native(tmp_path, transfer_syntax)
    info = read_instance_header(path).pixel_data
    assert info is not None
    assert (info.number_of_frames, info.frame_length, info.value_length) == (20, 8192, 163840)
    pixel_data = pydicom.dcmread(path).PixelData
    frames = _native_frames(path, info)
    assert frames == [pixel_data[i * 8192 : (i + 1) * 8192] for i in range(20)]
    assert len(set(frames)) == 20


@pytest.mark.parametrize(
    "name",
    [
        "JPEG2000.dcm",
        "MR_small_RLE.dcm",
        "SC_rgb_rle_2frame.dcm",
        "examples_ybr_color.dcm",
        "rtdose_rle.dcm",
        "JPEG2000-embedded-sequence-delimiter.dcm",
    ],
)
def test_encapsulated_frames_match_pydicom(name: str) -> None:
    path = _testdata(name)
    info = read_instance_header(path).pixel_data
    assert info is not None and info.encapsulated and info.value_length is None
    ds = pydicom.dcmread(path)
    expected = list(generate_frames(ds.PixelData, number_of_frames=info.number_of_frames))
    assert info.number_of_frames == int(ds.get("NumberOfFrames", 1) or 1)
    assert _encapsulated_frames(path, info) == expected


def _encapsulated_file(tmp_path: Path, pixel_data: bytes, frames: int, **extra: object) -> Path:
    ds = builders.make_dataset(
        Rows=4,
        Columns=4,
        NumberOfFrames=str(frames),
        SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME2",
        BitsAllocated=8,
        BitsStored=8,
        HighBit=7,
        PixelRepresentation=0,
        **extra,
    )
    ds.PixelData = pixel_data
    ds["PixelData"].VR = "OB"
    ds.file_meta = builders.file_meta(ds, RLELossless)
    path = tmp_path / "encapsulated.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


FRAMES = [bytes([n]) * (10 + 2 * n) for n in range(1, 6)]  # distinct, even-length "frames"


def test_basic_offset_table_with_several_fragments_per_frame(tmp_path: Path) -> None:
    path = _encapsulated_file(
        tmp_path, encapsulate(FRAMES, fragments_per_frame=2, has_bot=True), len(FRAMES)
    )
    info = read_instance_header(path).pixel_data
    assert info is not None and info.fragments_by_frame is not None
    assert all(len(fragments) == 2 for fragments in info.fragments_by_frame)
    assert _encapsulated_frames(path, info) == FRAMES


def test_extended_offset_table(tmp_path: Path) -> None:
    pixel_data, offsets, lengths = encapsulate_extended(FRAMES)
    path = _encapsulated_file(
        tmp_path,
        pixel_data,
        len(FRAMES),
        ExtendedOffsetTable=offsets,
        ExtendedOffsetTableLengths=lengths,
    )
    info = read_instance_header(path).pixel_data
    assert info is not None
    assert _encapsulated_frames(path, info) == FRAMES


def test_no_offset_table_one_fragment_per_frame(tmp_path: Path) -> None:
    path = _encapsulated_file(tmp_path, encapsulate(FRAMES, has_bot=False), len(FRAMES))
    info = read_instance_header(path).pixel_data
    assert info is not None
    assert _encapsulated_frames(path, info) == FRAMES


def test_no_offset_table_single_frame_takes_all_fragments(tmp_path: Path) -> None:
    pixel_data = encapsulate([FRAMES[4]], fragments_per_frame=3, has_bot=False)
    path = _encapsulated_file(tmp_path, pixel_data, 1)
    info = read_instance_header(path).pixel_data
    assert info is not None and info.fragments_by_frame is not None
    assert len(info.fragments_by_frame[0]) == 3
    assert _encapsulated_frames(path, info) == [FRAMES[4]]


def test_undeterminable_frames(tmp_path: Path) -> None:
    pixel_data = encapsulate(FRAMES, fragments_per_frame=2, has_bot=False)
    path = _encapsulated_file(tmp_path, pixel_data, len(FRAMES))
    info = read_instance_header(path).pixel_data
    assert info is not None and info.encapsulated
    assert info.fragments_by_frame is None


def test_bad_basic_offset_table_falls_back(tmp_path: Path) -> None:
    pixel_data = bytearray(encapsulate(FRAMES, has_bot=True))
    struct.pack_into("<L", pixel_data, 12, 3)  # second offset points mid-fragment
    path = _encapsulated_file(tmp_path, bytes(pixel_data), len(FRAMES))
    info = read_instance_header(path).pixel_data
    assert info is not None
    assert _encapsulated_frames(path, info) == FRAMES  # one fragment per frame still holds


def test_deflated_has_no_pixel_location() -> None:
    assert read_instance_header(_testdata("image_dfl.dcm")).pixel_data is None


@pytest.mark.parametrize(
    ("rows", "columns", "samples", "bits", "photometric", "expected"),
    [
        (64, 64, 1, 16, "MONOCHROME2", 8192),
        (2, 3, 3, 8, "RGB", 18),
        (10, 10, 3, 8, "YBR_FULL_422", 200),
        (8, 8, 1, 1, "MONOCHROME2", 8),  # single-bit, byte aligned
        (3, 3, 1, 1, "MONOCHROME2", None),  # 9 bits: frames start mid-byte
        (None, 64, 1, 16, "MONOCHROME2", None),
        (0, 64, 1, 16, "MONOCHROME2", None),
    ],
)
def test_native_frame_length(
    rows: int | None,
    columns: int,
    samples: int,
    bits: int,
    photometric: str,
    expected: int | None,
) -> None:
    assert native_frame_length(rows, columns, samples, bits, photometric) == expected


def test_pixel_data_too_short_for_its_frames_has_no_frame_length(tmp_path: Path) -> None:
    ds = builders.make_dataset(
        Rows=8,
        Columns=8,
        NumberOfFrames="4",
        SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME2",
        BitsAllocated=8,
        BitsStored=8,
        HighBit=7,
        PixelRepresentation=0,
    )
    tail = builders.explicit_element(0x7FE00010, b"OB", bytes(64 * 3))
    info = read_instance_header(builders.write_part10(tmp_path / "a.dcm", ds, tail=tail)).pixel_data
    assert info is not None and info.number_of_frames == 4
    assert info.frame_length is None

"""read_instance_header: the validation step of ingest (PS3.10 7.1, PS3.5, PS3.4 B.2.3)."""

from __future__ import annotations

import contextlib
import random
import struct
import time
import tracemalloc
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicomvault.dicom.parse import ParseLimits, read_instance_header
from dicomvault.dicom.problems import (
    DicomProblem,
    InvalidDicom,
    MissingAttributes,
    TooDeep,
    TooLarge,
)
from tests.dicom import builders


def _testdata(name: str) -> Path:
    return Path(str(get_testdata_file(name)))


@pytest.mark.parametrize(
    ("name", "transfer_syntax"),
    [
        ("CT_small.dcm", ExplicitVRLittleEndian),
        ("MR_small.dcm", ExplicitVRLittleEndian),
        ("MR_small_implicit.dcm", ImplicitVRLittleEndian),
        ("MR_small_bigendian.dcm", ExplicitVRBigEndian),
        ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91"),
        ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),
        ("SC_rgb_rle_2frame.dcm", "1.2.840.10008.1.2.5"),
        ("image_dfl.dcm", DeflatedExplicitVRLittleEndian),
        ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
        ("waveform_ecg.dcm", ExplicitVRLittleEndian),
        ("UN_sequence.dcm", None),  # lacks the UIDs, but its UN sequence must walk cleanly
    ],
)
def test_bundled_files_agree_with_pydicom(name: str, transfer_syntax: str | None) -> None:
    path = _testdata(name)
    reference = pydicom.dcmread(path)
    if transfer_syntax is None:
        with pytest.raises(MissingAttributes):
            read_instance_header(path)
        return
    parsed = read_instance_header(path)
    assert parsed.transfer_syntax_uid == transfer_syntax
    assert parsed.sop_class_uid == reference.SOPClassUID
    assert parsed.sop_instance_uid == reference.SOPInstanceUID
    assert parsed.study_instance_uid == reference.StudyInstanceUID
    assert parsed.series_instance_uid == reference.SeriesInstanceUID
    assert parsed.values["Modality"] == reference.get("Modality")


def test_index_values_of_a_synthetic_instance(tmp_path: Path) -> None:
    ds = builders.make_dataset(
        PatientName="Doe^John",
        Rows=2,
        Columns=3,
        NumberOfFrames="4",
        BodyPartExamined="CHEST",
        SpecificCharacterSet=["ISO_IR 100", "ISO 2022 IR 87"],
    )
    parsed = read_instance_header(builders.write_part10(tmp_path / "a.dcm", ds))
    values = parsed.values
    assert values["PatientName"] == "Doe^John"
    assert values["PatientID"] == "SYN-0001"
    assert values["StudyDate"] == "20240102"
    assert values["SeriesNumber"] == 3
    assert values["InstanceNumber"] == 7
    assert (values["Rows"], values["Columns"], values["NumberOfFrames"]) == (2, 3, 4)
    assert values["BodyPartExamined"] == "CHEST"
    assert values["SpecificCharacterSet"] == "ISO_IR 100\\ISO 2022 IR 87"
    assert values["SeriesDate"] is None
    assert parsed.pixel_data is None


def test_level_json_split(tmp_path: Path) -> None:
    parsed = read_instance_header(
        builders.write_part10(tmp_path / "a.dcm", builders.make_dataset())
    )
    assert parsed.study_json["0020000D"]["Value"] == [builders.STUDY_UID]
    assert parsed.study_json["00100010"]["Value"] == [{"Alphabetic": "Test^Patient"}]
    assert "00080060" not in parsed.study_json
    assert parsed.series_json["00080060"]["Value"] == ["OT"]
    assert parsed.series_json["00200011"]["Value"] == [3]
    assert "00100010" not in parsed.series_json
    assert parsed.instance_json["00080018"]["Value"] == [builders.SOP_UID]
    assert parsed.instance_json["00083002"] == {"vr": "UI", "Value": [ExplicitVRLittleEndian]}
    for level in (parsed.study_json, parsed.series_json, parsed.instance_json):
        assert level["00080005"]["Value"] == ["ISO_IR 100"]


# ---- not DICOM, truncated, bad lengths, garbage


@pytest.mark.parametrize(
    "content",
    [b"", b"hello", b"<html>not dicom</html>" * 20, bytes(128) + b"DICX" + bytes(100)],
)
def test_not_dicom(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.dcm"
    path.write_bytes(content)
    with pytest.raises(InvalidDicom, match="Part-10"):
        read_instance_header(path)


def test_file_without_meta_is_refused() -> None:
    with pytest.raises(InvalidDicom):
        read_instance_header(_testdata("no_meta.dcm"))


def test_missing_transfer_syntax_is_invalid() -> None:
    with pytest.raises(InvalidDicom, match="TransferSyntaxUID"):
        read_instance_header(_testdata("meta_missing_tsyntax.dcm"))


def test_unknown_transfer_syntax_is_invalid(tmp_path: Path) -> None:
    path = builders.write_part10(tmp_path / "a.dcm", builders.make_dataset(), "1.2.3.4.5")
    with pytest.raises(InvalidDicom, match="unsupported transfer syntax 1.2.3.4.5"):
        read_instance_header(path)


def test_truncated_at_many_points(tmp_path: Path) -> None:
    data = _testdata("CT_small.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    for cut in (10, 128, 131, 135, 150, 200, 401, 1000, 1500, len(data) - 1000, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(InvalidDicom):
            read_instance_header(path)


def test_bundled_truncated_files() -> None:
    for name in ("MR_truncated.dcm", "rtplan_truncated.dcm"):
        with pytest.raises(InvalidDicom):
            read_instance_header(_testdata(name))


def test_element_length_past_end_of_file(tmp_path: Path) -> None:
    tail = struct.pack("<HH2sH", 0x0040, 0x0254, b"LO", 200) + b"short"
    path = builders.write_part10(tmp_path / "a.dcm", builders.make_dataset(), tail=tail)
    with pytest.raises(InvalidDicom, match="length past"):
        read_instance_header(path)


def test_pixel_data_length_past_end_of_file(tmp_path: Path) -> None:
    tail = struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, 1 << 20) + bytes(100)
    path = builders.write_part10(tmp_path / "a.dcm", builders.make_dataset(), tail=tail)
    with pytest.raises(InvalidDicom, match="length past"):
        read_instance_header(path)


@pytest.mark.parametrize(
    "garbage", [b"GARBAGE!" * 4, bytes(16), b"\xff" * 3, b"MZ\x90\x00" + bytes(60)]
)
def test_garbage_after_the_data_set(tmp_path: Path, garbage: bytes) -> None:
    path = builders.write_part10(tmp_path / "a.dcm", builders.make_dataset(), tail=garbage)
    with pytest.raises(InvalidDicom):
        read_instance_header(path)


def test_element_overrunning_its_item(tmp_path: Path) -> None:
    inner = builders.explicit_element(0x00081150, b"UI", b"1.2.3\x00")
    inner = inner[:6] + struct.pack("<H", 40) + inner[8:]  # claims 40 bytes inside a 14-byte item
    item = struct.pack("<HHL", 0xFFFE, 0xE000, len(inner)) + inner
    sequence = builders.explicit_element(0x00081140, b"SQ", item)
    path = builders.write_part10(tmp_path / "a.dcm", builders.make_dataset(), tail=sequence)
    with pytest.raises(InvalidDicom):
        read_instance_header(path)


def test_random_damage_raises_only_dicom_problems(tmp_path: Path) -> None:
    """Whatever the bytes, the caller sees a parse or a DicomProblem, never another error."""
    original = _testdata("MR_small.dcm").read_bytes()
    rng = random.Random(20240101)
    path = tmp_path / "fuzz.dcm"
    for _ in range(150):
        data = bytearray(original)
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(132, min(len(data), 2000))
            data[position] = rng.randrange(256)
        if rng.random() < 0.3:
            del data[rng.randrange(132, len(data)) :]
        path.write_bytes(bytes(data))
        with contextlib.suppress(DicomProblem):
            read_instance_header(path)


# ---- required UIDs


@pytest.mark.parametrize(
    "keyword", ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"]
)
def test_missing_required_uid(tmp_path: Path, keyword: str) -> None:
    ds = builders.make_dataset(**{keyword: None})
    with pytest.raises(MissingAttributes, match=keyword) as info:
        read_instance_header(builders.write_part10(tmp_path / "a.dcm", ds))
    assert info.value.failure_reason == 0xA900


def test_empty_required_uid_is_missing(tmp_path: Path) -> None:
    ds = builders.make_dataset(StudyInstanceUID="")
    with pytest.raises(MissingAttributes, match="StudyInstanceUID"):
        read_instance_header(builders.write_part10(tmp_path / "a.dcm", ds))


@pytest.mark.parametrize("bad", ["../../x", "1" * 65, "1.02.3", "1.2.3.abc", "1.2..3"])
@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_malformed_required_uid(tmp_path: Path, bad: str, keyword: str) -> None:
    ds = builders.make_dataset(**{keyword: bad})
    with pytest.raises(InvalidDicom, match=keyword) as info:
        read_instance_header(builders.write_part10(tmp_path / "a.dcm", ds))
    assert info.value.failure_reason == 0xC000


def test_multi_valued_uid_is_invalid(tmp_path: Path) -> None:
    ds = builders.make_dataset(SeriesInstanceUID=["1.2.3", "1.2.4"])
    with pytest.raises(InvalidDicom, match="SeriesInstanceUID"):
        read_instance_header(builders.write_part10(tmp_path / "a.dcm", ds))


def test_media_storage_uid_must_match(tmp_path: Path) -> None:
    ds = builders.make_dataset()
    data = builders.write_part10(tmp_path / "a.dcm", ds).read_bytes()
    # Same length, different instance: only the File Meta copy changes.
    changed = data.replace(builders.SOP_UID.encode(), builders.SOP_UID[:-1].encode() + b"9", 1)
    path = tmp_path / "b.dcm"
    path.write_bytes(changed)
    with pytest.raises(InvalidDicom, match="MediaStorageSOPInstanceUID"):
        read_instance_header(path)


def test_messages_carry_no_patient_data(tmp_path: Path) -> None:
    ds = builders.make_dataset(PatientName="Secret^Name", PatientID="SECRET-ID")
    data = builders.write_part10(tmp_path / "a.dcm", ds).read_bytes()
    path = tmp_path / "cut.dcm"
    for cut in range(300, len(data), 7):
        path.write_bytes(data[:cut])
        try:
            read_instance_header(path)
        except DicomProblem as exc:
            assert "Secret" not in str(exc) and "SECRET" not in str(exc)


# ---- nesting, preamble, deflate, size


def test_sequences_nested_300_deep_are_refused_quickly(tmp_path: Path) -> None:
    tail = builders.nested_sequences(300)
    path = builders.write_part10(tmp_path / "a.dcm", builders.make_dataset(), tail=tail)
    started = time.perf_counter()
    with pytest.raises(TooDeep):
        read_instance_header(path)
    assert time.perf_counter() - started < 1.0


def test_nesting_at_the_limit_is_accepted(tmp_path: Path) -> None:
    limits = ParseLimits(max_sequence_depth=8)
    ok = builders.write_part10(
        tmp_path / "ok.dcm", builders.make_dataset(), tail=builders.nested_sequences(8)
    )
    parsed = read_instance_header(ok, limits)
    assert '"0040A730"' in parsed.metadata_json.decode()
    deep = builders.write_part10(
        tmp_path / "deep.dcm", builders.make_dataset(), tail=builders.nested_sequences(9)
    )
    with pytest.raises(TooDeep):
        read_instance_header(deep, limits)


def test_nonstandard_preamble_is_reported_not_changed(tmp_path: Path) -> None:
    preamble = b"MZ\x90\x00" + bytes(124)
    path = builders.write_part10(tmp_path / "a.dcm", builders.make_dataset(), preamble=preamble)
    before = path.read_bytes()
    assert read_instance_header(path).nonstandard_preamble is True
    assert path.read_bytes() == before


def test_deflated_instance(tmp_path: Path) -> None:
    ds = builders.make_dataset(PatientName="Deflated^Test")
    path = builders.write_part10(tmp_path / "a.dcm", ds, DeflatedExplicitVRLittleEndian)
    parsed = read_instance_header(path)
    assert parsed.transfer_syntax_uid == DeflatedExplicitVRLittleEndian
    assert parsed.values["PatientName"] == "Deflated^Test"
    assert parsed.pixel_data is None


def test_deflated_garbage_is_invalid(tmp_path: Path) -> None:
    ds = builders.make_dataset()
    path = tmp_path / "a.dcm"
    path.write_bytes(builders.meta_bytes(ds, DeflatedExplicitVRLittleEndian) + b"\xff" * 100)
    with pytest.raises(InvalidDicom):
        read_instance_header(path)


def test_deflate_bomb_is_refused_quickly_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.dcm"
    with path.open("wb") as file:
        for chunk in builders.deflate_bomb_chunks(builders.make_dataset(), 1 << 30):
            file.write(chunk)
    assert path.stat().st_size < 2 * 1024 * 1024
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(TooLarge) as info:
            read_instance_header(path)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.failure_reason == 0xA700
    assert elapsed < 2.0  # refused on its ratio after ~32 MiB, not at the 512 MiB cap
    assert peak < 32 * 1024 * 1024


def test_deflate_bomb_without_ratio_check_stops_at_the_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "bomb.dcm"
    with path.open("wb") as file:
        for chunk in builders.deflate_bomb_chunks(builders.make_dataset(), 256 << 20):
            file.write(chunk)
    limits = ParseLimits(max_inflated_bytes=64 << 20, max_inflation_ratio=None)
    with pytest.raises(TooLarge, match="more than 67108864 bytes"):
        read_instance_header(path, limits)


def test_small_inflate_cap(tmp_path: Path) -> None:
    path = tmp_path / "bomb.dcm"
    path.write_bytes(b"".join(builders.deflate_bomb_chunks(builders.make_dataset(), 8 << 20)))
    with pytest.raises(TooLarge):
        read_instance_header(path, ParseLimits(max_inflated_bytes=1 << 20))


def test_large_file_parses_without_reading_pixels(tmp_path: Path) -> None:
    """A 500 MB instance: the header is parsed in well under a second, in little memory."""
    frames, rows, columns = 120, 1024, 2048
    length = frames * rows * columns * 2
    ds = builders.make_dataset(
        Rows=rows,
        Columns=columns,
        NumberOfFrames=str(frames),
        SamplesPerPixel=1,
        BitsAllocated=16,
        BitsStored=16,
        HighBit=15,
        PixelRepresentation=0,
        PhotometricInterpretation="MONOCHROME2",
    )
    header = builders.meta_bytes(ds, ExplicitVRLittleEndian) + builders.data_set_bytes(ds)
    header += struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, length)
    path = tmp_path / "big.dcm"
    with path.open("wb") as file:  # sparse: the pixels are never written, nor read
        file.write(header)
        file.truncate(len(header) + length)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        parsed = read_instance_header(path)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 4 * 1024 * 1024
    assert parsed.pixel_data is not None
    assert parsed.pixel_data.value_offset == len(header)
    assert parsed.pixel_data.value_length == length
    assert parsed.pixel_data.frame_length == rows * columns * 2
    assert parsed.pixel_data.number_of_frames == frames

"""DICOM JSON (PS3.18 F.2) of a parsed instance, bulk data references and their resolution."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomvault.dicom.dicomjson import (
    BULK_BASE,
    INSTANCE_LEVEL_TAGS,
    SERIES_LEVEL_TAGS,
    STUDY_LEVEL_TAGS,
    data_set_to_json,
    filter_json,
    format_bulk_path,
    read_bulk_value,
    resolve_bulk_path,
)
from dicomvault.dicom.parse import ParseLimits, read_instance_header
from dicomvault.dicom.problems import BulkDataNotFound, TooDeep
from tests.dicom import builders

BIG_BINARY = bytes(range(256)) * 16  # 4096 bytes: over the default threshold


def _instance(tmp_path: Path, **attributes: object) -> tuple[Path, dict[str, object]]:
    path = builders.write_part10(tmp_path / "a.dcm", builders.make_dataset(**attributes))
    return path, orjson.loads(read_instance_header(path).metadata_json)


def test_markup_in_values_comes_through_unchanged(tmp_path: Path) -> None:
    name = "<script>alert(1)</script>"
    path = builders.write_part10(tmp_path / "a.dcm", builders.make_dataset(PatientName=name))
    raw = read_instance_header(path).metadata_json
    assert json.loads(raw)["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": name}]}
    assert name.encode() in raw  # JSON needs no escaping of < > /, and orjson adds none


def test_value_representations(tmp_path: Path) -> None:
    _, meta = _instance(
        tmp_path,
        PatientWeight="72.5",
        PatientSize="1.80",
        SeriesNumber="12",
        FrameIncrementPointer=0x00181063,
        PatientComments="",
        ImageType=["ORIGINAL", "", "AXIAL"],
        OtherPatientNames=["Alpha^One=Ideo^One", "Beta^Two"],
    )
    assert meta["00101030"] == {"vr": "DS", "Value": [72.5]}
    assert meta["00101020"] == {"vr": "DS", "Value": [1.8]}
    assert meta["00200011"] == {"vr": "IS", "Value": [12]}
    assert meta["00280009"] == {"vr": "AT", "Value": ["00181063"]}
    assert meta["00104000"] == {"vr": "LT"}  # empty value: no "Value" (PS3.18 F.2.5)
    assert meta["00080008"] == {"vr": "CS", "Value": ["ORIGINAL", None, "AXIAL"]}
    assert meta["00101001"] == {
        "vr": "PN",
        "Value": [
            {"Alphabetic": "Alpha^One", "Ideographic": "Ideo^One"},
            {"Alphabetic": "Beta^Two"},
        ],
    }
    assert all(re.fullmatch(r"[0-9A-F]{8}", key) for key in meta)
    assert "00020010" not in meta  # File Meta Information is not part of the data set


def test_sequences_and_nested_bulk_data(tmp_path: Path) -> None:
    item = Dataset()
    item.CodeValue = "T-1"
    item.CodingSchemeDesignator = "SRT"
    nested = Dataset()
    nested.add_new(0x00091010, "OB", BIG_BINARY)
    nested.add_new(0x00090010, "LO", "SYNTHETIC")
    empty = Sequence()
    path = builders.write_part10(
        tmp_path / "a.dcm",
        builders.make_dataset(
            AnatomicRegionSequence=Sequence([item, nested]),
            ReferencedImageSequence=empty,
            EncapsulatedDocument=BIG_BINARY,
            IconImageSequence=Sequence([_tiny_icon()]),
        ),
    )
    meta = orjson.loads(read_instance_header(path).metadata_json)
    region = meta["00082218"]
    assert region["vr"] == "SQ"
    assert region["Value"][0]["00080100"] == {"vr": "SH", "Value": ["T-1"]}
    uri = region["Value"][1]["00091010"]["BulkDataURI"]
    assert uri == f"{BULK_BASE}/bulkdata/00082218/1/00091010"
    assert meta["00081140"] == {"vr": "SQ"}
    assert meta["00420011"]["BulkDataURI"] == f"{BULK_BASE}/bulkdata/00420011"
    icon_pixels = meta["00880200"]["Value"][0]["7FE00010"]
    assert icon_pixels["BulkDataURI"] == f"{BULK_BASE}/bulkdata/00880200/0/7FE00010"
    # every reference resolves to the value it stands for
    assert read_bulk_value(path, "00082218/1/00091010") == BIG_BINARY
    assert read_bulk_value(path, "00420011") == BIG_BINARY
    assert read_bulk_value(path, "00880200/0/7FE00010") == bytes(16)


def _tiny_icon() -> Dataset:
    icon = Dataset()
    icon.Rows = 4
    icon.Columns = 4
    icon.SamplesPerPixel = 1
    icon.BitsAllocated = 8
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.PixelData = bytes(16)
    icon["PixelData"].VR = "OB"
    return icon


def test_small_binary_is_inline_and_threshold_is_respected(tmp_path: Path) -> None:
    path = builders.write_part10(
        tmp_path / "a.dcm", builders.make_dataset(EncapsulatedDocument=b"%PDF")
    )
    inline = orjson.loads(read_instance_header(path).metadata_json)["00420011"]
    assert inline == {"vr": "OB", "InlineBinary": "JVBERg=="}
    by_reference = orjson.loads(read_instance_header(path, bulk_data_threshold=0).metadata_json)
    assert "BulkDataURI" in by_reference["00420011"]


def test_top_level_pixel_data_is_always_by_reference(tmp_path: Path) -> None:
    tail = builders.explicit_element(0x7FE00010, b"OB", b"\x01\x02")
    path = builders.write_part10(tmp_path / "a.dcm", builders.make_dataset(), tail=tail)
    meta = orjson.loads(read_instance_header(path).metadata_json)
    assert meta["7FE00010"] == {"vr": "OB", "BulkDataURI": f"{BULK_BASE}/bulkdata/7FE00010"}
    assert read_bulk_value(path, "7FE00010") == b"\x01\x02"


def test_encapsulated_pixel_data_bulk_value_keeps_items() -> None:
    path = Path(str(get_testdata_file("SC_rgb_rle_2frame.dcm")))
    assert read_bulk_value(path, "7FE00010") == pydicom.dcmread(path).PixelData


def test_group_lengths_are_left_out(tmp_path: Path) -> None:
    ds = builders.make_dataset()
    ds.add_new(0x00100000, "UL", 42)
    path = builders.write_part10(tmp_path / "a.dcm", ds)
    assert "00100000" not in orjson.loads(read_instance_header(path).metadata_json)


def test_unknown_bulk_paths(tmp_path: Path) -> None:
    path, _ = _instance(tmp_path)
    for missing in ("00420011", "00082218/0/00091010", "7FE00010", "00100010"):
        with pytest.raises(BulkDataNotFound):
            read_bulk_value(path, missing)


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("7FE00010", [(0x7FE00010, None)]),
        ("00540016/0/00181072", [(0x00540016, 0), (0x00181072, None)]),
        ("00082218/12/00091010", [(0x00082218, 12), (0x00091010, None)]),
    ],
)
def test_bulk_path_round_trip(path: str, steps: list[tuple[int, int | None]]) -> None:
    assert resolve_bulk_path(path) == steps
    assert format_bulk_path(steps) == path


@pytest.mark.parametrize(
    "path",
    [
        "",
        "7FE0001",
        "7FE00010/0",
        "00540016/x/00181072",
        "../etc/passwd",
        "00540016/01/00181072",
        "GGGGGGGG",
    ],
)
def test_malformed_bulk_paths(path: str) -> None:
    with pytest.raises(BulkDataNotFound):
        resolve_bulk_path(path)


def test_json_depth_is_bounded() -> None:
    ds = Dataset()
    inner = ds
    for _ in range(5):
        item = Dataset()
        inner.ContentSequence = Sequence([item])
        inner = item
    inner.CodeValue = "X"
    assert data_set_to_json(ds, max_depth=5)["0040A730"]["vr"] == "SQ"
    with pytest.raises(TooDeep):
        data_set_to_json(ds, max_depth=4)


def test_level_tag_sets() -> None:
    for tags in (STUDY_LEVEL_TAGS, SERIES_LEVEL_TAGS, INSTANCE_LEVEL_TAGS):
        assert all(re.fullmatch(r"[0-9A-F]{8}", tag) for tag in tags)
        assert "00080005" in tags
    assert {"0020000D", "00100010", "00100020", "00080050", "00080020"} <= STUDY_LEVEL_TAGS
    assert {"0020000E", "00080060", "00200011", "00400244"} <= SERIES_LEVEL_TAGS
    assert {"00080016", "00080018", "00200013", "00083002"} <= INSTANCE_LEVEL_TAGS
    assert not (STUDY_LEVEL_TAGS & SERIES_LEVEL_TAGS) - {"00080005", "00080201"}
    assert not (SERIES_LEVEL_TAGS & INSTANCE_LEVEL_TAGS) - {"00080005", "00080201"}


def test_filter_json() -> None:
    full = {"00100010": {"vr": "PN"}, "00080060": {"vr": "CS"}, "0020000D": {"vr": "UI"}}
    assert list(filter_json(full, ["0020000d", "00100010"])) == ["00100010", "0020000D"]


def test_deep_private_sequences_refused_by_the_walk(tmp_path: Path) -> None:
    creator = builders.explicit_element(0x00410010, b"LO", b"SYNTHETIC ")
    tail = creator + builders.nested_sequences(40, tag=0x00411001)
    path = builders.write_part10(tmp_path / "a.dcm", builders.make_dataset(), tail=tail)
    with pytest.raises(TooDeep):
        read_instance_header(path, ParseLimits())

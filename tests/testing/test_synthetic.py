"""The synthetic data generator: valid Part-10 files, fresh valid UIDs, no real names."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import pydicom
import pytest

from dicomvault.testing import (
    COMPRESSED_TEMPLATES,
    TEMPLATES,
    generate_dataset,
    make_ct_512,
    make_instance,
    mixed_sample_set,
    synthetic_uid,
    write_multiframe_ct,
)

UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _assert_valid_uid(uid: str) -> None:
    assert UID_PATTERN.match(uid), uid
    assert len(uid) <= 64
    assert all(part == "0" or not part.startswith("0") for part in uid.split("."))


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_keeps_transfer_syntax_and_pixels(template: str) -> None:
    original = pydicom.dcmread(pydicom.data.get_testdata_file(template))
    data = make_instance(template)
    ds = _read(data)
    assert data[128:132] == b"DICM"
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert ds.PixelData == original.PixelData
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPInstanceUID != original.get("SOPInstanceUID")
    for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
        _assert_valid_uid(uid)


def test_template_identity_is_synthetic_and_private_tags_are_gone() -> None:
    ds = _read(make_instance("SC_rgb_jpeg_dcmtk.dcm", patient_id="SYN0042"))
    assert ds.PatientID == "SYN0042"
    assert str(ds.PatientName) == "SYNTH^PATIENT0001"
    names = []
    ds.walk(lambda _ds, elem: names.append(str(elem.value)) if elem.VR == "PN" else None)
    assert all(n == "" or n.startswith("SYNTH^") for n in names)
    assert not any(elem.tag.is_private for elem in ds.iterall())


def test_explicit_values_and_extra_keywords_are_stamped() -> None:
    ds = _read(
        make_instance(
            "MR_small.dcm",
            study_uid="1.2.3.4",
            series_uid="1.2.3.4.5",
            sop_uid="1.2.3.4.5.6",
            modality="MR",
            study_date="20200229",
            accession="ACC9",
            series_number=7,
            instance_number=3,
            BodyPartExamined="HEAD",
        )
    )
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == (
        "1.2.3.4",
        "1.2.3.4.5",
        "1.2.3.4.5.6",
    )
    assert (ds.StudyDate, ds.AccessionNumber, ds.SeriesNumber, ds.InstanceNumber) == (
        "20200229",
        "ACC9",
        7,
        3,
    )
    assert ds.BodyPartExamined == "HEAD"


def test_unknown_keyword_is_refused() -> None:
    with pytest.raises(ValueError, match="not a DICOM keyword"):
        make_instance(NotAKeyword=1)


def test_random_uids_differ_between_calls() -> None:
    a, b = _read(make_instance()), _read(make_instance())
    assert a.StudyInstanceUID != b.StudyInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID


def test_ct_512_is_native_signed_16_bit() -> None:
    data = make_ct_512(seed=3)
    ds = _read(data)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert (ds.Rows, ds.Columns, ds.BitsAllocated, ds.PixelRepresentation) == (512, 512, 16, 1)
    assert ds["PixelData"].VR == "OW"
    assert list(ds.keys())[-1] == 0x7FE00010
    pixels = ds.pixel_array
    assert pixels.dtype.kind == "i"
    assert pixels.min() < -900  # air outside the body
    assert pixels.max() > 100  # tissue and bone inside
    assert 500_000 < len(data) < 560_000
    uids = {"study_uid": "1.2.3", "series_uid": "1.2.3.4", "sop_uid": "1.2.3.4.5"}
    assert make_ct_512(seed=3, **uids) == make_ct_512(seed=3, **uids)
    assert make_ct_512(seed=3, **uids) != make_ct_512(seed=4, **uids)


def test_ct_multiframe_in_memory() -> None:
    ds = _read(make_ct_512(rows=32, columns=48, frames=4))
    assert ds.NumberOfFrames == 4
    assert ds.pixel_array.shape == (4, 32, 48)


def test_multiframe_writer_streams_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "multi.dcm"
    generated = write_multiframe_ct(path, 10, rows=64, columns=64, seed=1)
    assert generated.path == path
    assert generated.number_of_frames == 10
    assert generated.size == path.stat().st_size
    ds = pydicom.dcmread(path)
    assert ds.SOPInstanceUID == generated.sop_uid
    assert ds.NumberOfFrames == 10
    assert ds.pixel_array.shape == (10, 64, 64)
    assert len(ds.PixelData) == 10 * 64 * 64 * 2
    # elements ascend: Pixel Data, appended last, really is the last element of the file
    assert list(ds.keys())[-1] == 0x7FE00010
    # the frames differ: each was generated, not copied
    assert (ds.pixel_array[0] != ds.pixel_array[9]).any()


def test_multiframe_writer_refuses_a_length_that_does_not_fit(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_multiframe_ct(tmp_path / "x.dcm", 20_000, rows=512, columns=512)
    assert not (tmp_path / "x.dcm").exists()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_generate_dataset_layout_uniqueness_and_determinism(tmp_path: Path) -> None:
    kwargs = dict(
        patients=2,
        studies_per_patient=2,
        series_per_study=2,
        instances_per_series=2,
        templates=("ct256", "MR_small.dcm", "JPEG2000.dcm"),
        seed=7,
    )
    first = generate_dataset(tmp_path / "a", **kwargs)
    again = generate_dataset(tmp_path / "b", **kwargs)
    other = generate_dataset(tmp_path / "c", **{**kwargs, "seed": 8})

    assert len(first) == 16
    assert len({g.sop_uid for g in first}) == 16
    assert len({g.series_uid for g in first}) == 8
    assert len({g.study_uid for g in first}) == 4
    assert {g.patient_id for g in first} == {"SYN0001", "SYN0002"}
    assert [g.sop_uid for g in first] == [g.sop_uid for g in again]
    assert [_digest(g.path) for g in first] == [_digest(g.path) for g in again]  # type: ignore[arg-type]
    assert not {g.sop_uid for g in first} & {g.sop_uid for g in other}
    assert {g.transfer_syntax for g in first} == {
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.4.91",
    }
    for g in first:
        assert g.path == tmp_path / "a" / g.study_uid / g.series_uid / f"{g.sop_uid}.dcm"
        ds = pydicom.dcmread(g.path)
        assert ds.SOPInstanceUID == g.sop_uid
        assert ds.PatientID == g.patient_id
        assert ds.Modality == g.modality
        assert ds.file_meta.TransferSyntaxUID == g.transfer_syntax
        for uid in (g.study_uid, g.series_uid, g.sop_uid):
            _assert_valid_uid(uid)


def test_mixed_sample_set_covers_the_encodings() -> None:
    instances = mixed_sample_set()
    assert len({g.patient_id for g in instances}) == 3
    assert len({g.study_uid for g in instances}) == 5
    assert len({g.sop_uid for g in instances}) == len(instances)
    syntaxes = {g.transfer_syntax for g in instances}
    assert {
        "1.2.840.10008.1.2.1",  # native
        "1.2.840.10008.1.2.4.50",  # JPEG baseline
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.5",  # RLE
    } <= syntaxes
    assert any(g.number_of_frames > 1 for g in instances)
    assert len({g.study_date for g in instances}) == 5
    assert {g.modality for g in instances} >= {"CT", "MR"}
    for g in instances:
        assert g.data is not None and g.path is None
        assert _read(g.data).SOPInstanceUID == g.sop_uid
    assert [g.sop_uid for g in mixed_sample_set()] == [g.sop_uid for g in instances]


def test_mixed_sample_set_written_to_disk(tmp_path: Path) -> None:
    instances = mixed_sample_set(tmp_path)
    assert all(g.path is not None and g.path.is_file() and g.data is None for g in instances)
    assert instances[0].read_bytes()[128:132] == b"DICM"


def test_compressed_templates_are_really_compressed() -> None:
    for template in COMPRESSED_TEMPLATES:
        ds = _read(make_instance(template))
        assert ds.file_meta.TransferSyntaxUID.is_compressed


def test_synthetic_uid_does_not_confuse_part_boundaries() -> None:
    assert synthetic_uid(1, 11) != synthetic_uid(11, 1)
    assert synthetic_uid("sop", 0, 1, 11) != synthetic_uid("sop", 0, 11, 1)
    assert synthetic_uid(3, "x") == synthetic_uid(3, "x")
    _assert_valid_uid(synthetic_uid(3, "x"))


def test_generate_dataset_uids_unique_with_multi_digit_indices(tmp_path: Path) -> None:
    # indices 1 and 11 side by side: the case where concatenated parts used to collide
    generated = generate_dataset(
        tmp_path,
        patients=1,
        studies_per_patient=1,
        series_per_study=12,
        instances_per_series=12,
        templates=("MR_small.dcm",),
    )
    assert len({g.sop_uid for g in generated}) == 144
    assert len({g.series_uid for g in generated}) == 12

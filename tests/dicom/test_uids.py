"""UID syntax (PS3.5 9.1)."""

from __future__ import annotations

import pytest

from dicomvault.dicom.problems import InvalidDicom, MissingAttributes
from dicomvault.dicom.uids import is_valid_uid, require_uid


@pytest.mark.parametrize(
    "value",
    ["0", "1.2.840.10008.1.2", "1.0.3", "2.25.329800735698586629295641978511506172918", "9" * 64],
)
def test_valid_uids(value: str) -> None:
    assert is_valid_uid(value)
    assert require_uid(value, "SOPInstanceUID") == value


@pytest.mark.parametrize(
    "value",
    [
        "1.02.3",  # leading zero in a component
        "01.2",
        "1..2",
        "1.2.",
        ".1.2",
        "../../x",
        "1.2.3a",
        " 1.2",
        "1.2 ",
        "1.2\x00",
        "1" * 65,  # too long
        "1." + "2" * 63,  # 65 characters
        "١.٢",  # Arabic-Indic digits are digits to str.isdigit, not to DICOM
    ],
)
def test_invalid_uids(value: str) -> None:
    assert not is_valid_uid(value)
    with pytest.raises(InvalidDicom, match="StudyInstanceUID"):
        require_uid(value, "StudyInstanceUID")


@pytest.mark.parametrize("value", [None, ""])
def test_absent_or_empty_uid_is_missing(value: object) -> None:
    with pytest.raises(MissingAttributes, match="SeriesInstanceUID") as info:
        require_uid(value, "SeriesInstanceUID")
    assert info.value.failure_reason == 0xA900


@pytest.mark.parametrize("value", [123, ["1.2", "1.3"], b"1.2"])
def test_non_string_uid_is_invalid(value: object) -> None:
    with pytest.raises(InvalidDicom) as info:
        require_uid(value, "SOPClassUID")
    assert info.value.failure_reason == 0xC000

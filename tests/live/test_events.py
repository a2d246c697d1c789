"""The wire form of live events: tenant and UIDs only, read back strictly."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomvault.live.events import EventKind, InstanceEvent, InvalidEvent

GOOD = InstanceEvent(EventKind.STORED, "north", "1.2.3", "1.2.3.4", "1.2.3.4.5")


def test_round_trip() -> None:
    assert InstanceEvent.from_json(GOOD.to_json()) == GOOD
    assert set(GOOD.to_dict()) == {
        "kind",
        "tenant",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "deleted"},
        {"tenant": "../etc"},
        {"tenant": ""},
        {"tenant": 7},
        {"tenant": "north\n"},
        {"StudyInstanceUID": "1.2.x"},
        {"StudyInstanceUID": "1.02.3"},  # PS3.5 9.1: no leading zero in a component
        {"SeriesInstanceUID": "1." + "2" * 70},
        {"SOPInstanceUID": None},
    ],
)
def test_malformed_members_are_refused(change: dict[str, object]) -> None:
    payload = orjson.dumps({**GOOD.to_dict(), **change})
    with pytest.raises(InvalidEvent):
        InstanceEvent.from_json(payload)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(payload: bytes) -> None:
    with contextlib.suppress(InvalidEvent):
        InstanceEvent.from_json(payload)


def test_missing_member_is_refused() -> None:
    data = GOOD.to_dict()
    del data["SOPInstanceUID"]
    with pytest.raises(InvalidEvent):
        InstanceEvent.from_json(orjson.dumps(data))

"""Bounded inflation of Deflated data sets (PS3.5 A.5)."""

from __future__ import annotations

import io
import zlib

import pytest

from dicomvault.dicom.inflate import RATIO_FLOOR, inflate_data_set, inflate_stream
from dicomvault.dicom.problems import InvalidDicom, TooLarge


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def test_inflates_exactly() -> None:
    data = bytes(range(256)) * 5000
    target = io.BytesIO()
    assert inflate_stream(io.BytesIO(_deflate(data)), target, len(data)) == len(data)
    assert target.getvalue() == data


def test_refuses_past_the_cap() -> None:
    data = bytes(100_000)
    with pytest.raises(TooLarge) as info:
        inflate_stream(io.BytesIO(_deflate(data)), io.BytesIO(), len(data) - 1)
    assert info.value.failure_reason == 0xA700


def test_truncated_stream_is_invalid() -> None:
    compressed = _deflate(bytes(range(256)) * 1000)
    with pytest.raises(InvalidDicom, match="truncated"):
        inflate_stream(io.BytesIO(compressed[: len(compressed) // 2]), io.BytesIO(), 1 << 30)


def test_corrupt_stream_is_invalid() -> None:
    with pytest.raises(InvalidDicom, match="corrupt"):
        inflate_stream(io.BytesIO(b"\xff" * 64), io.BytesIO(), 1 << 30)


def test_inflate_data_set_returns_rewound_file() -> None:
    data = b"DICOM" * 1000
    inflated, size = inflate_data_set(io.BytesIO(_deflate(data)), 1 << 20)
    with inflated:
        assert size == len(data)
        assert inflated.read() == data


def test_refuses_an_implausible_ratio_past_the_floor() -> None:
    compressed = _deflate(bytes(RATIO_FLOOR + (1 << 20)))
    with pytest.raises(TooLarge, match="times its size"):
        inflate_stream(io.BytesIO(compressed), io.BytesIO(), 1 << 30, max_ratio=100)


def test_high_ratio_below_the_floor_is_accepted() -> None:
    data = bytes(1 << 20)
    target = io.BytesIO()
    assert inflate_stream(io.BytesIO(_deflate(data)), target, 1 << 30, max_ratio=2) == len(data)

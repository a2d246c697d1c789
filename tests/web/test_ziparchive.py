"""The streamed ZIP of WADO-RS ``application/zip``: valid, complete, and produced piecewise."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import AsyncIterator

import pytest

from dicomvault.index.repository import StoredInstance
from dicomvault.retrieve.ziparchive import member_name, zip_instances

pytestmark = pytest.mark.anyio
CHUNK = 64 * 1024


def instance(n: int, size: int) -> StoredInstance:
    return StoredInstance(
        study_uid="1.2.3",
        series_uid=f"1.2.3.{n % 2}",
        sop_uid=f"1.2.3.{n % 2}.{n}",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        size=size,
        sha256="0" * 64,
        blob_key=f"k{n}",
        number_of_frames=None,
        pixel_json=None,
    )


def body_of(item: StoredInstance) -> bytes:
    seed = int(item.sop_uid.rsplit(".", 1)[-1])
    return bytes((seed + i) % 251 for i in range(item.size))


async def chunks(item: StoredInstance) -> AsyncIterator[bytes]:
    data = body_of(item)
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


async def collect(items: list[StoredInstance]) -> list[bytes]:
    return [piece async for piece in zip_instances(items, chunks)]


async def test_archive_holds_every_instance_byte_for_byte() -> None:
    items = [instance(n, size) for n, size in enumerate([0, 1, 1000, 300_000])]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(await collect(items))))
    assert archive.testzip() is None
    assert archive.namelist() == [member_name(i) for i in items]
    for item in items:
        assert archive.read(member_name(item)) == body_of(item)
        assert archive.getinfo(member_name(item)).compress_type == zipfile.ZIP_STORED


async def test_output_is_streamed_in_pieces_no_larger_than_a_chunk_and_headers() -> None:
    items = [instance(n, 1_000_000) for n in range(4)]
    pieces = await collect(items)
    assert len(pieces) > 4 * (1_000_000 // CHUNK)
    assert max(len(p) for p in pieces) <= CHUNK + 1024


async def test_member_names_are_uids_only() -> None:
    assert member_name(instance(7, 1)) == "1.2.3/1.2.3.1/1.2.3.1.7.dcm"


async def test_a_size_past_4_gib_gets_zip64_records() -> None:
    # The indexed size decides ZIP64 before the member is written (a real 4 GiB is not needed).
    item = instance(1, 10)
    big = StoredInstance(**{**item.__dict__, "size": 5 * 1024**3})
    data = b"".join([p async for p in zip_instances([big], lambda _i: chunks(item))])
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.read(member_name(big)) == body_of(item)
    # Local file header (APPNOTE 4.3.7): name length at 26, extra length at 28, then the extra
    # field, which starts with the ZIP64 header ID 0x0001.
    name_length, extra_length = struct.unpack_from("<HH", data, 26)
    extra = data[30 + name_length : 30 + name_length + extra_length]
    assert extra[:2] == b"\x01\x00"

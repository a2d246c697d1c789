"""Fixtures for the BlobStore contract: one suite, every implementation (STYLE.md, point 1).

``store`` is parametrized: ``local`` on a temporary directory, ``s3`` on moto's standalone S3
server over real HTTP (a fresh bucket per test, under a key prefix so prefixes are exercised).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from dicomvault.storage import BlobStore, LocalBlobStore, ObjectBlobStore
from tests.support.moto_server import MotoS3, running_moto_s3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    with running_moto_s3() as server:
        yield server


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    blobs: BlobStore
    if request.param == "local":
        blobs = LocalBlobStore(tmp_path / "blobs")
    else:
        moto: MotoS3 = request.getfixturevalue("moto_s3")
        blobs = ObjectBlobStore.from_url(moto.url(prefix="archive/v1", bucket=moto.create_bucket()))
    yield blobs
    await blobs.close()


@pytest.fixture
def spool(tmp_path: Path) -> Callable[[bytes], Path]:
    """Write bytes to a fresh spool file, as the ingest pipeline hands them to ``put_file``."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    counter = iter(range(1_000_000))

    def write(data: bytes) -> Path:
        path = spool_dir / f"upload-{next(counter)}.part"
        path.write_bytes(data)
        return path

    return write

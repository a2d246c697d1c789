"""The ingest pipeline against both databases and a real local blob store (no HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from dicomvault.config import DuplicatePolicy, Settings
from dicomvault.errors import DuplicateInstance, InvalidInstance, StudyMismatch
from dicomvault.index.engine import open_database
from dicomvault.index.models import Instance, PendingWrite, Series, Study
from dicomvault.index.repository import IndexRepository
from dicomvault.index.scope import Scope
from dicomvault.index.writer import BatchWriter
from dicomvault.ingest.pipeline import Ingestor, IngestStatus
from dicomvault.ingest.removal import Remover, sweep_pending_writes
from dicomvault.storage.local import LocalBlobStore
from dicomvault.testing.synthetic import make_instance

pytestmark = pytest.mark.anyio
SCOPE = Scope.single("default")


@pytest.fixture
async def ingestor(db_url: str, tmp_path: Path) -> AsyncIterator[Ingestor]:
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url)
    db = open_database(db_url)
    writer = BatchWriter(db)
    repository = IndexRepository(db, writer)
    store = LocalBlobStore(tmp_path / "data" / "blobs")
    yield Ingestor(settings=settings, db=db, repository=repository, store=store)
    await writer.close()
    await db.dispose()


async def ingest_bytes(ingestor: Ingestor, data: bytes, **kwargs: object):  # type: ignore[no-untyped-def]
    spool = ingestor.new_spool()
    spool.write(data)
    return await ingestor.ingest_spooled(spool, spool.finish(), SCOPE, **kwargs)  # type: ignore[arg-type]


async def counts(ingestor: Ingestor) -> tuple[int, int, int, int]:
    async with ingestor.db.read() as session:
        values = []
        for model in (Study, Series, Instance, PendingWrite):
            values.append(
                (await session.execute(select(func.count()).select_from(model))).scalar_one()
            )
    return tuple(values)  # type: ignore[return-value]


def blob_files(ingestor: Ingestor) -> list[Path]:
    root = ingestor.settings.data_dir / "blobs"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def spool_files(ingestor: Ingestor) -> list[Path]:
    return list(ingestor.settings.spool_dir.glob("*"))


async def test_store_then_identical_resend_is_idempotent(ingestor: Ingestor) -> None:
    data = make_instance("CT_small.dcm")
    first = await ingest_bytes(ingestor, data)
    second = await ingest_bytes(ingestor, data)
    assert first.status is IngestStatus.STORED
    assert second.status is IngestStatus.DUPLICATE
    assert await counts(ingestor) == (1, 1, 1, 0)
    assert len(blob_files(ingestor)) == 1
    assert blob_files(ingestor)[0].read_bytes() == data
    assert spool_files(ingestor) == []


async def test_different_bytes_under_same_uid_rejected_by_default(ingestor: Ingestor) -> None:
    original = make_instance(
        "CT_small.dcm", sop_uid="1.2.3.4.5", study_uid="1.2.3", series_uid="1.2.3.1"
    )
    changed = make_instance(
        "CT_small.dcm",
        sop_uid="1.2.3.4.5",
        study_uid="1.2.3",
        series_uid="1.2.3.1",
        study_description="CHANGED",
    )
    await ingest_bytes(ingestor, original)
    with pytest.raises(DuplicateInstance) as excinfo:
        await ingest_bytes(ingestor, changed)
    assert excinfo.value.failure_reason == 0x0111
    assert [p.read_bytes() for p in blob_files(ingestor)] == [original]
    assert await counts(ingestor) == (1, 1, 1, 0)


async def test_replace_policy_keeps_one_blob(ingestor: Ingestor) -> None:
    ingestor.settings.duplicate_policy = DuplicatePolicy.REPLACE
    uids = {"sop_uid": "1.2.3.4.6", "study_uid": "1.2.3", "series_uid": "1.2.3.1"}
    await ingest_bytes(ingestor, make_instance("CT_small.dcm", **uids))
    changed = make_instance("CT_small.dcm", study_description="CHANGED", **uids)
    result = await ingest_bytes(ingestor, changed)
    assert result.status is IngestStatus.REPLACED
    assert [p.read_bytes() for p in blob_files(ingestor)] == [changed]
    assert await counts(ingestor) == (1, 1, 1, 0)


async def test_study_mismatch_leaves_nothing(ingestor: Ingestor) -> None:
    with pytest.raises(StudyMismatch):
        await ingest_bytes(ingestor, make_instance("MR_small.dcm"), expected_study_uid="1.2.999")
    assert await counts(ingestor) == (0, 0, 0, 0)
    assert blob_files(ingestor) == [] and spool_files(ingestor) == []


async def test_not_dicom_leaves_nothing(ingestor: Ingestor) -> None:
    with pytest.raises(InvalidInstance):
        await ingest_bytes(ingestor, b"not a dicom file" * 100)
    assert await counts(ingestor) == (0, 0, 0, 0)
    assert blob_files(ingestor) == [] and spool_files(ingestor) == []


async def test_counts_and_modalities_follow_stores_and_deletes(ingestor: Ingestor) -> None:
    study = "1.2.826.0.1.3680043.99.1"
    ct = [make_instance("CT_small.dcm", study_uid=study, series_uid=f"{study}.1") for _ in range(3)]
    mr = [make_instance("MR_small.dcm", study_uid=study, series_uid=f"{study}.2") for _ in range(2)]
    for data in ct + mr:
        await ingest_bytes(ingestor, data)
    async with ingestor.db.read() as session:
        row = (await session.execute(select(Study))).scalar_one()
    assert (row.num_series, row.num_instances, row.modalities_in_study) == (2, 5, "CT\\MR")
    remover = Remover(ingestor.repository, ingestor.store)
    assert await remover.delete(SCOPE, study, f"{study}.2") == 2
    async with ingestor.db.read() as session:
        row = (await session.execute(select(Study))).scalar_one()
    assert (row.num_series, row.num_instances, row.modalities_in_study) == (1, 3, "CT")
    assert len(blob_files(ingestor)) == 3
    assert await remover.delete(SCOPE, study) == 3
    assert await counts(ingestor) == (0, 0, 0, 0)
    assert blob_files(ingestor) == []


async def test_other_tenant_neither_sees_nor_overwrites(ingestor: Ingestor) -> None:
    data = make_instance("CT_small.dcm")
    await ingest_bytes(ingestor, data)
    other = Scope.single("other")
    spool = ingestor.new_spool()
    spool.write(data)
    result = await ingestor.ingest_spooled(spool, spool.finish(), other)
    assert result.status is IngestStatus.STORED  # same UID, separate tenant: its own copy
    mine = await ingestor.repository.find_instances(SCOPE, result.study_instance_uid)
    theirs = await ingestor.repository.find_instances(other, result.study_instance_uid)
    assert len(mine) == len(theirs) == 1
    assert mine[0].blob_key != theirs[0].blob_key
    assert (
        await ingestor.repository.find_instances(Scope.single("nobody"), result.study_instance_uid)
        == []
    )


async def test_sweep_removes_blob_of_interrupted_store(ingestor: Ingestor, tmp_path: Path) -> None:
    orphan = tmp_path / "orphan.dcm"
    orphan.write_bytes(b"x" * 100)
    key = "default/1.2/1.2.3/1.2.3.4/0123456789abcdef.dcm"
    await ingestor.repository.begin_pending_write(key)
    await ingestor.store.put_file(key, orphan)
    assert await ingestor.store.exists(key)
    # Within the grace period the put may still be under way: left alone.
    assert await sweep_pending_writes(ingestor.repository, ingestor.store) == 0
    assert await ingestor.store.exists(key)
    removed = await sweep_pending_writes(
        ingestor.repository, ingestor.store, grace=timedelta(seconds=-5)
    )
    assert removed == 1
    assert not await ingestor.store.exists(key)
    assert (await counts(ingestor))[3] == 0


# -- races: cancellation, deletes and stores of the same bytes, refused instances ---------------
async def rows_without_blobs(ingestor: Ingestor) -> list[str]:
    async with ingestor.db.read() as session:
        keys = (await session.execute(select(Instance.blob_key))).scalars().all()
    return [k for k in keys if not await ingestor.store.exists(k)]


async def cancelled_while_storing(ingestor: Ingestor, data: bytes) -> None:
    """Ingest ``data``, the request cancelled (a client gone) while its transaction runs."""
    original = ingestor.repository.store_instance

    async def cancel_then_store(*args: Any, **kwargs: Any) -> Any:
        asyncio.get_running_loop().call_soon(task.cancel)
        return await original(*args, **kwargs)

    ingestor.repository.store_instance = cancel_then_store  # type: ignore[method-assign]
    task = asyncio.ensure_future(ingest_bytes(ingestor, data))
    with pytest.raises(asyncio.CancelledError):
        await task
    ingestor.repository.store_instance = original  # type: ignore[method-assign]
    await asyncio.sleep(0.2)  # the shielded transaction has settled by now


async def test_a_store_cancelled_mid_transaction_keeps_the_blob_of_its_row(
    ingestor: Ingestor,
) -> None:
    await cancelled_while_storing(ingestor, make_instance("CT_small.dcm"))
    studies, series, instances, pending = await counts(ingestor)
    assert (instances, pending) == (1, 0) or (studies, instances, pending) == (0, 0, 0)
    assert await rows_without_blobs(ingestor) == []
    assert len(blob_files(ingestor)) == instances


async def test_a_cancelled_identical_resend_leaves_the_stored_blob_alone(
    ingestor: Ingestor,
) -> None:
    data = make_instance("CT_small.dcm")
    await ingest_bytes(ingestor, data)
    await cancelled_while_storing(ingestor, data)
    assert await counts(ingestor) == (1, 1, 1, 0)
    assert await rows_without_blobs(ingestor) == []
    assert len(blob_files(ingestor)) == 1


async def test_a_late_blob_delete_never_hits_a_re_stored_instance(ingestor: Ingestor) -> None:
    """DELETE removes the rows, the same file is stored again, then the DELETE removes the blobs
    it collected: every put has its own key, so the new row keeps its blob."""
    data = make_instance("CT_small.dcm", study_uid="1.2.826.0.1.3680043.10.1")
    await ingest_bytes(ingestor, data)
    keys = await ingestor.repository.delete(SCOPE, "1.2.826.0.1.3680043.10.1")
    again = await ingest_bytes(ingestor, data)
    for key in keys:
        await ingestor.store.delete(key)
    assert again.status is IngestStatus.STORED
    assert await rows_without_blobs(ingestor) == []
    assert len(blob_files(ingestor)) == 1


@pytest.mark.parametrize("policy", list(DuplicatePolicy))
async def test_an_instance_refused_for_another_study_leaves_no_empty_study(
    db_url: str, tmp_path: Path, policy: DuplicatePolicy
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url, duplicate_policy=policy)
    db = open_database(db_url)
    writer = BatchWriter(db)
    ingestor = Ingestor(
        settings=settings,
        db=db,
        repository=IndexRepository(db, writer),
        store=LocalBlobStore(tmp_path / "data" / "blobs"),
    )
    try:
        sop = "1.2.826.0.1.3680043.10.2.1"
        await ingest_bytes(ingestor, make_instance("CT_small.dcm", sop_uid=sop))
        elsewhere = make_instance("CT_small.dcm", sop_uid=sop, study_uid="1.2.826.0.1.3680043.10.3")
        with pytest.raises(DuplicateInstance):
            await ingest_bytes(ingestor, elsewhere)
        assert await counts(ingestor) == (1, 1, 1, 0)
        assert len(blob_files(ingestor)) == 1 and spool_files(ingestor) == []
    finally:
        await writer.close()
        await db.dispose()

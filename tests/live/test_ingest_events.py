"""The ingest pipeline publishes after the commit (DESIGN.md data flow, step 5), nothing else."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pydicom
import pytest

from dicomvault.config import DuplicatePolicy, Settings
from dicomvault.errors import DuplicateInstance, InvalidInstance
from dicomvault.index.engine import open_database
from dicomvault.index.repository import IndexRepository
from dicomvault.index.scope import Scope
from dicomvault.index.writer import BatchWriter
from dicomvault.ingest.pipeline import Ingestor, IngestResult
from dicomvault.live.bus import Subscription
from dicomvault.live.events import EventKind
from dicomvault.live.inprocess import InProcessEventBus
from dicomvault.storage.local import LocalBlobStore
from dicomvault.testing.synthetic import make_instance

pytestmark = pytest.mark.anyio
NORTH = Scope.single("north")


async def _ingestor(
    db_url: str, tmp_path: Path, policy: DuplicatePolicy
) -> tuple[Ingestor, BatchWriter, InProcessEventBus]:
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url, duplicate_policy=policy)
    db = open_database(db_url)
    writer = BatchWriter(db)
    repository = IndexRepository(db, writer)
    store = LocalBlobStore(tmp_path / "data" / "blobs")
    bus = InProcessEventBus()
    ingestor = Ingestor(settings=settings, db=db, repository=repository, store=store, events=bus)
    return ingestor, writer, bus


@pytest.fixture
async def setup(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Ingestor, InProcessEventBus]]:
    ingestor, writer, bus = await _ingestor(db_url, tmp_path, DuplicatePolicy.REJECT)
    yield ingestor, bus
    await writer.close()
    await ingestor.db.dispose()


async def ingest(ingestor: Ingestor, data: bytes, scope: Scope = NORTH) -> IngestResult:
    spool = ingestor.new_spool()
    spool.write(data)
    return await ingestor.ingest_spooled(spool, spool.finish(), scope)


async def no_event(subscription: Subscription) -> bool:
    return await subscription.next_event(0.05) is None


async def test_a_stored_instance_is_published_once_committed(
    setup: tuple[Ingestor, InProcessEventBus],
) -> None:
    ingestor, bus = setup
    with bus.subscribe({"north"}) as sub:
        result = await ingest(ingestor, make_instance(patient_id="EVT1"))
        delivery = await sub.next_event(1)
        assert delivery is not None
        event = delivery.event
        assert (event.kind, event.tenant) == (EventKind.STORED, "north")
        assert (event.study_uid, event.series_uid, event.sop_uid) == (
            result.study_instance_uid,
            result.series_instance_uid,
            result.sop_instance_uid,
        )
        # Committed before publishing: whoever reacts to the event finds the instance.
        found = await ingestor.repository.find_instances(NORTH, event.study_uid)
        assert [i.sop_uid for i in found] == [event.sop_uid]
        # The event holds no patient data.
        assert "EVT1" not in delivery.event.to_json().decode()


async def test_identical_resend_and_refusals_publish_nothing(
    setup: tuple[Ingestor, InProcessEventBus],
) -> None:
    ingestor, bus = setup
    data = make_instance()
    await ingest(ingestor, data)
    with bus.subscribe({"north"}) as sub:
        await ingest(ingestor, data)  # idempotent: nothing new exists
        assert await no_event(sub)
        with pytest.raises(InvalidInstance):
            await ingest(ingestor, b"not a DICOM file" * 20)
        assert await no_event(sub)
        changed = make_instance(
            study_uid=_uid(data, "StudyInstanceUID"),
            series_uid=_uid(data, "SeriesInstanceUID"),
            sop_uid=_uid(data, "SOPInstanceUID"),
            study_description="DIFFERENT",
        )
        with pytest.raises(DuplicateInstance):
            await ingest(ingestor, changed)
        assert await no_event(sub)


async def test_replacement_is_published_as_replaced(db_url: str, tmp_path: Path) -> None:
    ingestor, writer, bus = await _ingestor(db_url, tmp_path, DuplicatePolicy.REPLACE)
    try:
        data = make_instance()
        await ingest(ingestor, data)
        changed = make_instance(
            study_uid=_uid(data, "StudyInstanceUID"),
            series_uid=_uid(data, "SeriesInstanceUID"),
            sop_uid=_uid(data, "SOPInstanceUID"),
            study_description="DIFFERENT",
        )
        with bus.subscribe({"north"}) as sub:
            await ingest(ingestor, changed)
            delivery = await sub.next_event(1)
        assert delivery is not None and delivery.event.kind is EventKind.REPLACED
    finally:
        await writer.close()
        await ingestor.db.dispose()


def _uid(data: bytes, keyword: str) -> str:
    return str(getattr(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True), keyword))

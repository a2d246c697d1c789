"""Write transactions of the index, and group commit for SQLite.

SQLite has one writer and, with ``synchronous=FULL``, one fsync per commit; committing each
instance alone caps ingest at the disk's fsync rate, and driving it through aiosqlite costs a
thread round trip per statement. Writers therefore queue synchronous work here; one worker thread
runs whatever has queued up in one transaction, each piece inside its own SAVEPOINT so that one
failure rolls back only itself. Callers wait until the shared commit is durable, so "visible only
after commit" (DESIGN.md, ingest step 4) still holds for every piece.

On PostgreSQL each piece runs in its own transaction (``AsyncSession.run_sync``): writers run
concurrently and the server groups WAL flushes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy.orm import Session, sessionmaker

from dicomvault.index.engine import Database

T = TypeVar("T")
Work = Callable[[Session], Any]


def _new_future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


@dataclass
class _Job:
    work: Work
    done: asyncio.Future[Any] = field(default_factory=_new_future)
    value: Any = None
    error: BaseException | None = None


class BatchWriter:
    def __init__(self, db: Database, max_batch: int = 64) -> None:
        self._db = db
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a write transaction; return once its commit is durable."""
        if self._db.sync_write is None:
            async with self._db.write() as session, session.begin():
                return await session.run_sync(work)
        job = _Job(work)
        self._ensure_running().put_nowait(job)
        result: T = await asyncio.shield(job.done)
        return result

    def _ensure_running(self) -> asyncio.Queue[_Job]:
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._task is None or self._task.done():
            assert self._db.sync_write is not None
            self._task = asyncio.get_running_loop().create_task(
                self._loop(self._queue, self._db.sync_write)
            )
        return self._queue

    async def _loop(self, queue: asyncio.Queue[_Job], sessions: sessionmaker[Session]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self._max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(_commit_batch, sessions, batch)
            except BaseException as exc:  # the commit itself failed: nothing of it is stored
                for job in batch:
                    _settle(job.done, None, exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for job in batch:
                _settle(job.done, job.value, job.error)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _commit_batch(sessions: sessionmaker[Session], batch: list[_Job]) -> None:
    if len(batch) == 1:
        # Alone in its transaction: a failure rolls back only itself without a SAVEPOINT.
        _commit_alone(sessions, batch[0])
        return
    with sessions() as session, session.begin():
        for job in batch:
            try:
                with session.begin_nested():
                    job.value = job.work(session)
            except Exception as exc:
                job.error = exc


def _commit_alone(sessions: sessionmaker[Session], job: _Job) -> None:
    with sessions() as session:
        try:
            with session.begin():
                job.value = job.work(session)
        except Exception as exc:  # the work or its commit failed: nothing of it is stored
            job.error = exc


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)

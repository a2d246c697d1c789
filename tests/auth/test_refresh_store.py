"""Refresh-token rotation in the identity store, on both databases, with concurrent uses.

What the HTTP tests cannot arrange: uses that race. On PostgreSQL writes run concurrently, so two
uses of one token, or reuses of two tokens of one family, really overlap here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from dicomvault.auth.store import IdentityStore, RefreshOutcome
from dicomvault.index.engine import open_database
from dicomvault.index.writer import BatchWriter

pytestmark = pytest.mark.anyio
LATER = datetime.now(UTC) + timedelta(days=1)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[IdentityStore]:
    db = open_database(db_url)
    writer = BatchWriter(db)
    identities = IdentityStore(db, writer)
    await identities.ensure_tenant("north")
    yield identities
    await writer.close()
    await db.dispose()


async def family_of(store: IdentityStore, *tokens: str) -> str:
    user = await store.create_user(f"u{uuid.uuid4().hex[:8]}", "x", ["technician"], ["north"], None)
    family = uuid.uuid4().hex
    for token in tokens:
        await store.add_refresh_token(token, family, user.pk, LATER)
    return family


async def test_a_use_within_the_grace_rotates_again_and_after_it_revokes(
    store: IdentityStore,
) -> None:
    family = await family_of(store, "t1")
    assert (await store.use_refresh_token("t1", 30))[0] == RefreshOutcome.OK
    assert (await store.use_refresh_token("t1", 30))[0] == RefreshOutcome.OK
    assert await store.family_active(family)
    assert (await store.use_refresh_token("t1", 0))[0] == RefreshOutcome.REUSED
    assert not await store.family_active(family)
    # Revoked: not even within the grace.
    assert (await store.use_refresh_token("t1", 30))[0] == RefreshOutcome.REUSED


async def test_two_racing_uses_of_one_token_without_grace_are_one_use_and_one_reuse(
    store: IdentityStore,
) -> None:
    family = await family_of(store, "t1")
    outcomes = await asyncio.gather(*(store.use_refresh_token("t1", 0) for _ in range(2)))
    assert sorted(o[0] for o in outcomes) == [RefreshOutcome.OK, RefreshOutcome.REUSED]
    assert not await store.family_active(family)


async def test_racing_reuses_in_one_family_revoke_it_without_failing(
    store: IdentityStore,
) -> None:
    family = await family_of(store, "a", "b", "c")
    for token in ("a", "b", "c"):
        assert (await store.use_refresh_token(token, 0))[0] == RefreshOutcome.OK
    for _ in range(3):  # each round: every spent token of the family comes back at once
        outcomes = await asyncio.gather(
            *(store.use_refresh_token(token, 0) for token in ("a", "b", "c"))
        )
        assert [o[0] for o in outcomes] == [RefreshOutcome.REUSED] * 3
    assert not await store.family_active(family)

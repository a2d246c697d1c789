"""QIDO-RS and (later) C-FIND share this entry point: a parsed request in, DICOM JSON out."""

from __future__ import annotations

from typing import Any

from dicomvault.index.engine import Database
from dicomvault.index.scope import Scope
from dicomvault.query.qido import QidoRequest, search


async def run_query(
    db: Database, scope: Scope, request: QidoRequest, base_url: str
) -> list[dict[str, Any]]:
    async with db.read() as session:
        return await search(session, scope, request, base_url=base_url)

"""QIDO-RS and (later) C-FIND share this entry point: a parsed request in, DICOM JSON out."""

from __future__ import annotations

from typing import Any

from dicomvault.index.engine import Database
from dicomvault.index.scope import Scope
from dicomvault.index.search import StudyOrder, search_index
from dicomvault.query.qido import QidoRequest, index_query, search_results


async def run_query(
    db: Database,
    scope: Scope,
    request: QidoRequest,
    base_url: str,
    study_order: StudyOrder | None = None,
) -> list[dict[str, Any]]:
    """One scoped index read (a single worker-thread hop on SQLite), then the DICOM JSON.

    ``study_order`` sorts a study list in SQL (the worklist's columns); QIDO-RS has no sort.
    """
    query = index_query(request, study_order)
    hits = await db.run_read(lambda session: search_index(session, scope, query))
    return search_results(request, hits, base_url=base_url)

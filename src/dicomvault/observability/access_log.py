"""Access log without patient data: method, path, status, duration, correlation ID.

Query strings are never logged — QIDO carries patient names, IDs and birth dates there — only the
fact that one was present. Paths hold UIDs at most, which DESIGN.md allows in logs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("dicomvault.access")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            state: dict[str, Any] = scope.get("state") or {}
            query = "?<redacted>" if scope.get("query_string") else ""
            client = scope.get("client")
            log.info(
                "%s %s%s %d %.1fms id=%s client=%s",
                scope.get("method"),
                scope.get("path"),
                query,
                status,
                (time.perf_counter() - started) * 1000,
                state.get("correlation_id", "-"),
                client[0] if client else "-",
            )

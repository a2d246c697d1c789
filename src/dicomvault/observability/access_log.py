"""Access log without patient data: method, path, status, duration, correlation ID.

Query strings are never logged — QIDO carries patient names, IDs and birth dates there — only the
fact that one was present. Paths are logged segment by segment, and only the segments known to be
harmless: the fixed words of the app's own routes (``dicom-web``, ``studies``...), UIDs and frame
lists (digits and dots, which DESIGN.md allows in logs), attribute tags of bulk-data paths, and the
tenant name the route matched once it proved to be one of the caller's. Anything else a client put
in the path — a patient name where a UID belongs, say — is written as ``<redacted>``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("dicomvault.access")

REDACTED = "<redacted>"
# UIDs (PS3.5 9.1), frame lists "1,2,3" (PS3.18 8.3.3.2): digits, dots, commas only.
_NUMERIC = re.compile(r"^[0-9][0-9.,]{0,127}$")
# Bulk-data paths address elements by tag: eight hex digits, optionally an item index.
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
# config.TENANT_NAME_PATTERN, which this module may not import: config and observability are
# independent parts of the bottom layer (import-linter contract in pyproject.toml).
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._words: frozenset[str] | None = None

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
                self.loggable_path(scope),
                query,
                status,
                (time.perf_counter() - started) * 1000,
                state.get("correlation_id", "-"),
                # Resolved through trusted proxies by the enforcement point, else the peer.
                state.get("client_address") or (client[0] if client else "-"),
            )

    def loggable_path(self, scope: Scope) -> str:
        """The request path with every segment not known to be harmless redacted."""
        words = self._route_words(scope)
        params: dict[str, Any] = scope.get("path_params") or {}
        # A tenant name only once the enforcement point found it among the caller's tenants:
        # before that it is just text a client typed.
        state: dict[str, Any] = scope.get("state") or {}
        held = getattr(state.get("scope"), "tenants", ())
        tenant = params.get("tenant") if params.get("tenant") in held else None
        kept = []
        for segment in str(scope.get("path", "")).split("/"):
            harmless = (
                segment == ""
                or segment in words
                or _NUMERIC.fullmatch(segment) is not None
                or _TAG.fullmatch(segment) is not None
                or (segment == tenant and _TENANT.fullmatch(segment) is not None)
            )
            kept.append(segment if harmless else REDACTED)
        return "/".join(kept)

    def _route_words(self, scope: Scope) -> frozenset[str]:
        """The fixed path segments of every route of the app (computed once)."""
        if self._words is None:
            routes = getattr(scope.get("app"), "routes", None)
            if routes is None:
                return frozenset()
            words = set()
            for path in _route_paths(routes):
                for segment in path.split("/"):
                    if segment and "{" not in segment:
                        words.add(segment)
            self._words = frozenset(words)
        return self._words


def _route_paths(routes: Iterable[Any]) -> Iterator[str]:
    """Every route's path template, through included routers and mounts."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):  # FastAPI's lazily included router
            for context in contexts():
                yield str(getattr(context, "path", "") or "")
            continue
        yield str(getattr(route, "path", "") or "")
        children = getattr(route, "routes", None)
        if children:
            yield from _route_paths(children)

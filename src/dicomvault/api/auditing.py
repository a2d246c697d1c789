"""One audit record per request, written durably before the response starts.

A raw ASGI middleware (STYLE.md: Starlette's BaseHTTPMiddleware buffers): it waits for the
application's ``http.response.start``, appends the event the route's policy names — or a Security
Alert for a refused request — and only then lets the response begin. It also stamps every
response with the request's correlation ID and the caller's RateLimit headers.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomvault.api.permissions import RoutePolicy
from dicomvault.audit import codes
from dicomvault.audit.codes import EventKind, EventOutcome
from dicomvault.audit.records import AuditEvent
from dicomvault.auth.principal import Principal
from dicomvault.index.scope import Scope as TenantScope

log = logging.getLogger("dicomvault.audit")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation = _correlation_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["correlation_id"] = correlation

        async def send_with_audit(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = correlation
                for name, value in (state.get("rate_limit_headers") or {}).items():
                    headers.setdefault(name, value)
                await _record(scope, state, int(message["status"]))
            await send(message)

        await self.app(scope, receive, send_with_audit)


def _correlation_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = bytes(value).decode("latin-1")
            if _REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


async def _record(scope: Scope, state: dict[str, Any], status: int) -> None:
    policy: RoutePolicy | None = state.get("policy")
    kind = _event_kind(policy, state, status)
    if kind is None:
        return
    app = scope.get("app")
    services = getattr(getattr(app, "state", None), "services", None)
    if services is None:
        return
    event = AuditEvent.of(kind, **_event_fields(scope, state, status, kind))
    # Failing to audit fails the request: an access that cannot be recorded must not happen.
    await services.audit.append(event)


def _event_kind(policy: RoutePolicy | None, state: dict[str, Any], status: int) -> EventKind | None:
    if state.get("security_alert"):
        return codes.AUTHENTICATION_ALERT
    if policy is None:
        return None
    if status == 401 and not policy.public:
        return codes.AUTHENTICATION_ALERT if state.get("auth_failure") else None
    if status == 403:
        return codes.AUTHORIZATION_DENIED
    return policy.audit


def _outcome(status: int) -> int:
    if status < 400:
        return EventOutcome.SUCCESS
    if status < 500:
        return EventOutcome.MINOR_FAILURE
    return EventOutcome.SERIOUS_FAILURE


def _event_fields(
    scope: Scope, state: dict[str, Any], status: int, kind: EventKind
) -> dict[str, Any]:
    principal: Principal | None = state.get("principal")
    tenant_scope: TenantScope | None = state.get("scope")
    params: dict[str, Any] = scope.get("path_params") or {}
    studies = tuple(state.get("audit_studies") or ([params["study"]] if "study" in params else []))
    series = tuple([params["series"]] if "series" in params else [])
    tenant = params.get("tenant") or (tenant_scope.write_tenant if tenant_scope else None)
    client = scope.get("client")
    outcome = _outcome(status)
    if kind is codes.AUTHENTICATION_ALERT:
        outcome = EventOutcome.SERIOUS_FAILURE
    return {
        "outcome": outcome,
        "principal_subject": principal.subject if principal else state.get("audit_subject", ""),
        "principal_name": principal.name if principal else "",
        "role": principal.primary_role if principal else "",
        "tenant": tenant or (principal.default_tenant if principal else None),
        "patient_id": state.get("audit_patient_id") or _patient_id_from_query(scope),
        "study_uids": tuple(s for s in studies if s),
        "series_uids": series,
        "source_ip": state.get("client_address") or (client[0] if client else None),
        "correlation_id": state.get("correlation_id"),
        "detail": f"{scope.get('method', '')} {_route_path(scope)} -> {status}",
    }


def _route_path(scope: Scope) -> str:
    """The route template, never the concrete path or query (they may carry patient data)."""
    route = scope.get("route")
    return str(getattr(route, "path", "")) or "(unmatched)"


def _patient_id_from_query(scope: Scope) -> str | None:
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    for key, value in parse_qsl(query):
        if key in ("PatientID", "00100020") and value and "*" not in value and "?" not in value:
            return value[:64]
    return None

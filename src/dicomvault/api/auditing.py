"""One audit record per request, written durably before the response starts.

A raw ASGI middleware (STYLE.md: Starlette's BaseHTTPMiddleware buffers): it waits for the
application's ``http.response.start``, appends the event the route's policy names — or a Security
Alert for a refused request (401 with or without credentials, 403) — and only then lets the
response begin; an unexpected error is recorded as a serious failure before Starlette answers
500. The record names the tenant holding the data and its patient (PS3.15 A.5.3 participant
objects), the source address resolved through trusted proxies only, and the correlation ID,
which it also stamps on every response together with the caller's RateLimit headers.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomvault.api.permissions import RoutePolicy
from dicomvault.audit import codes
from dicomvault.audit.codes import EventKind, EventOutcome
from dicomvault.audit.records import MAX_DETAIL_LENGTH, AuditEvent, join_uids
from dicomvault.auth.principal import Action, Principal
from dicomvault.dicom.uids import is_valid_uid
from dicomvault.index.repository import IndexRepository, StudyOwner
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
        recorded = False

        async def send_with_audit(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = correlation
                for name, value in (state.get("rate_limit_headers") or {}).items():
                    headers.setdefault(name, value)
                recorded = True
                await _record(scope, state, int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_with_audit)
        except Exception:
            # An unexpected error: the 500 is sent by Starlette's outermost middleware, after us.
            # Record it here so that no request, failed or not, goes unaudited.
            if not recorded:
                recorded = True
                await _record(scope, state, 500)
            raise


def _correlation_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = bytes(value).decode("latin-1")
            if _REQUEST_ID.fullmatch(candidate):
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
    owners = await _owners(services, scope, state, policy)
    event = AuditEvent.of(kind, **_event_fields(scope, state, status, kind, owners))
    # Failing to audit fails the request: an access that cannot be recorded must not happen.
    await services.audit.append(event)


def _event_kind(policy: RoutePolicy | None, state: dict[str, Any], status: int) -> EventKind | None:
    if state.get("security_alert"):
        return codes.AUTHENTICATION_ALERT
    if policy is None:
        return None
    if status == 401 and not policy.public:
        # Missing credentials as much as a forged token: someone reached for a protected route.
        return codes.AUTHENTICATION_ALERT
    if status == 403:
        return codes.AUTHORIZATION_DENIED
    return policy.audit


def note_owners(request: Request, owners: Iterable[StudyOwner]) -> None:
    """Record whose data the route found, for the audit record (PS3.15 A.5.3 participants).

    A retrieve route passes what its own index lookup returned (``StoredInstance.owner``), so
    that auditing it costs no second query; only what the route found is recorded.
    """
    request.state.audit_owners = list(dict.fromkeys(owners))


async def _owners(
    services: Any, scope: Scope, state: dict[str, Any], policy: RoutePolicy | None
) -> list[StudyOwner]:
    """The tenant and patient of the studies the request touched (PS3.15 A.5.3 participants).

    A retrieve route noted them from its own lookup (``note_owners``), a delete before the data
    went (``api/security.py``); otherwise — a 404, a store — they are read now, within the
    request's own tenant scope, from the study in the path or the studies stored.
    """
    noted: list[StudyOwner] | None = state.get("audit_owners")
    if noted is not None:
        return noted
    tenant_scope: TenantScope | None = state.get("scope")
    if tenant_scope is None or policy is None:
        return []
    params: dict[str, Any] = scope.get("path_params") or {}
    studies = list(state.get("audit_studies") or ([params["study"]] if "study" in params else []))
    if not studies:
        return []
    repository: IndexRepository = services.repository
    stored = policy.action is Action.STORE
    return await repository.study_owners(tenant_scope, studies, write_only=stored)


def _outcome(status: int) -> int:
    if status < 400:
        return EventOutcome.SUCCESS
    if status < 500:
        return EventOutcome.MINOR_FAILURE
    return EventOutcome.SERIOUS_FAILURE


def _alert_outcome(state: dict[str, Any]) -> int:
    """A forged/expired token or refresh-token reuse is serious; a missing credential minor."""
    if state.get("auth_failure") or state.get("security_alert"):
        return EventOutcome.SERIOUS_FAILURE
    return EventOutcome.MINOR_FAILURE


def _event_fields(
    scope: Scope,
    state: dict[str, Any],
    status: int,
    kind: EventKind,
    owners: list[StudyOwner],
) -> dict[str, Any]:
    principal: Principal | None = state.get("principal")
    tenant_scope: TenantScope | None = state.get("scope")
    params: dict[str, Any] = scope.get("path_params") or {}
    studies = tuple(state.get("audit_studies") or ([params["study"]] if "study" in params else []))
    series = tuple([params["series"]] if "series" in params else [])
    holders = sorted({o.tenant for o in owners})
    tenant = (
        (holders[0] if holders else None)
        or params.get("tenant")
        or (tenant_scope.write_tenant if tenant_scope else None)
        or (principal.default_tenant if principal else None)
    )
    patients = sorted({o.patient_id for o in owners if o.patient_id})
    detail = f"{scope.get('method', '')} {_route_path(scope)} -> {status}"
    if len(holders) > 1:
        detail += f"; tenants {','.join(holders)}"
    client = scope.get("client")
    outcome = _alert_outcome(state) if kind is codes.AUTHENTICATION_ALERT else _outcome(status)
    return {
        "outcome": outcome,
        "principal_subject": principal.subject if principal else state.get("audit_subject", ""),
        "principal_name": principal.name if principal else "",
        "role": principal.primary_role if principal else "",
        "tenant": tenant or None,
        # Several patients (a STOW of many studies) are one backslash-joined value, as DICOM
        # writes multiple values; the audit search matches each of them.
        # A route may name the patient itself (``request.state.audit_patient_id``).
        "patient_id": state.get("audit_patient_id")
        or (join_uids(tuple(patients)) if patients else _patient_id_from_query(scope)),
        # Only well-formed UIDs: a path segment that is not one is not an object of the event.
        "study_uids": tuple(s for s in studies if is_valid_uid(s)),
        "series_uids": tuple(s for s in series if is_valid_uid(s)),
        "source_ip": state.get("client_address") or (client[0] if client else None),
        "correlation_id": state.get("correlation_id"),
        "detail": detail[:MAX_DETAIL_LENGTH],
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

"""The one enforcement point: authenticate, rate-limit, authorise and scope every request.

Installed as an app-wide dependency, so it runs before every route's own dependencies. It looks
the matched route up in ``api/permissions.py``; a route missing there is refused (default deny).
What it learns (principal, scope, policy) goes on ``request.state`` for the route and for the
audit middleware.
"""

from __future__ import annotations

import hmac
import ipaddress
import re

from fastapi import Request
from starlette.datastructures import Headers
from starlette.routing import Route

from dicomvault.api.deps import get_services
from dicomvault.api.permissions import RoutePolicy, policy_for
from dicomvault.auth.principal import Action, Principal
from dicomvault.auth.ratelimit import rate_limit_headers
from dicomvault.auth.service import AddressNotAllowed
from dicomvault.auth.tokens import InvalidToken
from dicomvault.config import ForwardedHeader
from dicomvault.errors import Forbidden, NotFound, TooManyRequests, Unauthenticated
from dicomvault.index.scope import Scope

ACCESS_COOKIE = "dv_access"
REFRESH_COOKIE = "dv_refresh"
CSRF_COOKIE = "dv_csrf"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def route_template(request: Request) -> str | None:
    route = request.scope.get("route")
    return route.path if isinstance(route, Route) else getattr(route, "path", None)


async def enforce(request: Request) -> None:
    """App-wide dependency; raises the error the client gets, or leaves state for the route."""
    request.state.client_address = client_address(request)
    template = route_template(request)
    policy = policy_for(request.method, template) if template else None
    if policy is None:
        raise Forbidden("route is not declared in the permission table")
    request.state.policy = policy
    if policy.public:
        return
    principal = await authenticate_request(request)
    request.state.principal = principal
    await _rate_limit(request, principal)
    if policy.action is not None and not principal.may(policy.action):
        raise Forbidden(f"not allowed to {policy.action.value}")
    scope = scope_for(request, principal, policy)
    request.state.scope = scope
    if policy.action is Action.DELETE:
        await _note_owners_before_delete(request, scope)


async def authenticate_request(request: Request) -> Principal:
    """The verified principal of the request's Bearer token or session cookie (401 if none).

    Besides the signature, ``AuthService.authenticate`` checks the token against the identity
    store on every request: logout, a disabled or deleted user, changed roles or tenants end it;
    a partner client is held to its IP allowlist here, not only when its token was issued.
    """
    services = get_services(request)
    token, from_cookie = _credentials(request)
    if token is None:
        raise Unauthenticated("authentication required")
    if from_cookie and request.method not in _SAFE_METHODS:
        check_csrf(request)
    try:
        return await services.auth.authenticate(token, client_address(request))
    except InvalidToken as exc:
        request.state.auth_failure = str(exc)
        raise Unauthenticated("invalid or expired token") from exc
    except AddressNotAllowed as exc:
        raise Forbidden("client not allowed from this address") from exc


async def _note_owners_before_delete(request: Request, scope: Scope) -> None:
    """Who the data to be deleted belongs to, read while it still exists (for the audit record).

    After the delete the study may be gone; the audit middleware uses what is noted here.
    """
    study = request.path_params.get("study")
    if not study:
        return
    owners = await get_services(request).repository.study_owners(scope, [study], write_only=True)
    request.state.audit_owners = owners


def _credentials(request: Request) -> tuple[str | None, bool]:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip(), False
        request.state.auth_failure = "unsupported Authorization scheme"
        raise Unauthenticated("Authorization must be a Bearer token")
    cookie = request.cookies.get(ACCESS_COOKIE)
    return (cookie, True) if cookie else (None, False)


def check_csrf(request: Request) -> None:
    """Double-submit check (OWASP CSRF cheat sheet) on cookie-authenticated writes."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    if not cookie or not hmac.compare_digest(cookie, header):
        raise Forbidden("missing or wrong CSRF token")


async def _rate_limit(request: Request, principal: Principal) -> None:
    services = get_services(request)
    plan = principal.rate_plan or services.default_rate_plan
    decision = await services.rate_limiter.hit(principal.subject, plan)
    request.state.rate_limit_headers = rate_limit_headers(decision, plan)
    if not decision.allowed:
        error = TooManyRequests("rate limit exceeded")
        error.headers = request.state.rate_limit_headers
        raise error


def scope_for(request: Request, principal: Principal, policy: RoutePolicy) -> Scope:
    """Reads span the principal's tenants; writes go to its default tenant. Under
    ``/tenants/{tenant}/`` exactly that tenant — one the principal lacks looks like nothing."""
    tenant = request.path_params.get("tenant")
    if tenant is not None:
        if tenant not in principal.tenants:
            raise NotFound("no such tenant")
        return Scope.single(tenant)
    write = principal.default_tenant or (
        next(iter(principal.tenants)) if len(principal.tenants) == 1 else ""
    )
    return Scope(tenants=principal.tenants, write_tenant=write)


def client_address(request: Request) -> str | None:
    """The caller's address: the peer, or what a configured trusted proxy says it forwarded."""
    peer = request.client.host if request.client else None
    settings = get_services(request).settings
    return resolve_client_address(
        peer, request.headers, settings.trusted_proxies, settings.forwarded_header
    )


def resolve_client_address(
    peer: str | None,
    headers: Headers,
    trusted: list[str],
    header: ForwardedHeader,
) -> str | None:
    """The client named in ``header`` (X-Forwarded-For, or RFC 7239 ``Forwarded: for=``), only
    when the peer is a trusted proxy.

    Only the one header the trusted proxies write is read, never the other and never as a
    fallback: a proxy passes through headers it does not write, so the other one holds whatever
    the client sent. The hops are read right to left and trusted proxies skipped: the first
    address that is not one of ours is the client (anything left of it could have been written
    by the client).
    """
    if not (peer and trusted and _in_networks(peer, trusted)):
        return peer
    hops = _forwarded(headers) if header is ForwardedHeader.FORWARDED else _x_forwarded_for(headers)
    while hops and _in_networks(hops[-1], trusted):
        hops.pop()
    return hops[-1] if hops else peer


_FORWARDED_FOR = re.compile(r'(?:^|[;,\s])for="?\[?([^\]";,\s]+)', re.IGNORECASE)


def _x_forwarded_for(headers: Headers) -> list[str]:
    xff = ",".join(headers.getlist("x-forwarded-for"))
    return [h.strip() for h in xff.split(",") if h.strip()]


def _forwarded(headers: Headers) -> list[str]:
    """The ``for=`` parameters of RFC 7239 ``Forwarded`` (section 4), in order."""
    forwarded = ",".join(headers.getlist("forwarded"))
    hops = [_strip_port(m) for m in _FORWARDED_FOR.findall(forwarded)]
    return [h for h in hops if h]


def _strip_port(address: str) -> str:
    # "192.0.2.1:4711" -> "192.0.2.1"; a bare IPv6 address (already unbracketed) is kept whole.
    if address.count(":") == 1:
        return address.split(":", 1)[0]
    return address


def _in_networks(address: str, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)

"""The one enforcement point: authenticate, rate-limit, authorise and scope every request.

Installed as an app-wide dependency, so it runs before every route's own dependencies. It looks
the matched route up in ``api/permissions.py``; a route missing there is refused (default deny).
What it learns (principal, scope, policy) goes on ``request.state`` for the route and for the
audit middleware.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import Request
from starlette.routing import Route

from dicomvault.api.deps import get_services
from dicomvault.api.permissions import RoutePolicy, policy_for
from dicomvault.auth.principal import Principal
from dicomvault.auth.ratelimit import rate_limit_headers
from dicomvault.auth.tokens import InvalidToken
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
    request.state.scope = scope_for(request, principal, policy)


async def authenticate_request(request: Request) -> Principal:
    services = get_services(request)
    token, from_cookie = _credentials(request)
    if token is None:
        raise Unauthenticated("authentication required")
    if from_cookie and request.method not in _SAFE_METHODS:
        _check_csrf(request)
    try:
        return await services.auth.authenticate(token)
    except InvalidToken as exc:
        request.state.auth_failure = str(exc)
        raise Unauthenticated("invalid or expired token") from exc


def _credentials(request: Request) -> tuple[str | None, bool]:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip(), False
        raise Unauthenticated("Authorization must be a Bearer token")
    cookie = request.cookies.get(ACCESS_COOKIE)
    return (cookie, True) if cookie else (None, False)


def _check_csrf(request: Request) -> None:
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
    """The peer address; X-Forwarded-For only when the peer is a configured trusted proxy."""
    peer = request.client.host if request.client else None
    trusted = get_services(request).settings.trusted_proxies
    if peer and trusted and _in_networks(peer, trusted):
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        while hops and _in_networks(hops[-1], trusted):
            hops.pop()
        if hops:
            return hops[-1]
    return peer


def _in_networks(address: str, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)

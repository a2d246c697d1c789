"""OAuth2 token endpoint (RFC 6749), browser sessions, logout, and who-am-I."""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response

from dicomvault.api.deps import get_services
from dicomvault.api.security import (
    ACCESS_COOKIE,
    CSRF_COOKIE,
    REFRESH_COOKIE,
    authenticate_request,
    check_csrf,
    client_address,
)
from dicomvault.auth.ratelimit import rate_limit_headers
from dicomvault.auth.service import Grant, OAuthError, RefreshTokenReused
from dicomvault.bootstrap import Services
from dicomvault.errors import TooManyRequests

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

# Present while the session's access cookie needs no renewal: it expires a minute before the
# access cookie does (half its life for short ones), counted like it by the browser's own
# clock, so the page's script (static/session.js) renews when it is gone whatever the skew
# between the browser's clock and the server's. Readable by that script; not a credential.
SESSION_FRESH_COOKIE = "dv_session_fresh"
_RENEW_LEAD_SECONDS = 60


def renew_after(expires_in: int) -> int:
    """Seconds after which an access cookie of ``expires_in`` seconds should be renewed."""
    return max(expires_in - _RENEW_LEAD_SECONDS, expires_in // 2)


_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(error: OAuthError, basic: bool = False) -> JSONResponse:
    headers = dict(_NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="dicomvault"' if basic else "Bearer"
    return JSONResponse(
        {"error": error.error, "error_description": error.description},
        status_code=error.status,
        headers=headers,
    )


def _token_body(grant: Grant) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": grant.access_token,
        "token_type": "Bearer",
        "expires_in": grant.expires_in,
    }
    if grant.refresh_token:
        body["refresh_token"] = grant.refresh_token
    if grant.principal.scopes is not None:
        body["scope"] = " ".join(sorted(grant.principal.scopes))
    return body


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    """RFC 6749 2.3.1: client id and secret, form-urlencoded, in HTTP Basic."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (unquote(client_id), unquote(secret)) if sep else None


async def _limit_failed_logins(
    request: Request, keys: list[str], *, failed: bool, what: str = "logins"
) -> None:
    """Failed logins are limited per account and per source address (cost only on failure)."""
    services = get_services(request)
    plan = services.login_rate_plan
    for key in keys:
        decision = await services.rate_limiter.hit(key, plan, dry_run=not failed)
        if not decision.allowed:
            error = TooManyRequests(f"too many failed {what}; try again later")
            error.headers = rate_limit_headers(decision, plan)
            raise error


def _login_keys(request: Request, account: str) -> list[str]:
    return [f"login:account:{account}", f"login:ip:{client_address(request) or '?'}"]


async def _refresh_grant(request: Request, refresh_token: str) -> Grant:
    """A refresh token is guessed no more freely than a password: failures cost per address.

    A failure is counted, never turned into a 429 itself: a reused token must still answer as
    reuse (its Security Alert, its cleared cookies); the next attempt meets the limit.
    """
    services = get_services(request)
    keys = [f"refresh:ip:{client_address(request) or '?'}"]
    await _limit_failed_logins(request, keys, failed=False, what="renewals")
    try:
        return await services.auth.refresh_grant(refresh_token)
    except OAuthError:
        for key in keys:
            await services.rate_limiter.hit(key, services.login_rate_plan)
        raise


_FORM = "application/x-www-form-urlencoded"
_TOKEN_PARAMETERS = (
    "grant_type",
    "username",
    "password",
    "refresh_token",
    "client_id",
    "client_secret",
    "scope",
)


async def _form_problem(request: Request, names: tuple[str, ...]) -> OAuthError | None:
    """RFC 6749 3.2: form-encoded, and no parameter more than once; else ``invalid_request``.

    Checked by hand so that a JSON body or a missing ``grant_type`` answers the OAuth error
    clients understand (400 ``invalid_request``), not FastAPI's 422.
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != _FORM:
        return OAuthError("invalid_request", f"the body must be {_FORM}")
    form = await request.form()
    repeated = sorted(n for n in names if len(form.getlist(n)) > 1)
    if repeated:
        return OAuthError("invalid_request", f"repeated parameter: {repeated[0]}")
    return None


@router.post(
    "/token",
    summary="OAuth2 token endpoint",
    description=(
        "RFC 6749. Form-encoded `grant_type=password` (username, password), "
        "`client_credentials` (client_id and client_secret in the body or HTTP Basic; optional "
        "scope) or `refresh_token` (rotated on every use; reusing one revokes its family). "
        "Answers `access_token`, `token_type`, `expires_in` and, for users, `refresh_token`. "
        "Errors are RFC 6749 5.2 JSON (`invalid_request`, `invalid_grant`, `invalid_client`, "
        "`invalid_scope`, `unsupported_grant_type`)."
    ),
)
async def token(
    request: Request,
    grant_type: Annotated[str | None, Form()] = None,
    username: Annotated[str | None, Form()] = None,
    password: Annotated[str | None, Form()] = None,
    refresh_token: Annotated[str | None, Form()] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    scope: Annotated[str | None, Form()] = None,
) -> Response:
    basic = _basic_credentials(request)
    problem = await _form_problem(request, _TOKEN_PARAMETERS)
    if problem is not None:
        return _oauth_error(problem)
    try:
        if grant_type == "password":
            grant = await _password_grant(request, username, password)
        elif grant_type == "client_credentials":
            if basic is not None and (client_id or client_secret):
                raise OAuthError("invalid_request", "use one client authentication method")
            cid, secret = basic or (client_id, client_secret)
            grant = await _client_grant(request, cid, secret, scope)
        elif grant_type == "refresh_token":
            if not refresh_token:
                raise OAuthError("invalid_request", "refresh_token is required")
            grant = await _refresh_grant(request, refresh_token)
        elif not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        else:
            raise OAuthError("unsupported_grant_type", "grant_type is not supported")
    except RefreshTokenReused as error:
        request.state.security_alert = "refresh token reuse"
        return _oauth_error(error)
    except OAuthError as error:
        return _oauth_error(error, basic=basic is not None)
    request.state.principal = grant.principal
    return JSONResponse(_token_body(grant), headers=_NO_STORE)


async def _password_grant(request: Request, username: str | None, password: str | None) -> Grant:
    # RFC 6749 3.2: a parameter sent without a value is treated as omitted.
    if not username or not password:
        raise OAuthError("invalid_request", "username and password are required")
    request.state.audit_subject = username
    keys = _login_keys(request, f"user:{username}")
    await _limit_failed_logins(request, keys, failed=False)
    try:
        return await get_services(request).auth.password_grant(username, password)
    except OAuthError:
        await _limit_failed_logins(request, keys, failed=True)
        raise


async def _client_grant(
    request: Request, client_id: str | None, secret: str | None, scope: str | None
) -> Grant:
    if not client_id or not secret:
        raise OAuthError("invalid_client", "client authentication required", status=401)
    request.state.audit_subject = f"client:{client_id}"
    keys = _login_keys(request, f"client:{client_id}")
    await _limit_failed_logins(request, keys, failed=False)
    try:
        return await get_services(request).auth.client_credentials_grant(
            client_id, secret, scope, client_address(request)
        )
    except OAuthError as error:
        if error.error == "invalid_client":
            await _limit_failed_logins(request, keys, failed=True)
        raise


@router.post(
    "/session",
    summary="Browser login: sets HttpOnly cookies",
    description=(
        "Form-encoded username and password. Sets the access token in an HttpOnly, Secure, "
        "SameSite=Strict cookie, the refresh token in another (path /api/v1/auth), and a CSRF "
        "cookie whose value must be echoed in `X-CSRF-Token` on state-changing requests."
    ),
)
async def session_login(
    request: Request,
    username: Annotated[str | None, Form()] = None,
    password: Annotated[str | None, Form()] = None,
) -> Response:
    services = get_services(request)
    problem = await _form_problem(request, ("username", "password"))
    if problem is not None:
        return _oauth_error(problem)
    try:
        grant = await _password_grant(request, username, password)
    except OAuthError as error:
        return _oauth_error(error)
    request.state.principal = grant.principal
    csrf = secrets.token_urlsafe(24)
    response = JSONResponse({"csrf_token": csrf, "expires_in": grant.expires_in}, headers=_NO_STORE)
    _set_session_cookies(response, grant, services)
    _set_csrf_cookie(response, csrf, services)
    return response


@router.post(
    "/session/refresh",
    summary="Browser session: renew the access cookie from the refresh cookie",
    description=(
        "For the pages and the viewer, shortly before the access cookie runs out: the refresh "
        "cookie is rotated (RFC 6819 5.2.2.3; reusing an old one revokes the whole session) and "
        "new access and refresh cookies are set. Needs the `X-CSRF-Token` double-submit header. "
        "Answers `expires_in`; errors are RFC 6749 5.2 JSON (`invalid_grant` when there is no "
        "session to renew), and a reused refresh cookie also clears the session's cookies."
    ),
)
async def session_refresh(request: Request) -> Response:
    services = get_services(request)
    refresh_token = request.cookies.get(REFRESH_COOKIE)
    if not refresh_token:
        return _oauth_error(OAuthError("invalid_grant", "no browser session to renew"))
    check_csrf(request)  # a cookie is a credential the browser sends by itself
    try:
        grant = await _refresh_grant(request, refresh_token)
    except RefreshTokenReused as error:
        request.state.security_alert = "refresh token reuse"
        response = _oauth_error(error)
        _clear_session_cookies(response)
        return response
    except OAuthError as error:
        return _oauth_error(error)
    request.state.principal = grant.principal
    response = JSONResponse({"expires_in": grant.expires_in}, headers=_NO_STORE)
    _set_session_cookies(response, grant, services)
    # The same CSRF value, its lifetime moved on with the refresh cookie's (a sliding session
    # must not lose it after the first login's refresh_token_ttl).
    _set_csrf_cookie(response, request.cookies.get(CSRF_COOKIE, ""), services)
    return response


def _set_csrf_cookie(response: Response, csrf: str, services: Services) -> None:
    """As long-lived as the refresh cookie: a page open across a browser restart still renews."""
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        max_age=services.settings.refresh_token_ttl,
        httponly=False,
        secure=services.settings.cookie_secure,
        samesite="strict",
    )


def _set_session_cookies(response: Response, grant: Grant, services: Services) -> None:
    """Access token (every path), refresh token (only here), and the renewal marker."""
    secure = services.settings.cookie_secure
    response.set_cookie(
        ACCESS_COOKIE,
        grant.access_token,
        max_age=grant.expires_in,
        httponly=True,
        secure=secure,
        samesite="strict",
        path="/",
    )
    if grant.refresh_token:
        response.set_cookie(
            REFRESH_COOKIE,
            grant.refresh_token,
            max_age=services.settings.refresh_token_ttl,
            httponly=True,
            secure=secure,
            samesite="strict",
            path="/api/v1/auth",
        )
    # Its value: the seconds left between its end and the access cookie's (the page's margin).
    response.set_cookie(
        SESSION_FRESH_COOKIE,
        str(grant.expires_in - renew_after(grant.expires_in)),
        max_age=renew_after(grant.expires_in),
        httponly=False,
        secure=secure,
        samesite="strict",
        path="/",
    )


def _clear_session_cookies(response: Response) -> None:
    for name, path in (
        (ACCESS_COOKIE, "/"),
        (REFRESH_COOKIE, "/api/v1/auth"),
        (CSRF_COOKIE, "/"),
        (SESSION_FRESH_COOKIE, "/"),
    ):
        response.delete_cookie(name, path=path)


@router.post("/logout", summary="Revoke the refresh token (and the session cookies)")
async def logout(request: Request, refresh_token: Annotated[str | None, Form()] = None) -> Response:
    services = get_services(request)
    principal = None
    if request.headers.get("authorization") or request.cookies.get(ACCESS_COOKIE):
        try:
            principal = await authenticate_request(request)
            request.state.principal = principal
        except Exception:  # an expired access token must not stop a logout
            principal = None
    await services.auth.logout(refresh_token or request.cookies.get(REFRESH_COOKIE), principal)
    response = Response(status_code=204)
    _clear_session_cookies(response)
    return response


@router.get("/me", summary="The calling principal: name, roles, tenants")
async def me(request: Request) -> dict[str, Any]:
    principal = request.state.principal
    return {
        "subject": principal.subject,
        "kind": principal.kind.value,
        "name": principal.name,
        "roles": sorted(r.value for r in principal.roles),
        "tenants": sorted(principal.tenants),
        "default_tenant": principal.default_tenant,
        "scopes": sorted(principal.scopes) if principal.scopes is not None else None,
    }

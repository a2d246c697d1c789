"""Errors on pages become pages: a login redirect without a session, an HTML page otherwise.

``PageRoute`` wraps the whole route handler — the app-wide enforcement dependency included, as
FastAPI runs it inside — so the page routes handle their own errors while the rest of the app
keeps its JSON error answers (api/errors.py). Status codes stay what the API would send; the
audit middleware sees them unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute

from dicomvault.errors import DicomVaultError, TooManyRequests, Unauthenticated
from dicomvault.web.navigation import login_url_for
from dicomvault.web.rendering import PAGE_HEADERS, render

_MESSAGES = {
    403: "You are not allowed to see this page.",
    404: "There is no such study, or it is not one of your facilities'.",
    429: "Too many requests. Wait a moment and reload the page.",
}


class PageRoute(APIRoute):
    """A browser page: no session → 303 to /login?next=…; any other refusal → an HTML page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Unauthenticated:
                return login_redirect(request)
            except DicomVaultError as error:
                return error_page(request, error)

        return page_handler


def login_redirect(request: Request) -> Response:
    """303 to /login?next=…, audited as the API's 401 would be (an alert for a bad token)."""
    if getattr(request.state, "auth_failure", None):
        request.state.security_alert = "invalid or expired token on a page"
    request.state.policy = None  # no Query record: nothing was shown
    return RedirectResponse(login_url_for(request), status_code=303, headers=PAGE_HEADERS)


def error_page(request: Request, error: DicomVaultError) -> Response:
    request.state.error_detail = type(error).__name__
    page = render(
        request,
        "error.html",
        status_code=error.http_status,
        user=getattr(request.state, "principal", None),
        active="",
        may_upload=False,
        live_position="",
        message=_MESSAGES.get(error.http_status, error.message),
    )
    if isinstance(error, TooManyRequests):
        page.headers.update(error.headers)
    return page

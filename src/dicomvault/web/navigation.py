"""Where a browser goes after logging in, and where it goes when it has no session.

``next`` comes from the query string, so it is attacker-controlled: only a path of this origin
is accepted (``/...``, never ``//host``, ``/\\host``, a scheme, or control characters), which
closes the open redirect (OWASP "Unvalidated Redirects and Forwards").
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from fastapi import Request

DEFAULT_NEXT = "/"
LOGIN_PATH = "/login"


def safe_next(candidate: str | None) -> str:
    """``candidate`` if it is a same-origin path (with its query), else ``/``."""
    if not candidate or len(candidate) > 2048:
        return DEFAULT_NEXT
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in candidate) or "\\" in candidate:
        return DEFAULT_NEXT
    if not candidate.startswith("/") or candidate.startswith("//"):
        return DEFAULT_NEXT
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc:
        return DEFAULT_NEXT
    if parts.path == LOGIN_PATH:
        return DEFAULT_NEXT
    return candidate


def login_url_for(request: Request) -> str:
    """``/login?next=<this page>`` — the path and query of the request, percent-encoded."""
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return f"{LOGIN_PATH}?next={quote(safe_next(target), safe='')}"

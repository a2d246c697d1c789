"""Server-side rendering: the Jinja2 environment, the shipped assets, the pages' headers.

Autoescaping is on for every template (a PatientName may hold ``<script>``), undefined names
fail loudly, and every page carries a Content-Security-Policy that allows scripts, styles and
connections from this origin only — no inline script, no inline style, no framing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
# Pages may show patient data: not cached anywhere, not framed, no Referer to other origins.
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
_MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


@dataclass(frozen=True)
class Asset:
    name: str
    body: bytes
    media_type: str
    etag: str  # strong: the SHA-256 of the bytes


@cache
def assets() -> dict[str, Asset]:
    """The files under web/static, read once; nothing else can be served as a static asset."""
    found: dict[str, Asset] = {}
    root = resources.files("dicomvault.web") / "static"
    for entry in root.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if not entry.is_file() or suffix not in _MEDIA_TYPES:
            continue
        body = entry.read_bytes()
        digest = hashlib.sha256(body).hexdigest()
        found[entry.name] = Asset(entry.name, body, _MEDIA_TYPES[suffix], f'"{digest[:32]}"')
    return found


def static_url(name: str) -> str:
    """``/static/<name>?v=<hash>``: a new version is a new URL, so assets can be cached long."""
    asset = assets()[name]
    return f"/static/{name}?v={asset.etag.strip(chr(34))[:12]}"


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("dicomvault.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static_url"] = static_url
    return env


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page (or fragment) with the pages' security headers."""
    html = environment().get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)

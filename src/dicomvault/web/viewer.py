"""The bundled OHIF Viewer 3 at /viewer: its prebuilt app, moved under /viewer/ and configured.

``scripts/install.sh`` unpacks the npm package ``@ohif/app`` (``dist/``) into
``settings.viewer_dir``. That build expects to live at ``/``: ``index.html`` names ``/app.bundle…``,
``window.PUBLIC_URL`` is ``"/"`` and webpack's runtime public path (``__webpack_require__.p``),
from which chunks, workers and WebAssembly load, is ``"/"``. Those few strings are rewritten here,
once per file and kept in memory, so the untouched package works under ``/viewer/``. No service
worker is registered (its script tag is dropped), so nothing is cached behind the server's back.

``/viewer/app-config.js`` is generated per user: one DICOMweb data source on this origin's
``/dicom-web``, upload (STOW-RS) only for principals who may store, no investigational-use dialog
and no onboarding tour. The session is the HttpOnly ``dv_access`` cookie, which same-origin
requests carry by themselves; state-changing ones also need the CSRF double-submit header, which a
small shim in that script adds (OHIF's data source forwards only an ``Authorization`` header).

The app's document (``index.html``, answered for every client-side route) is a page like the web
UI's: the app-wide enforcement point authenticates it — rate limit and partner IP allowlist
included — and a missing or expired session becomes the 303 to ``/login?next=…`` (web/errors.py).
It may not be framed by any site. The build's files are public: they are the unmodified package.

Every response under /viewer is cross-origin isolated (COOP same-origin, COEP require-corp, CORP
same-origin): OHIF's 3D features need ``SharedArrayBuffer``. DICOMweb is same-origin, which COEP
allows as it is.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from html import escape
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import Scope

from dicomvault.auth.principal import Action, Principal
from dicomvault.bootstrap import Services
from dicomvault.retrieve.conditional import etag_matches
from dicomvault.web.errors import PageRoute
from dicomvault.web.navigation import LOGIN_PATH
from dicomvault.web.rendering import assets

PREFIX = "/viewer/"
DICOMWEB_PATH = "/dicom-web"
# The CSRF double-submit of api/security.py, which the app-config's shim performs (web/ may not
# import api/; a test checks they agree).
CSRF_COOKIE = "dv_csrf"
CSRF_HEADER = "X-CSRF-Token"

CROSS_ORIGIN_ISOLATION = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
# The document runs the app with the user's session: no other site may frame it (clickjacking);
# RFC 7034 for older browsers, CSP Level 2 frame-ancestors for current ones.
DOCUMENT_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
}
# Bundles whose names carry webpack's content hash never change under that name.
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
_HASHED_NAME = re.compile(r"(?:^|[.])[0-9a-f]{16}\.[a-z0-9]+$")

# What the OHIF build ships, by suffix; anything else is served as octet-stream.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
    ".json": "application/json",
    ".jsonc": "application/json",
    ".webapp": "application/x-web-app-manifest+json",
    ".wasm": "application/wasm",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".gif": "image/gif",
    ".ico": "image/x-icon",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
}
# Never served: the service worker and its loader (see the module docstring), and the build's
# own deployment files.
_WITHHELD = frozenset({"sw.js", "init-service-worker.js", "_headers", "_redirects", "serve.json"})

router = APIRouter(tags=["viewer"])


# -- rewriting the build for /viewer/ ------------------------------------------------------------
def rewrite_index_html(html: str, prefix: str = PREFIX) -> str:
    """Point the root-relative URLs of OHIF's ``index.html`` under ``prefix``; drop the service
    worker's loader script."""
    html = re.sub(
        r"<script[^>]*\bsrc=\"/init-service-worker\.js\"[^>]*>\s*</script>", "", html, flags=re.I
    )
    html = re.sub(r"(window\.PUBLIC_URL\s*=\s*)([\"'])/\2", rf"\g<1>\g<2>{prefix}\g<2>", html)
    return re.sub(r"\b(src|href|content)=\"/(?!/)", rf'\g<1>="{prefix}', html)


def rewrite_javascript(js: str, prefix: str = PREFIX) -> str:
    """Webpack's runtime public path, from which every chunk, worker and .wasm is loaded, and the
    one root-relative module import of the app bundle (the microscopy viewer)."""
    js = re.sub(r"(__webpack_require__\.p\s*=\s*)([\"'])/\2", rf"\g<1>\g<2>{prefix}\g<2>", js)
    return js.replace("'/dicom-microscopy-viewer/", f"'{prefix}dicom-microscopy-viewer/")


def rewrite_css(css: str, prefix: str = PREFIX) -> str:
    return re.sub(r"url\(([\"']?)/(?!/)", rf"url(\g<1>{prefix}", css)


def rewrite_manifest(text: str, prefix: str = PREFIX) -> str:
    """Web app manifests and browserconfig.xml: icon paths such as ``"/assets/…"``."""
    return re.sub(r"([\"'])/(?=assets/)", rf"\g<1>{prefix}", text)


_REWRITERS = {
    ".js": rewrite_javascript,
    ".css": rewrite_css,
    ".json": rewrite_manifest,
    ".webapp": rewrite_manifest,
    ".xml": rewrite_manifest,
}


@dataclass(frozen=True)
class Asset:
    """A rewritten file, held in memory with its strong ETag."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, body: bytes) -> Asset:
        return cls(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


class ViewerBuild:
    """One unpacked OHIF ``dist/`` folder and the rewritten copies of the files that need it."""

    def __init__(self, root: Path, prefix: str = PREFIX) -> None:
        self.root = root.resolve()
        self.prefix = prefix
        self._rewritten: dict[Path, Asset | None] = {}
        self._index: Asset | None = None

    @property
    def installed(self) -> bool:
        return (self.root / "index.html").is_file()

    def file(self, relative: str) -> Path | None:
        """The file a URL path names, or None (missing, withheld, hidden, or outside the root)."""
        parts = PurePosixPath(relative).parts
        if not parts or any(p.startswith(".") for p in parts) or parts[-1] in _WITHHELD:
            return None
        try:
            path = self.root.joinpath(*parts).resolve()
            if not path.is_relative_to(self.root) or not path.is_file():
                return None
        except (OSError, ValueError):  # a NUL byte, a name too long for the file system
            return None
        return path

    async def index(self) -> Asset:
        if self._index is None:
            html = await run_in_threadpool((self.root / "index.html").read_text, "utf-8")
            self._index = Asset.of(rewrite_index_html(html, self.prefix).encode())
        return self._index

    async def rewritten(self, path: Path) -> Asset | None:
        """The file's rewritten bytes, or None when it needs no rewriting (served from disk)."""
        rewrite = _REWRITERS.get(path.suffix)
        if rewrite is None:
            return None
        if path not in self._rewritten:
            self._rewritten[path] = await run_in_threadpool(self._rewrite, path, rewrite)
        return self._rewritten[path]

    def _rewrite(self, path: Path, rewrite: Any) -> Asset | None:
        text = path.read_text("utf-8", errors="surrogateescape")
        changed: str = rewrite(text, self.prefix)
        if changed == text:
            return None
        return Asset.of(changed.encode("utf-8", errors="surrogateescape"))


@lru_cache(maxsize=4)
def _build_for(root: Path) -> ViewerBuild:
    return ViewerBuild(root)


# -- the generated app-config.js -----------------------------------------------------------------
def ohif_config(*, upload: bool) -> dict[str, Any]:
    """OHIF 3 ``window.config`` (see OHIF's ``platform/app/public/config/default.js``); the
    DICOMweb roots are filled in by the browser with its own origin."""
    return {
        "name": "dicomvault",
        "routerBasename": PREFIX.rstrip("/"),
        "extensions": [],
        "modes": [],
        "showStudyList": True,
        "investigationalUseDialog": {"option": "never"},
        # The onboarding tour (customization "ohif.tours") would start on every first visit.
        "customizationService": [{"ohif.tours": {"$set": []}}],
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": True,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 25},
        "showErrorDetails": "dev",
        "defaultDataSourceName": "dicomvault",
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": "dicomvault",
                "configuration": {
                    "friendlyName": "dicomvault",
                    "name": "dicomvault",
                    "qidoRoot": DICOMWEB_PATH,
                    "wadoRoot": DICOMWEB_PATH,
                    "wadoUriRoot": DICOMWEB_PATH,
                    "qidoSupportsIncludeField": True,
                    "supportsReject": False,
                    "supportsFuzzyMatching": True,
                    "supportsWildcard": True,
                    "imageRendering": "wadors",
                    "thumbnailRendering": "thumbnail",
                    "thumbnailRequestStrategy": "fetch",
                    "enableStudyLazyLoad": True,
                    "staticWado": False,
                    "singlepart": "video,pdf",
                    "bulkDataURI": {"enabled": True},
                    "omitQuotationForMultipartRequest": True,
                    "dicomUploadEnabled": upload,
                },
            }
        ],
    }


_CONFIG_SCRIPT = """\
// Generated by dicomvault for the signed-in user; not cacheable.
(function () {
  "use strict";
  var CSRF_COOKIE = %(csrf_cookie)s, CSRF_HEADER = %(csrf_header)s, LOGIN = %(login)s;
  var UNSAFE = /^(POST|PUT|PATCH|DELETE)$/i;

  function csrfToken() {
    var pairs = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < pairs.length; i++) {
      var at = pairs[i].indexOf("=");
      if (pairs[i].slice(0, at) === CSRF_COOKIE) {
        return decodeURIComponent(pairs[i].slice(at + 1));
      }
    }
    return "";
  }
  function sameOrigin(url) {
    try { return new URL(String(url), window.location.href).origin === window.location.origin; }
    catch (e) { return false; }
  }

  // CSRF double-submit on same-origin writes (STOW of measurements and of uploads).
  var open = XMLHttpRequest.prototype.open, send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url) {
    this.__dvCsrf = UNSAFE.test(String(method)) && sameOrigin(url);
    return open.apply(this, arguments);
  };
  XMLHttpRequest.prototype.send = function () {
    var token = this.__dvCsrf ? csrfToken() : "";
    if (token) { this.setRequestHeader(CSRF_HEADER, token); }
    return send.apply(this, arguments);
  };
  var nativeFetch = window.fetch;
  window.fetch = function (input, init) {
    var isRequest = typeof Request !== "undefined" && input instanceof Request;
    var method = (init && init.method) || (isRequest ? input.method : "GET");
    var token = UNSAFE.test(method) && sameOrigin(isRequest ? input.url : input) ? csrfToken() : "";
    if (token) {
      init = Object.assign({}, init);
      var headers = new Headers(init.headers || (isRequest ? input.headers : undefined));
      headers.set(CSRF_HEADER, token);
      init.headers = headers;
    }
    return nativeFetch.call(this, input, init);
  };

  function signIn() {
    window.location.assign(LOGIN + "?next=" +
      encodeURIComponent(window.location.pathname + window.location.search));
  }

  var config = %(config)s;
  var source = config.dataSources[0].configuration;
  var root = window.location.origin + source.qidoRoot;
  source.qidoRoot = source.wadoRoot = source.wadoUriRoot = root;
  // An expired session: back to the login page, then here again.
  config.httpErrorHandler = function (error) {
    if (error && error.status === 401) { signIn(); }
  };
  window.config = config;
})();
"""


def app_config_script(*, upload: bool) -> str:
    """The viewer's configuration and shim, then the pages' own session keeper (web/static/
    session.js): a radiologist reading for longer than one access token lives must not meet
    the login page in the middle of a study."""
    config = _CONFIG_SCRIPT % {
        "csrf_cookie": json.dumps(CSRF_COOKIE),
        "csrf_header": json.dumps(CSRF_HEADER),
        "login": json.dumps(LOGIN_PATH),
        "config": json.dumps(ohif_config(upload=upload), indent=2),
    }
    return config + "\n" + assets()["session.js"].body.decode("utf-8")


# -- routes --------------------------------------------------------------------------------------
def is_document_path(path: str) -> bool:
    """Whether a path under /viewer/ stands for the app's one document rather than a file of the
    build: the study list (``""``), ``index.html``, or one of OHIF's client-side routes
    (``viewer``, ``segmentation``, …), whose names have no dot, where file names do."""
    return path in ("", "index.html") or "." not in PurePosixPath(path).name


class DocumentRoute(PageRoute):
    """The route of the app's document: matched only for ``is_document_path`` paths (a file's
    path falls through to the public file route), and a page like the web UI's: the app-wide
    enforcement point authenticates it (rate limit and IP allowlist included), and no session
    becomes the 303 to /login?next=… (web/errors.py)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE and not is_document_path(str(child["path_params"]["route"])):
            return Match.NONE, {}
        return match, child


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _build(request: Request) -> ViewerBuild:
    return _build_for(_services(request).settings.viewer_dir)


def _not_installed(build: ViewerBuild) -> HTMLResponse:
    where = escape(str(build.root))
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Viewer not installed</title></head>
<body><main>
<h1>The OHIF Viewer is not installed</h1>
<p>This server looks for it in <code>{where}</code> (setting <code>DICOMVAULT_VIEWER_DIR</code>).
Install it with <code>scripts/install.sh</code> (or <code>.venv/bin/python
scripts/fetch_viewer.py</code>); the next request finds it, no restart needed.</p>
<p>The archive itself (DICOMweb under <code>/dicom-web</code>) works without it.</p>
</main></body></html>
"""
    headers = {"Cache-Control": "no-store", **DOCUMENT_HEADERS}
    return HTMLResponse(body, status_code=503, headers=headers)


def _isolated(response: Response) -> Response:
    for name, value in CROSS_ORIGIN_ISOLATION.items():
        response.headers.setdefault(name, value)
    return response


def _memory_response(
    request: Request,
    asset: Asset,
    media_type: str,
    cache: str,
    extra: Mapping[str, str] | None = None,
) -> Response:
    headers = {"ETag": asset.etag, "Cache-Control": cache, **(extra or {})}
    if etag_matches(request.headers.get("if-none-match"), asset.etag):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=media_type, headers=headers)


@router.api_route("/viewer", methods=["GET", "HEAD"], include_in_schema=False)
async def viewer_root(request: Request) -> Response:
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(PREFIX + query, status_code=308)


@router.get("/viewer/app-config.js", include_in_schema=False)
async def viewer_app_config(request: Request) -> Response:
    principal: Principal = request.state.principal
    script = app_config_script(upload=principal.may(Action.STORE))
    return _isolated(
        Response(
            script,
            media_type=MEDIA_TYPES[".js"],
            headers={"Cache-Control": "no-store", "Vary": "Cookie"},
        )
    )


async def viewer_document(request: Request) -> Response:
    """The app's one HTML document, for every client-side route (study list, /viewer?…).

    Only reached with a current session: the enforcement point ran before (``DocumentRoute``).
    """
    build = _build(request)
    if not build.installed:
        return _isolated(_not_installed(build))
    index = await build.index()
    return _isolated(
        _memory_response(request, index, MEDIA_TYPES[".html"], REVALIDATE, DOCUMENT_HEADERS)
    )


router.add_api_route(
    "/viewer/{route:path}",
    viewer_document,
    methods=["GET", "HEAD"],
    include_in_schema=False,
    route_class_override=DocumentRoute,
)


@router.api_route("/viewer/{file:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def viewer_file(file: str, request: Request) -> Response:
    """A file of the build (public: the unmodified OHIF app); 404 for anything else."""
    build = _build(request)
    if not build.installed:
        return _isolated(_not_installed(build))
    found = build.file(file)
    if found is None:
        return _isolated(Response("not found", status_code=404, media_type="text/plain"))
    media_type = MEDIA_TYPES.get(found.suffix, "application/octet-stream")
    cache = IMMUTABLE if _HASHED_NAME.search(found.name) else REVALIDATE
    asset = await build.rewritten(found)
    if asset is not None:
        return _isolated(_memory_response(request, asset, media_type, cache))
    return _isolated(_file_response(request, found, media_type, cache))


def _file_response(request: Request, path: Path, media_type: str, cache: str) -> Response:
    stat = path.stat()
    response = FileResponse(
        path, media_type=media_type, headers={"Cache-Control": cache}, stat_result=stat
    )
    etag = response.headers.get("etag")
    if etag and etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": cache})
    return response

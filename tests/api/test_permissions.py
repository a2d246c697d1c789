"""The permission table against the app: every route declared, every role × route cell asserted.

The first part walks the routes of the application as ``create_app`` builds it (through
FastAPI's included routers and mounts) and fails for any (method, path) that
``api/permissions.py`` does not declare — default deny is only safe if nothing is forgotten.

The second part sends one real HTTP request per (route, role) to a running server, with users of
each role made through the admin API, and asserts the cell's outcome: a granted action is not
refused (not 401/403), a withheld one is 403, no credentials is 401, a public route answers.
UIDs in the paths are valid but unknown, so allowed writes and deletes change nothing (404).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dicomvault.api.permissions import ROUTE_POLICIES, RoutePolicy, policy_for
from dicomvault.asgi import create_app
from dicomvault.auth.principal import ROLE_GRANTS, Role
from dicomvault.bootstrap import build_services
from dicomvault.config import Settings
from dicomvault.web.errors import PageRoute
from tests.api.support import ROLES, Account, Api, bearer

ANONYMOUS = "anonymous"
# Public pages that take no parameters answer 200 outright.
PUBLIC_GET_OK = {"/healthz", "/readyz", "/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"}


@dataclass(frozen=True)
class DeclaredRoute:
    method: str
    path: str
    kind: str  # "route" or "mount"
    template_seen: str  # what the enforcement point looks up (scope["route"].path)
    page: bool = False  # a browser page (web/): no session redirects to /login instead of 401


def _walk(routes: Iterable[Any], prefix: str = "") -> Iterator[DeclaredRoute]:
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):  # FastAPI's included router: its routes with their full paths
            for context in contexts():
                original = context.original_route
                yield from _endpoint(original, prefix + context.path, original.path)
            continue
        children = getattr(route, "routes", None)
        if type(route).__name__ == "Mount":
            path = prefix + route.path
            yield DeclaredRoute("GET", path, "mount", path)
            if children:
                yield from _walk(children, path)
            continue
        yield from _endpoint(route, prefix + route.path, route.path)


def _endpoint(route: Any, path: str, seen: str) -> Iterator[DeclaredRoute]:
    methods = getattr(route, "methods", None)
    assert methods, f"route {path!r} of type {type(route).__name__} has no methods to declare"
    page = isinstance(route, PageRoute)
    for method in sorted(methods):
        yield DeclaredRoute(method, path, "route", seen, page)


def _app_routes() -> list[DeclaredRoute]:
    """The routes of the real application (built on a throwaway data folder; nothing runs)."""
    with tempfile.TemporaryDirectory() as data:
        app = create_app(build_services(Settings(data_dir=Path(data))))
        return sorted(set(_walk(app.routes)), key=lambda r: (r.path, r.method))


APP_ROUTES = _app_routes()


def test_the_walk_finds_the_dicomweb_routes_under_both_prefixes() -> None:
    paths = {(r.method, r.path) for r in APP_ROUTES}
    for prefix in ("/dicom-web", "/tenants/{tenant}/dicom-web"):
        assert ("POST", f"{prefix}/studies") in paths
        assert ("GET", f"{prefix}/studies/{{study}}/series/{{series}}/instances/{{sop}}") in paths
        assert ("DELETE", f"{prefix}/studies/{{study}}") in paths
    assert len(APP_ROUTES) >= 2 * 19 + 20


@pytest.mark.parametrize("route", APP_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_route_of_the_app_is_declared(route: DeclaredRoute) -> None:
    policy = policy_for(route.method, route.path)
    assert policy is not None, (
        f"{route.method} {route.path} is not in api/permissions.py ROUTE_POLICIES: "
        "declare its action and audit event (undeclared routes answer 403)"
    )
    # The enforcement point looks the policy up by the matched route's own template; a router
    # included with an extra prefix would make it look up the wrong (missing) entry.
    assert route.template_seen == route.path
    if route.kind == "mount":
        # A mounted app is outside FastAPI's dependencies: nothing can enforce a role there.
        assert policy.public, f"mount {route.path} bypasses enforcement; it must be public"


def test_head_is_judged_as_get() -> None:
    for (method, path), policy in ROUTE_POLICIES.items():
        if method == "GET":
            assert policy_for("HEAD", path) is policy


def test_no_declared_route_is_missing_from_the_app() -> None:
    """A stale row would hide a typo in a real route's declaration."""
    app_keys = {(r.method, r.path) for r in APP_ROUTES}
    stale = sorted(key for key in ROUTE_POLICIES if key not in app_keys)
    assert not stale, f"declared but not served: {stale}"


# -- the matrix over HTTP --------------------------------------------------------------------------
UNKNOWN = "1.2.826.0.1.3680043.10.1999.1"
_PLACEHOLDERS = {
    "study": UNKNOWN,
    "series": UNKNOWN + ".2",
    "sop": UNKNOWN + ".3",
    "frames": "1",
    "path": "7FE00010",
    "username": "nobody-matrix-user",
    "client_id": "dv-0000000000000000",
    # /viewer/{file:path}: a file of the OHIF build (a path without a dot is the app's document).
    "file": "manifest.json",
}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)(?::[a-z]+)?\}")


def _concrete(path: str, tenant: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return tenant if name == "tenant" else _PLACEHOLDERS.get(name, "x")

    return _PLACEHOLDER.sub(value, path)


def _declared(route: DeclaredRoute) -> RoutePolicy:
    policy = policy_for(route.method, route.path)
    assert policy is not None
    return policy


MATRIX = [
    (route, role)
    for route in APP_ROUTES
    if route.kind == "route" and route.method != "HEAD"
    for role in (*ROLES, ANONYMOUS)
]


@pytest.fixture(scope="module")
def tenant(api: Api) -> str:
    return api.tenant("matrix")


@pytest.fixture(scope="module")
def accounts(api: Api, tenant: str) -> dict[str, Account]:
    return {role: api.user([role], [tenant], prefix=f"matrix-{role}") for role in ROLES}


def expected(policy: RoutePolicy, role: str) -> str:
    if policy.public:
        return "public"
    if role == ANONYMOUS:
        return "401"
    if policy.action is None:
        return "authenticated"
    return "allowed" if policy.action in ROLE_GRANTS[Role(role)] else "403"


@pytest.mark.parametrize(
    ("route", "role"), MATRIX, ids=lambda v: f"{v.method} {v.path}" if hasattr(v, "path") else v
)
def test_role_route_cell(
    api: Api, tenant: str, accounts: dict[str, Account], route: DeclaredRoute, role: str
) -> None:
    policy = _declared(route)
    headers = _credentials(api, accounts, route, role)
    url = _concrete(route.path, tenant)
    response = _send(api.http, route.method, url, headers)
    outcome = expected(policy, role)
    status = response.status_code
    context = f"{route.method} {url} as {role}: {status} {response.text[:200]}"
    assert status < 500, context
    if outcome == "public":
        if route.method == "GET" and route.path in PUBLIC_GET_OK:
            assert status == 200, context
        else:
            assert status not in (401, 403), context
    elif outcome == "401" and route.page:
        # The browser's equivalent of 401: 303 to the login page, coming back here afterwards.
        assert status == 303, context
        assert response.headers["location"].startswith("/login"), context
    elif outcome == "401":
        assert status == 401, context
        assert response.headers["www-authenticate"].startswith("Bearer")
    elif outcome == "403":
        assert status == 403, context
    elif outcome == "authenticated":
        assert status == 200, context
    else:
        assert status not in (401, 403), context


# Routes that end the caller's session: they get a session of their own, not the shared one.
SESSION_ENDING = {("POST", "/api/v1/auth/logout")}


def _credentials(
    api: Api, accounts: dict[str, Account], route: DeclaredRoute, role: str
) -> dict[str, str]:
    if role == ANONYMOUS:
        return {}
    account = accounts[role]
    if (route.method, route.path) in SESSION_ENDING:
        return bearer(api.login(account.username)["access_token"])
    return account.headers


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: httpx.Headers
    text: str


def _send(http: httpx.Client, method: str, url: str, headers: dict[str, str]) -> Answer:
    """One request; the body is read only when it is short (a live-event stream never ends).

    No request body: an allowed write is then refused for its (missing) content, never for who
    sent it.
    """
    with http.stream(method, url, headers=headers) as response:
        streaming = response.headers.get("content-type", "").startswith("text/event-stream")
        text = "" if streaming else response.read()[:300].decode(errors="replace")
        return Answer(response.status_code, response.headers, text)


def test_the_matrix_covers_every_role_and_route() -> None:
    routes = {(r.method, r.path) for r in APP_ROUTES if r.kind == "route" and r.method != "HEAD"}
    assert len(MATRIX) == len(routes) * (len(ROLES) + 1)
    assert set(ROLES) == {r.value for r in Role}

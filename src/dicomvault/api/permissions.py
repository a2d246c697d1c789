"""The one declared table: each route's required action and its audit event.

Routes are denied unless they appear here (default deny); ``tests/api/test_permissions.py``
walks every route of the app and fails when one is missing. ``action=None`` marks a public route.
Audit events are the operation kinds of ``audit/codes.py`` (DCM codes, PS3.16 CID 400/401).
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomvault.audit import codes
from dicomvault.audit.codes import EventKind
from dicomvault.auth.principal import Action

DICOMWEB_PREFIXES = ("/dicom-web", "/tenants/{tenant}/dicom-web")


@dataclass(frozen=True)
class RoutePolicy:
    action: Action | None  # None: no action needed
    audit: EventKind | None  # what one request of this route appends to the audit trail
    # A public route needs no principal; /me needs one but no particular action.
    authenticated: bool = True

    @property
    def public(self) -> bool:
        return self.action is None and not self.authenticated


def _dicomweb() -> dict[tuple[str, str], RoutePolicy]:
    store = RoutePolicy(Action.STORE, codes.STORE)
    search = RoutePolicy(Action.SEARCH, codes.QUERY)
    read = RoutePolicy(Action.RETRIEVE, codes.RETRIEVE)
    remove_study = RoutePolicy(Action.DELETE, codes.STUDY_DELETE)
    remove_part = RoutePolicy(Action.DELETE, codes.INSTANCES_DELETE)
    study = "/studies/{study}"
    series = study + "/series/{series}"
    instance = series + "/instances/{sop}"
    relative = {
        ("POST", "/studies"): store,
        ("POST", study): store,
        ("GET", "/studies"): search,
        ("GET", "/series"): search,
        ("GET", "/instances"): search,
        ("GET", study + "/series"): search,
        ("GET", study + "/instances"): search,
        ("GET", series + "/instances"): search,
        ("GET", study): read,
        ("GET", series): read,
        ("GET", instance): read,
        ("GET", study + "/metadata"): read,
        ("GET", series + "/metadata"): read,
        ("GET", instance + "/metadata"): read,
        ("GET", instance + "/frames/{frames}"): read,
        ("GET", instance + "/bulkdata/{path:path}"): read,
        # Rendered resources and thumbnails (api/rendered.py, PS3.18 10.4.1.1.4-5).
        **{
            ("GET", level + resource): read
            for level in (study, series, instance, instance + "/frames/{frames}")
            for resource in ("/rendered", "/thumbnail")
        },
        ("DELETE", study): remove_study,
        ("DELETE", series): remove_part,
        ("DELETE", instance): remove_part,
    }
    return {
        (method, prefix + path): policy
        for prefix in DICOMWEB_PREFIXES
        for (method, path), policy in relative.items()
    }


_PUBLIC = RoutePolicy(None, None, authenticated=False)
_LOGIN = RoutePolicy(None, codes.LOGIN, authenticated=False)
_LOGOUT = RoutePolicy(None, codes.LOGOUT, authenticated=False)
_ADMIN_CONFIG = RoutePolicy(Action.ADMIN, codes.SECURITY_CONFIGURATION_CHANGE)
_ADMIN_USERS = RoutePolicy(Action.ADMIN, codes.USER_SECURITY_CHANGE)
# Reading users, clients and tenants: an administrative (restricted) function used, action R.
_ADMIN_READ = RoutePolicy(
    Action.ADMIN,
    EventKind(
        codes.EventID.SECURITY_ALERT,
        codes.EventActionCode.READ,
        codes.EventTypeCode.USE_OF_RESTRICTED_FUNCTION,
    ),
)
_AUDIT = RoutePolicy(Action.AUDIT, codes.AUDIT_LOG_USED)

ROUTE_POLICIES: dict[tuple[str, str], RoutePolicy] = {
    ("GET", "/healthz"): _PUBLIC,
    ("GET", "/readyz"): _PUBLIC,
    ("GET", "/openapi.json"): _PUBLIC,
    ("GET", "/docs"): _PUBLIC,
    ("GET", "/docs/oauth2-redirect"): _PUBLIC,
    ("GET", "/redoc"): _PUBLIC,
    ("POST", "/api/v1/auth/token"): _LOGIN,
    ("POST", "/api/v1/auth/session"): _LOGIN,
    ("POST", "/api/v1/auth/session/refresh"): _LOGIN,
    ("POST", "/api/v1/auth/logout"): _LOGOUT,
    ("GET", "/api/v1/auth/me"): RoutePolicy(None, None),
    ("GET", "/api/v1/tenants"): _ADMIN_READ,
    ("POST", "/api/v1/tenants"): _ADMIN_CONFIG,
    ("GET", "/api/v1/users"): _ADMIN_READ,
    ("POST", "/api/v1/users"): _ADMIN_USERS,
    ("GET", "/api/v1/users/{username}"): _ADMIN_READ,
    ("PATCH", "/api/v1/users/{username}"): _ADMIN_USERS,
    ("DELETE", "/api/v1/users/{username}"): _ADMIN_USERS,
    ("GET", "/api/v1/clients"): _ADMIN_READ,
    ("POST", "/api/v1/clients"): _ADMIN_USERS,
    ("DELETE", "/api/v1/clients/{client_id}"): _ADMIN_USERS,
    ("GET", "/api/v1/audit"): _AUDIT,
    ("GET", "/api/v1/audit/fhir"): _AUDIT,
    # The OHIF Viewer (web/viewer.py): its files are public; its document (every client-side
    # route) needs a session and, being a page, redirects to the login page without one; its
    # app-config is per principal (upload only for who may store).
    ("GET", "/viewer"): _PUBLIC,
    ("GET", "/viewer/app-config.js"): RoutePolicy(None, None),
    ("GET", "/viewer/{route:path}"): RoutePolicy(None, None),
    ("GET", "/viewer/{file:path}"): _PUBLIC,
    # The web UI (web/): a page audits like the DICOMweb request it stands for (a Query; a study
    # page names its study). The upload page and the live-event stream show no patient data —
    # events carry a tenant and UIDs, the pages re-query (audited) for anything they display.
    ("GET", "/login"): _PUBLIC,
    ("GET", "/static/{name}"): _PUBLIC,
    ("GET", "/"): RoutePolicy(Action.SEARCH, codes.QUERY),
    ("GET", "/worklist/rows"): RoutePolicy(Action.SEARCH, codes.QUERY),
    ("GET", "/studies/{study}"): RoutePolicy(Action.SEARCH, codes.QUERY),
    ("GET", "/upload"): RoutePolicy(Action.STORE, None),
    ("GET", "/api/v1/events"): RoutePolicy(Action.SEARCH, None),
    **_dicomweb(),
}


def policy_for(method: str, path_template: str) -> RoutePolicy | None:
    if method == "HEAD":
        method = "GET"
    return ROUTE_POLICIES.get((method, path_template))

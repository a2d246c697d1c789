"""What a web route needs from the request: the services and what the enforcement point found.

The app-wide enforcement dependency (api/security.py) authenticates, rate-limits, authorises and
scopes every request before a route runs, and leaves the principal and the tenant scope on
``request.state``. web/ reads them here rather than importing api/ (import-linter layers).
"""

from __future__ import annotations

from fastapi import Request

from dicomvault.auth.principal import Principal
from dicomvault.bootstrap import Services
from dicomvault.errors import Forbidden
from dicomvault.index.scope import Scope


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def scope_of(request: Request) -> Scope:
    scope = getattr(request.state, "scope", None)
    if not isinstance(scope, Scope):
        raise Forbidden("no tenant scope for this request")
    return scope


def principal_of(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise Forbidden("no principal for this request")
    return principal


def dicomweb_base(request: Request) -> str:
    """The public base of DICOMweb for RetrieveURLs, built exactly as the DICOMweb API builds it
    (``Settings.dicomweb_base``): configured base URL, root path, tenant prefix if any."""
    tenant = request.path_params.get("tenant")
    root_path = str(request.scope.get("root_path", ""))
    return services_of(request).settings.dicomweb_base(root_path, str(tenant) if tenant else None)

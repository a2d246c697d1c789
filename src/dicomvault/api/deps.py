"""Request-scoped dependencies: the services bound at start-up, and the caller's tenant scope."""

from __future__ import annotations

from fastapi import Request

from dicomvault.auth.principal import Principal
from dicomvault.bootstrap import Services
from dicomvault.errors import Forbidden
from dicomvault.index.scope import Scope


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_scope(request: Request) -> Scope:
    """The tenant scope the enforcement dependency (api/security.py) derived for this request."""
    scope = getattr(request.state, "scope", None)
    if not isinstance(scope, Scope):
        raise Forbidden("no tenant scope for this request")
    return scope


def get_principal(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise Forbidden("no principal for this request")
    return principal

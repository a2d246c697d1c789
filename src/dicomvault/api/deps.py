"""Request-scoped dependencies: the services bound at start-up, and the caller's tenant scope."""

from __future__ import annotations

from fastapi import Request

from dicomvault.bootstrap import Services
from dicomvault.index.scope import Scope


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_scope(request: Request) -> Scope:
    """The caller's tenants. Until identities exist (issue: access control) every caller holds
    the default tenant only; the scope already flows through every query."""
    services = get_services(request)
    return Scope.single(services.settings.default_tenant)

"""Request-scoped dependencies: the services bound at start-up, and the caller's tenant scope.

FastAPI runs a plain ``def`` dependency in its thread pool: a thread round trip per dependency
per request, for a dictionary lookup. Routes therefore depend on the ``async`` forms below
(``ServicesDep``, ``ScopeDep``, ``PrincipalDep``); the plain functions are for direct calls.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

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


async def services_dependency(request: Request) -> Services:
    return get_services(request)


async def scope_dependency(request: Request) -> Scope:
    return get_scope(request)


async def principal_dependency(request: Request) -> Principal:
    return get_principal(request)


ServicesDep = Annotated[Services, Depends(services_dependency)]
ScopeDep = Annotated[Scope, Depends(scope_dependency)]
PrincipalDep = Annotated[Principal, Depends(principal_dependency)]

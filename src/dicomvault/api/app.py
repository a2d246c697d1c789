"""The API's routers, for the ASGI application (``dicomvault.asgi``) to mount.

Health probes, the OAuth2 token and session endpoints, administration, the audit trail, and
DICOMweb (with rendered resources) under both ``/dicom-web`` and ``/tenants/{tenant}/dicom-web``.
The app itself — the enforcement dependency, middleware, error handlers and the web UI's routers
next to these — is composed in ``dicomvault/asgi.py``, above api/ and web/ alike.
"""

from __future__ import annotations

from fastapi import FastAPI

from dicomvault.api import admin, audit_routes, auth_routes, dicomweb, health, rendered


def include_routers(app: FastAPI) -> None:
    app.include_router(health.router, tags=["health"])
    app.include_router(auth_routes.router)
    app.include_router(admin.router)
    app.include_router(audit_routes.router)
    app.include_router(dicomweb.build_router("/dicom-web", ["dicomweb"]))
    app.include_router(
        dicomweb.build_router("/tenants/{tenant}/dicom-web", ["dicomweb (one tenant)"])
    )
    app.include_router(rendered.build_router("/dicom-web", ["dicomweb rendered"]))
    app.include_router(
        rendered.build_router("/tenants/{tenant}/dicom-web", ["dicomweb rendered (one tenant)"])
    )

"""The ASGI application: the one place the HTTP side is put together (composition root).

api/ and web/ are peers (DESIGN.md): neither imports the other. Both are mounted here behind the
same enforcement point (``api/security.py``, an app-wide dependency, so it runs for web routes
too), permission table, audit middleware and error translation. ``dicomvault serve`` (cli.py)
builds the app from here; nothing below imports this module.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from dicomvault import __version__
from dicomvault.api.app import include_routers
from dicomvault.api.auditing import AuditMiddleware
from dicomvault.api.errors import install_error_handlers
from dicomvault.api.security import enforce
from dicomvault.bootstrap import Services
from dicomvault.observability.access_log import AccessLogMiddleware
from dicomvault.web import routes as web_ui
from dicomvault.web import viewer


def create_app(services: Services) -> FastAPI:
    """FastAPI with every route behind ``enforce``; middleware, outermost last: audit, access
    log, CORS (when origins are configured)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        generated = await services.auth.ensure_first_admin()
        if generated is not None:
            # Shown once, on the console of the first start; never written to the logs.
            print(
                f"\n  First start: user 'admin' created with password: {generated}\n",
                file=sys.stderr,
                flush=True,
            )
        await services.events.start()
        # Decoders and encoders load on first use; the first rendered image should not wait.
        await services.renderer.warm_up()
        yield
        await services.close()

    app = FastAPI(
        title="dicomvault",
        version=__version__,
        description=(
            "Medical imaging archive: DICOMweb (PS3.18) under /dicom-web and "
            "/tenants/{tenant}/dicom-web; OAuth2 token endpoint and administration under /api/v1."
        ),
        lifespan=lifespan,
        dependencies=[Depends(enforce)],
    )
    app.state.services = services
    install_error_handlers(app)
    include_routers(app)
    # The browser UI (web/): pages, live events, static assets; HTML error pages for pages.
    app.include_router(web_ui.router)
    # The OHIF Viewer at /viewer (web/viewer.py).
    app.include_router(viewer.router)
    app.add_middleware(AuditMiddleware)
    # Outermost of ours: sees the correlation ID the audit middleware assigned, logs no queries.
    app.add_middleware(AccessLogMiddleware)
    origins = services.settings.cors_origins
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "DELETE", "PATCH", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["Content-Type", "Content-Location", "Location", "Retry-After"],
        )
    return app

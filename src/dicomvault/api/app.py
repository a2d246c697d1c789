"""The ASGI application: routers, error translation, CORS, lifecycle of the services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from dicomvault import __version__
from dicomvault.api import dicomweb, health
from dicomvault.api.errors import install_error_handlers
from dicomvault.bootstrap import Services


def create_app(services: Services) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await services.close()

    app = FastAPI(
        title="dicomvault",
        version=__version__,
        description="Medical imaging archive: DICOMweb (PS3.18) under /dicom-web.",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(health.router, tags=["health"])
    app.include_router(dicomweb.router, prefix="/dicom-web", tags=["dicomweb"])
    origins = services.settings.cors_origins
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["Content-Type", "Content-Location", "Location"],
        )
    return app

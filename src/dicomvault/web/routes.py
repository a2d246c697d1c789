"""The web UI as one router: pages, the live-event stream, static assets.

dicomvault/asgi.py, the composition root, includes it behind the same enforcement point, permission
table (api/permissions.py) and audit middleware as every other route.
"""

from __future__ import annotations

from fastapi import APIRouter

from dicomvault.web import live_routes, pages, static_routes

router = APIRouter()
router.include_router(static_routes.router)
router.include_router(live_routes.router)
router.include_router(pages.router)

"""The UI's own CSS and JavaScript, shipped in the package (no build step, no CDN).

Only the files found under web/static at start-up can be named, so no path can reach
anything else. URLs carry the content hash (``?v=``), so browsers may keep them for a year.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dicomvault.errors import NotFound
from dicomvault.retrieve.conditional import etag_matches
from dicomvault.web.rendering import assets

router = APIRouter(include_in_schema=False)


@router.get("/static/{name}")
async def static_asset(name: str, request: Request) -> Response:
    asset = assets().get(name)
    if asset is None:
        raise NotFound("no such asset")
    headers = {
        "ETag": asset.etag,
        "Cache-Control": "public, max-age=31536000, immutable"
        if request.query_params.get("v")
        else "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if etag_matches(request.headers.get("if-none-match"), asset.etag):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)

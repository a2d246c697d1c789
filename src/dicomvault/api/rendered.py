"""DICOMweb rendered resources and thumbnails (PS3.18 10.4.1.1.4, 10.4.1.1.5): thin routes.

Mounted under both DICOMweb prefixes, like ``api/dicomweb.py``: each route's own path carries the
prefix so the permission table and the audit see the full template. Parse → plan and admit
(index only) → 304 when the client's ETag matches → render (cache, worker thread) → respond:
a single image whole, a multipart response or an animated GIF streamed as it is rendered.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from dicomvault.api.auditing import note_owners
from dicomvault.api.deps import ScopeDep, ServicesDep
from dicomvault.api.dicomweb_routes import (
    SOPUID,
    F,
    FrameList,
    RouteTable,
    SeriesUID,
    StudyUID,
    check_uids,
)
from dicomvault.api.media import parse_accept
from dicomvault.bootstrap import Services
from dicomvault.dicom.render import JPEG, RENDERED_MEDIA_TYPES
from dicomvault.errors import DicomVaultError, NotAcceptable
from dicomvault.index.scope import Scope
from dicomvault.retrieve.conditional import etag_matches
from dicomvault.retrieve.render_options import parse_render_options
from dicomvault.retrieve.rendered import Renderer, RenderPlan
from dicomvault.retrieve.service import parse_frame_list

log = logging.getLogger("dicomvault.api.rendered")
_ROUTES = RouteTable()
build_router = _ROUTES.router


def _route(path: str, **options: Any) -> Callable[[F], F]:
    return _ROUTES.route("GET", path, **options)


def choose_media_type(request: Request) -> str:
    """The rendered media type (PS3.18 8.7.4): the ``accept`` query parameter (8.3.3.1) before
    the Accept header; image/jpeg for ``*/*``, ``image/*`` or none; 406 when nothing fits.
    ``multipart/related; type=...`` names the type of the parts."""
    query = request.query_params.getlist("accept")
    header = ",".join(query) if query else request.headers.get("accept")
    for media in parse_accept(header):
        wanted = media.type
        if wanted == "multipart/related":
            wanted = media.params.get("type", "*/*").strip().lower()
        if wanted in ("*/*", "image/*", "multipart/*"):
            return JPEG
        if wanted in RENDERED_MEDIA_TYPES:
            return wanted
    raise NotAcceptable(f"rendered resources are served as {', '.join(RENDERED_MEDIA_TYPES)}")


async def _answer(
    request: Request,
    services: Services,
    scope: Scope,
    *,
    thumbnail: bool,
    study: str,
    series: str | None = None,
    sop: str | None = None,
    frames: str | None = None,
) -> Response:
    check_uids(study, series, sop)
    numbers = parse_frame_list(frames) if frames is not None else None
    options = parse_render_options(
        request.query_params.multi_items(),
        choose_media_type(request),
        thumbnail=thumbnail,
        max_output_samples=services.settings.max_render_pixels,
    )
    renderer = services.renderer
    plan_for = renderer.plan_thumbnail if thumbnail else renderer.plan_rendered
    plan = await plan_for(scope, options, study, series, sop, numbers)
    note_owners(request, (part.instance.owner for part in plan.parts))
    headers = {"ETag": f'"{plan.etag}"', "Cache-Control": "private", "Vary": "Accept"}
    if etag_matches(request.headers.get("if-none-match"), plan.etag):
        return Response(status_code=304, headers=headers)
    if not plan.multipart and len(plan.parts[0].frames) == 1:
        image = await renderer.image(plan.parts[0])
        return Response(image, media_type=plan.media_type, headers=headers)
    if plan.multipart:
        boundary = f"dicomvault-{plan.etag[:40]}"
        body = _multipart(plan, renderer, boundary)
        content_type = f'multipart/related; type="{plan.media_type}"; boundary={boundary}'
    else:  # an animated GIF
        body = renderer.encoded(plan.parts[0])
        content_type = plan.media_type
    return await _streamed(body, {**headers, "Content-Type": content_type})


class RenderingInterrupted(RuntimeError):
    """A part failed after the response had begun: the status is sent, so the only honest end
    is an incomplete body. Raised out of the response, it makes the server drop the connection
    without the last chunk (RFC 9112 7.1), which clients report as a truncated response."""


async def _streamed(body: AsyncGenerator[bytes, None], headers: dict[str, str]) -> Response:
    """A streamed response whose first chunk is produced before it begins: the first image is
    rendered here, so that its errors still answer with their own status (406, 422)."""
    first = await anext(body)
    return StreamingResponse(_resumed(first, body), headers=headers)


async def _resumed(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    async with aclosing(rest):
        yield first
        del first
        try:
            async for chunk in rest:
                yield chunk
                del chunk  # one encoded image at a time: not kept while the next renders
        except DicomVaultError as exc:
            log.warning("rendered response interrupted after it started: %s", exc)
            raise RenderingInterrupted(str(exc)) from exc


async def _multipart(
    plan: RenderPlan, renderer: Renderer, boundary: str
) -> AsyncGenerator[bytes, None]:
    """multipart/related (RFC 2387, PS3.18 8.6.1.2), each part rendered when it is sent, with a
    boundary derived from the ETag, so that the same ETag always names the same bytes (a strong
    validator, RFC 9110 8.8.1). A part's header goes out once its first bytes are rendered."""
    head = f"--{boundary}\r\nContent-Type: {plan.media_type}\r\n\r\n".encode()
    for part in plan.parts:
        started = False
        async with aclosing(renderer.encoded(part)) as chunks:
            async for chunk in chunks:
                if not started:
                    yield head
                    started = True
                yield chunk
                del chunk
        yield b"\r\n"  # also makes the server let go of the image before the next part renders
    yield f"--{boundary}--\r\n".encode()


_RENDERED = (
    "Rendered (PS3.18 10.4.1.1.4): image/jpeg (default), image/png, image/gif. Query: "
    "window=center,width[,linear|linear-exact|sigmoid], viewport=vw,vh[,sx,sy,sw,sh], "
    "quality=1-100; annotation is ignored. 304 on a matching If-None-Match, 406 for other media "
    "types or non-images, 422 for images over the configured size or that cannot be decoded."
)
_THUMBNAIL = (
    "Thumbnail (PS3.18 10.4.1.1.5): one image of a representative frame, at most 128 x 128 "
    "unless viewport=vw,vh is given; image/jpeg (default), image/png, image/gif."
)

_STUDY = "/studies/{study}"
_SERIES = _STUDY + "/series/{series}"
_INSTANCE = _SERIES + "/instances/{sop}"
_FRAMES = _INSTANCE + "/frames/{frames}"


@_route(_STUDY + "/rendered", summary="Rendered study", description=_RENDERED)
async def rendered_study(
    study: StudyUID, request: Request, services: ServicesDep, scope: ScopeDep
) -> Response:
    return await _answer(request, services, scope, thumbnail=False, study=study)


@_route(_SERIES + "/rendered", summary="Rendered series", description=_RENDERED)
async def rendered_series(
    study: StudyUID, series: SeriesUID, request: Request, services: ServicesDep, scope: ScopeDep
) -> Response:
    return await _answer(request, services, scope, thumbnail=False, study=study, series=series)


@_route(_INSTANCE + "/rendered", summary="Rendered instance", description=_RENDERED)
async def rendered_instance(
    study: StudyUID,
    series: SeriesUID,
    sop: SOPUID,
    request: Request,
    services: ServicesDep,
    scope: ScopeDep,
) -> Response:
    return await _answer(
        request, services, scope, thumbnail=False, study=study, series=series, sop=sop
    )


@_route(_FRAMES + "/rendered", summary="Rendered frames", description=_RENDERED)
async def rendered_frames(
    study: StudyUID,
    series: SeriesUID,
    sop: SOPUID,
    frames: FrameList,
    request: Request,
    services: ServicesDep,
    scope: ScopeDep,
) -> Response:
    return await _answer(
        request,
        services,
        scope,
        thumbnail=False,
        study=study,
        series=series,
        sop=sop,
        frames=frames,
    )


@_route(_STUDY + "/thumbnail", summary="Study thumbnail", description=_THUMBNAIL)
async def study_thumbnail(
    study: StudyUID, request: Request, services: ServicesDep, scope: ScopeDep
) -> Response:
    return await _answer(request, services, scope, thumbnail=True, study=study)


@_route(_SERIES + "/thumbnail", summary="Series thumbnail", description=_THUMBNAIL)
async def series_thumbnail(
    study: StudyUID, series: SeriesUID, request: Request, services: ServicesDep, scope: ScopeDep
) -> Response:
    return await _answer(request, services, scope, thumbnail=True, study=study, series=series)


@_route(_INSTANCE + "/thumbnail", summary="Instance thumbnail", description=_THUMBNAIL)
async def instance_thumbnail(
    study: StudyUID,
    series: SeriesUID,
    sop: SOPUID,
    request: Request,
    services: ServicesDep,
    scope: ScopeDep,
) -> Response:
    return await _answer(
        request, services, scope, thumbnail=True, study=study, series=series, sop=sop
    )


@_route(_FRAMES + "/thumbnail", summary="Frame thumbnail", description=_THUMBNAIL)
async def frame_thumbnail(
    study: StudyUID,
    series: SeriesUID,
    sop: SOPUID,
    frames: FrameList,
    request: Request,
    services: ServicesDep,
    scope: ScopeDep,
) -> Response:
    return await _answer(
        request,
        services,
        scope,
        thumbnail=True,
        study=study,
        series=series,
        sop=sop,
        frames=frames,
    )

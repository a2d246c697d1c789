"""Rendered-resource query parameters (PS3.18 8.3.5.1) into :class:`RenderOptions`.

Checked before anything is read: a bad ``window``, ``viewport`` or ``quality`` is a 400 that
names it, and a viewport larger than the server renders is refused here, not after decoding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from dicomvault.dicom.render import (
    MAX_OUTPUT_SIDE,
    VOI_FUNCTIONS,
    RenderOptions,
    Viewport,
    Window,
)
from dicomvault.errors import BadRequest

__all__ = ["THUMBNAIL_VIEWPORT", "parse_render_options"]

THUMBNAIL_VIEWPORT = Viewport(128, 128)


def parse_render_options(
    params: Iterable[tuple[str, str]],
    media_type: str,
    *,
    thumbnail: bool,
    max_output_samples: int,
) -> RenderOptions:
    """``window``, ``viewport`` and ``quality`` into :class:`RenderOptions`; 400 for bad values.

    ``annotation``, ``charset``, ``iccprofile`` and unknown parameters are ignored (PS3.18 8.3:
    an origin server ignores parameters it does not support). A thumbnail takes ``viewport``
    only and is never enlarged past the image unless a viewport is given.
    """
    seen: dict[str, str] = {}
    for name, value in params:
        key = name.strip().lower()
        if key in ("window", "viewport", "quality"):
            if key in seen:
                raise BadRequest(f"{key} may be given only once")
            seen[key] = value
    viewport = _viewport(seen["viewport"], max_output_samples) if "viewport" in seen else None
    if thumbnail:
        return RenderOptions(
            media_type=media_type,
            viewport=viewport or THUMBNAIL_VIEWPORT,
            upscale=viewport is not None,
        )
    window = _window(seen["window"]) if "window" in seen else None
    quality = _quality(seen["quality"]) if "quality" in seen else 90
    return RenderOptions(media_type=media_type, window=window, viewport=viewport, quality=quality)


def _values(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")]


def _float(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{name} must be a number") from None
    if not math.isfinite(value):
        raise BadRequest(f"{name} must be a finite number")
    return value


def _integer(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


def _window(text: str) -> Window:
    """``center,width[,function]`` with function ``linear`` (default), ``linear-exact`` or
    ``sigmoid`` (PS3.18 8.3.5.1.4); the PS3.3 spellings (``LINEAR_EXACT``) are accepted too."""
    parts = _values(text)
    if len(parts) not in (2, 3):
        raise BadRequest("window must be center,width,function")
    center = _float(parts[0], "window center")
    width = _float(parts[1], "window width")
    function = (parts[2] if len(parts) == 3 and parts[2] else "linear").upper().replace("-", "_")
    if function not in VOI_FUNCTIONS:
        raise BadRequest("window function must be linear, linear-exact or sigmoid")
    if function == "LINEAR" and width < 1:
        raise BadRequest("a linear window must be at least 1 wide (PS3.3 C.11.2.1.2.1)")
    if width <= 0:
        raise BadRequest("the window width must be positive")
    return Window(center, width, function)


def _viewport(text: str, max_output_samples: int) -> Viewport:
    """``vw,vh`` or ``vw,vh,sx,sy,sw,sh`` (PS3.18 8.3.5.1.3); region values may be empty."""
    parts = _values(text)
    if len(parts) not in (2, 6):
        raise BadRequest("viewport must be vw,vh or vw,vh,sx,sy,sw,sh")
    width, height = (_integer(p, "viewport size") for p in parts[:2])
    if not (1 <= width <= MAX_OUTPUT_SIDE and 1 <= height <= MAX_OUTPUT_SIDE):
        raise BadRequest(f"viewport width and height must be 1 to {MAX_OUTPUT_SIDE}")
    if width * height > max_output_samples:
        raise BadRequest("the viewport is larger than this server renders")
    region = [None if p == "" else _integer(p, "viewport region") for p in parts[2:]]
    sx, sy, sw, sh = region or [None] * 4
    if (sx is not None and sx < 0) or (sy is not None and sy < 0):
        raise BadRequest("viewport sx and sy must not be negative")
    if sw == 0 or sh == 0:
        raise BadRequest("viewport sw and sh must not be zero")
    return Viewport(width, height, sx, sy, sw, sh)


def _quality(text: str) -> int:
    value = _integer(text, "quality")
    if not 1 <= value <= 100:
        raise BadRequest("quality must be 1 to 100")
    return value

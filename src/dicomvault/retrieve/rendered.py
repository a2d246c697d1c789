"""Rendered resources and thumbnails (PS3.18 10.4.1.1.4 / 10.4.1.1.5; parameters 8.3.5).

A request is first *planned* from the index alone (scoped lookup, no blob read): which instance
and frames make each image of the response, and its strong ETag, a hash of the blobs' SHA-256,
the frames and every normalized parameter. A client's ``If-None-Match`` is answered from the
plan; otherwise each image comes from the cache or is rendered: the header is read by one range
read, checked against the caps, then only the frames needed are read (a byte range for native
data, the frame's fragments for encapsulated data) and decoded, windowed and encoded by
``dicom/render.py`` in a worker thread.

What is rendered where (conformance, see docs/dicomweb.md):

- study / series ``rendered``: multipart/related, one image per image instance, in series and
  instance order; instances without Pixel Data are skipped.
- instance ``rendered``: one image; a multi-frame instance gives its first frame, or all its
  frames as an animated GIF when image/gif is asked for.
- frames ``rendered``: one image per listed frame (multipart/related when there are several).
- ``thumbnail`` at every level: one image, at most 128 x 128 unless ``viewport`` says otherwise,
  of a representative frame: the middle image instance of the first series with images, the
  middle frame of a multi-frame instance, the first listed frame.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import PIL
import pydicom
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError

from dicomvault.dicom.problems import DicomProblem
from dicomvault.dicom.render import (
    GIF,
    MAX_OUTPUT_SIDE,
    RENDERED_MEDIA_TYPES,
    VOI_FUNCTIONS,
    EncodedFrame,
    InvalidRenderRequest,
    RenderOptions,
    UnrenderableImage,
    UnsupportedImage,
    Viewport,
    Window,
    check_bounds,
    image_geometry,
    render_image,
)
from dicomvault.errors import BadRequest, NotAcceptable, NotFound
from dicomvault.index.repository import StoredInstance
from dicomvault.index.scope import Scope
from dicomvault.retrieve.cache import RenderCache
from dicomvault.retrieve.service import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    Retriever,
    UnprocessableInstance,
    pixel_info,
)

# Part of every ETag: a new renderer or decoder may render the same pixels differently.
RENDER_VERSION = f"1;pydicom {pydicom.__version__};pillow {PIL.__version__}"
THUMBNAIL_VIEWPORT = Viewport(128, 128)
_MAX_HEADER_BYTES = 64 * 1024 * 1024
_EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"


@dataclass(frozen=True)
class RenderLimits:
    """From the settings: samples per decoded frame, frames per response, renders at once."""

    max_frame_samples: int
    max_frames: int
    concurrency: int


# --------------------------------------------------------------------------------------------
# Query parameters (PS3.18 8.3.5.1)


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


# --------------------------------------------------------------------------------------------
# Plans: which images a response holds, and its ETag, from the index alone


@dataclass(frozen=True)
class Part:
    """One image of a response: frames (1-based; several only for an animated GIF)."""

    instance: StoredInstance
    frames: tuple[int, ...]
    options: RenderOptions

    @property
    def key(self) -> str:
        """Strong ETag and cache key (RFC 9110 8.8.3): same key, same bytes."""
        text = "|".join(
            (
                RENDER_VERSION,
                self.instance.sha256,
                self.instance.transfer_syntax_uid,
                ",".join(map(str, self.frames)),
                self.options.cache_key(),
            )
        )
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RenderPlan:
    parts: tuple[Part, ...]
    multipart: bool
    media_type: str

    @property
    def etag(self) -> str:
        if not self.multipart:
            return self.parts[0].key
        text = "multipart|" + ",".join(part.key for part in self.parts)
        return hashlib.sha256(text.encode()).hexdigest()


def _frame_count(instance: StoredInstance) -> int:
    return max(instance.number_of_frames or 1, 1)


def _may_be_image(instance: StoredInstance) -> bool:
    """Pixel Data was found at ingest; Deflated files record no location, so maybe."""
    return (
        instance.pixel_json is not None
        or instance.transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    )


def _check_frames(instance: StoredInstance, numbers: Sequence[int]) -> None:
    count = _frame_count(instance)
    for n in numbers:
        if n < 1 or n > count:
            raise NotFound(f"frame {n} does not exist (the instance has {count})")


def representative(instances: Sequence[StoredInstance]) -> StoredInstance:
    """The middle image instance of the first series that has images (index order: series
    number, then instance number)."""
    by_series: dict[str, list[StoredInstance]] = {}
    for instance in instances:
        if _may_be_image(instance):
            by_series.setdefault(instance.series_uid, []).append(instance)
    if not by_series:
        raise NotAcceptable("nothing here can be rendered as an image")
    images = next(iter(by_series.values()))
    return images[(len(images) - 1) // 2]


# --------------------------------------------------------------------------------------------
# The service


@dataclass(frozen=True)
class _Source:
    """What one image needs: the header (the bytes before Pixel Data, parsed in the worker
    thread, or a parsed data set) and the encoded frames."""

    header: Dataset | bytes
    frames: list[EncodedFrame]
    native_value_length: int | None


class Renderer:
    """Plans and renders PS3.18 rendered and thumbnail resources, through the cache."""

    def __init__(self, retriever: Retriever, cache: RenderCache, limits: RenderLimits) -> None:
        self._retriever = retriever
        self._cache = cache
        self._limits = limits
        self._limiter = anyio.CapacityLimiter(limits.concurrency)

    @property
    def limits(self) -> RenderLimits:
        return self._limits

    async def warm_up(self) -> None:
        """Render a tiny image once in each media type, in a worker thread: pydicom's decoder
        plugins and Pillow's encoders are imported on first use, which would otherwise add
        tens of milliseconds to the first request."""
        await anyio.to_thread.run_sync(_warm_up)

    async def plan_rendered(
        self,
        scope: Scope,
        options: RenderOptions,
        study: str,
        series: str | None = None,
        sop: str | None = None,
        frames: Sequence[int] | None = None,
    ) -> RenderPlan:
        instances = await self._retriever.instances(scope, study, series, sop)
        if sop is None:
            images = [i for i in instances if _may_be_image(i)]
            if not images:
                raise NotAcceptable("nothing here can be rendered as an image")
            parts = tuple(self._instance_part(i, options) for i in images)
            return self._checked(RenderPlan(parts, True, options.media_type))
        instance = instances[0]
        if frames is None:
            part = self._instance_part(instance, options)
            return self._checked(RenderPlan((part,), False, options.media_type))
        _check_frames(instance, frames)
        parts = tuple(Part(instance, (n,), options) for n in frames)
        return self._checked(RenderPlan(parts, len(parts) > 1, options.media_type))

    async def plan_thumbnail(
        self,
        scope: Scope,
        options: RenderOptions,
        study: str,
        series: str | None = None,
        sop: str | None = None,
        frames: Sequence[int] | None = None,
    ) -> RenderPlan:
        instances = await self._retriever.instances(scope, study, series, sop)
        instance = representative(instances) if sop is None else instances[0]
        if frames:
            _check_frames(instance, frames[:1])
            number = frames[0]
        else:
            number = (_frame_count(instance) + 1) // 2
        return RenderPlan((Part(instance, (number,), options),), False, options.media_type)

    def _instance_part(self, instance: StoredInstance, options: RenderOptions) -> Part:
        count = _frame_count(instance)
        if options.media_type == GIF and count > 1:
            return Part(instance, tuple(range(1, count + 1)), options)
        return Part(instance, (1,), options)

    def _checked(self, plan: RenderPlan) -> RenderPlan:
        total = sum(len(part.frames) for part in plan.parts)
        if total > self._limits.max_frames:
            raise UnprocessableInstance(
                f"the response would render {total} frames, more than this server renders "
                f"in one response ({self._limits.max_frames}); ask for fewer"
            )
        return plan

    async def render(self, plan: RenderPlan) -> list[bytes]:
        """The encoded images of ``plan``, in order (cached or rendered now)."""
        return [await self._part(part) for part in plan.parts]

    async def _part(self, part: Part) -> bytes:
        key = part.key
        cached = await self._cache.get(key)
        if cached is not None:
            return cached
        try:
            source = await self._source(part.instance, part.frames)
            image = await anyio.to_thread.run_sync(
                self._render_sync, source, part, limiter=self._limiter
            )
        except UnsupportedImage as exc:
            raise NotAcceptable(exc.message) from exc
        except InvalidRenderRequest as exc:
            raise BadRequest(exc.message) from exc
        except DicomProblem as exc:
            raise UnprocessableInstance(exc.message) from exc
        await self._cache.put(key, image)
        return image

    def _render_sync(self, source: _Source, part: Part) -> bytes:
        """In the worker thread: parse the header, refuse what is too large, render."""
        header = source.header
        if not isinstance(header, Dataset):
            header = _parse_header(header)
        check_bounds(
            image_geometry(header),
            native_value_length=source.native_value_length,
            max_frame_samples=self._limits.max_frame_samples,
        )
        return render_image(
            header,
            part.instance.transfer_syntax_uid,
            source.frames,
            part.options,
            max_frame_samples=self._limits.max_frame_samples,
        )

    # -- reading only what is needed ----------------------------------------------------------
    async def _source(self, instance: StoredInstance, numbers: Sequence[int]) -> _Source:
        """The header and frames ``numbers``: byte ranges of the blob wherever ingest located
        them (the header and a single-frame's pixels in one read, since they are adjacent),
        the whole file only when frame boundaries are unknown or the file is deflated."""
        pixel = pixel_info(instance)
        if pixel is None:
            if instance.transfer_syntax_uid != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
                raise UnsupportedImage("the instance has no Pixel Data to render")
            header, data = await self._retriever.deflated_frames(instance, numbers)
            frames = [EncodedFrame(d, n) for n, d in zip(numbers, data, strict=True)]
            return _Source(header, frames, None)
        offset = int(pixel["value_offset"])
        if offset > _MAX_HEADER_BYTES:
            raise UnprocessableInstance("the header before Pixel Data is too large to render")
        encapsulated = bool(pixel["encapsulated"])
        native_length = None if encapsulated else pixel.get("value_length")
        if encapsulated and not pixel.get("fragments_by_frame"):
            head = await self._retriever.read_range(instance, 0, offset)
            frames = await self._unmapped_frames(instance, pixel, numbers)
        elif not encapsulated and not pixel.get("frame_length"):
            head = await self._retriever.read_range(instance, 0, offset)
            frames = await self._bit_packed_frames(instance, pixel, numbers)
        else:
            self._check_frame_bytes(pixel, numbers)
            if not encapsulated and list(numbers) == [1]:
                end = offset + int(pixel["frame_length"])
                start_of_file = await self._retriever.read_range(instance, 0, end)
                head = start_of_file[:offset]
                frames = [EncodedFrame(start_of_file[offset:], 1)]
            else:
                head = await self._retriever.read_range(instance, 0, offset)
                stored = await self._retriever.frames(instance, numbers)
                frames = [EncodedFrame(f.data, f.number) for f in stored]
        return _Source(head, frames, native_length)

    def _check_frame_bytes(self, pixel: dict[str, Any], numbers: Sequence[int]) -> None:
        """Before reading: no stored frame may be larger than the largest decodable frame
        (four bytes a sample) would be; the header's own check follows in the worker."""
        limit = 4 * self._limits.max_frame_samples + 65536
        if pixel["encapsulated"]:
            by_frame = pixel["fragments_by_frame"]
            sizes = [sum(int(length) for _, length in by_frame[n - 1]) for n in numbers]
        else:
            sizes = [int(pixel["frame_length"])]
        if max(sizes) > limit:
            raise UnprocessableInstance("a stored frame is larger than this server renders")

    async def _bit_packed_frames(
        self, instance: StoredInstance, pixel: dict[str, Any], numbers: Sequence[int]
    ) -> list[EncodedFrame]:
        """Native frames that do not start on a byte boundary (Bits Allocated 1): the whole
        value, if it is small; :func:`check_bounds` then compares it with the header."""
        length = int(pixel.get("value_length") or 0)
        if length > self._limits.max_frame_samples:
            raise UnprocessableInstance("bit-packed Pixel Data too large to render")
        start = int(pixel["value_offset"])
        value = await self._retriever.read_range(instance, start, start + length)
        count = _frame_count(instance)
        return [EncodedFrame(value, n, n - 1, count) for n in numbers]

    async def _unmapped_frames(
        self, instance: StoredInstance, pixel: dict[str, Any], numbers: Sequence[int]
    ) -> list[EncodedFrame]:
        """Encapsulated frames whose fragments could not be mapped at ingest (no offset table,
        more fragments than frames): pydicom finds the frame boundaries (JPEG EOI markers)."""
        count = _frame_count(instance)
        async with self._retriever.local_copy(instance) as path:
            return await anyio.to_thread.run_sync(
                _frames_from_file, path, int(pixel["value_offset"]), count, list(numbers)
            )


def _warm_up() -> None:
    header = Dataset()
    header.Rows, header.Columns, header.SamplesPerPixel = 2, 2, 1
    header.BitsAllocated, header.BitsStored, header.PixelRepresentation = 16, 12, 1
    header.PhotometricInterpretation = "MONOCHROME2"
    header.RescaleSlope, header.RescaleIntercept = 1, -1024
    frame = EncodedFrame(bytes(8))
    for media_type in RENDERED_MEDIA_TYPES:
        options = RenderOptions(media_type=media_type, viewport=Viewport(1, 1))
        render_image(header, _EXPLICIT_LITTLE, [frame], options, max_frame_samples=16)


def _parse_header(head: bytes) -> Dataset:
    try:
        return dcmread(io.BytesIO(head), stop_before_pixels=True)
    except (InvalidDicomError, ValueError, KeyError, EOFError, OSError):
        raise UnrenderableImage("the header cannot be read for rendering") from None


def _frames_from_file(
    path: Path, value_offset: int, count: int, numbers: list[int]
) -> list[EncodedFrame]:
    wanted = set(numbers)
    found: dict[int, bytes] = {}
    with path.open("rb") as file:
        file.seek(value_offset)
        try:
            for number, data in enumerate(generate_frames(file, number_of_frames=count), 1):
                if number in wanted:
                    found[number] = data
                if len(found) == len(wanted) or number >= count:
                    break
        except (ValueError, EOFError, OSError) as exc:
            raise UnprocessableInstance("the encapsulated frames cannot be read") from exc
    if len(found) != len(wanted):
        raise UnprocessableInstance("the encapsulated Pixel Data holds fewer frames than declared")
    return [EncodedFrame(found[n], n) for n in numbers]

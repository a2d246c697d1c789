"""Rendered resources and thumbnails (PS3.18 10.4.1.1.4 / 10.4.1.1.5; the parameters of 8.3.5
are parsed in ``retrieve/render_options.py``).

A request is first *planned* from the index alone (scoped lookup, no blob read): which instance
and frames make each image of the response, and its strong ETag, a hash of the blobs' SHA-256,
the frames and every normalized parameter. The plan is *admitted* from the index too: at most
``max_frames`` frames and ``max_response_samples`` rendered samples in all, every part's Image
Pixel attributes acceptable. A client's ``If-None-Match`` is answered from the plan; otherwise
each image comes from the cache or is rendered when it is sent: the header is read by one range
read, checked against the caps, then only the frames needed are read (a byte range for native
data, the frame's fragments for encapsulated data) and decoded, windowed and encoded by
``dicom/render.py`` in a worker thread. Multipart responses are streamed part by part and
animated GIFs frame by frame, so a response of any size holds one decoded frame and one
encoded image (or GIF frame) at a time; the cache holds single images, one entry per part.

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
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple, Unpack

import anyio
import anyio.to_thread
import orjson
import PIL
import pydicom
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError

from dicomvault.dicom.gif import AnimatedGif
from dicomvault.dicom.image_checks import (
    ImageGeometry,
    InvalidRenderRequest,
    UnrenderableImage,
    UnsupportedImage,
    check_bounds,
    image_geometry,
)
from dicomvault.dicom.problems import DicomProblem
from dicomvault.dicom.render import (
    GIF,
    RENDERED_MEDIA_TYPES,
    EncodedFrame,
    RenderOptions,
    Viewport,
    frame_duration_ms,
    output_size,
    render_frame,
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

# Part of every ETag: a new renderer or decoder may render the same pixels differently
# (2: animated GIFs written frame by frame).
RENDER_VERSION = f"2;pydicom {pydicom.__version__};pillow {PIL.__version__}"
_MAX_HEADER_BYTES = 64 * 1024 * 1024
_EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
# Stored frames of an animation read from the blob at a time (several small frames per read).
_READ_BATCH_BYTES = 8 * 1024 * 1024
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


@dataclass(frozen=True)
class RenderLimits:
    """From the settings: samples per decoded frame, frames per response, rendered samples per
    response (frames x output pixels x samples per pixel), renders at once."""

    max_frame_samples: int
    max_frames: int
    max_response_samples: int
    concurrency: int


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
# Admission: what a response may cost, from the index alone

# Image Pixel Module attributes (PS3.3 C.7.6.3) in the stored DICOM JSON (PS3.18 F.2).
_GEOMETRY_TAGS = (
    ("00280010", "Rows"),
    ("00280011", "Columns"),
    ("00280002", "SamplesPerPixel"),
    ("00280004", "PhotometricInterpretation"),
    ("00280100", "BitsAllocated"),
    ("00280101", "BitsStored"),
    ("00280103", "PixelRepresentation"),
    ("00280008", "NumberOfFrames"),
)
_SOP_INSTANCE_UID = "00080018"


def _indexed_header(document: dict[str, Any]) -> Dataset:
    """The Image Pixel attributes of an instance's stored DICOM JSON as a header for
    :func:`image_geometry`: ingest read them from the same immutable blob that rendering reads
    (the blob's hash is in every ETag), so they are the header's own values."""
    header = Dataset()
    for tag, keyword in _GEOMETRY_TAGS:
        element = document.get(tag)
        values = element.get("Value") if isinstance(element, dict) else None
        if isinstance(values, list) and values and isinstance(values[0], int | float | str):
            try:
                setattr(header, keyword, values[0])
            except (TypeError, ValueError, OverflowError):
                raise UnrenderableImage(f"{keyword} is not a usable value") from None
    return header


def _most_samples(options: RenderOptions, max_frame_samples: int) -> int:
    """An upper bound of the samples one rendered frame can have, without its header: the
    viewport's pixels, else a whole frame, three samples each (a palette renders as RGB)."""
    if options.viewport is not None:
        return options.viewport.width * options.viewport.height * 3
    return 3 * max_frame_samples


@contextmanager
def _request_errors() -> Iterator[None]:
    """``dicom/render.py``'s problems as the errors the HTTP edge answers: 406 for what is not
    an image, 400 for parameters that cannot apply to it, 422 for everything else."""
    try:
        yield
    except UnsupportedImage as exc:
        raise NotAcceptable(exc.message) from exc
    except InvalidRenderRequest as exc:
        raise BadRequest(exc.message) from exc
    except DicomProblem as exc:
        raise UnprocessableInstance(exc.message) from exc


# --------------------------------------------------------------------------------------------
# The service


@dataclass(frozen=True)
class _Source:
    """What one image needs: the header (the bytes before Pixel Data, parsed in the worker
    thread, or a parsed data set) and the encoded frames."""

    header: Dataset | bytes
    frames: list[EncodedFrame]
    native_value_length: int | None


@dataclass(frozen=True)
class _FrameStream:
    """What an animation needs: the header, and its encoded frames read one batch at a time."""

    header: Dataset | bytes
    frames: AsyncGenerator[EncodedFrame, None]
    native_value_length: int | None


class Renderer:
    """Plans and renders PS3.18 rendered and thumbnail resources, through the cache.

    Memory per response is bounded whatever its size: a multipart response is rendered part by
    part as it is sent (:meth:`encoded` for each part), an animated GIF frame by frame, so at
    most one decoded frame and one encoded image (or GIF frame) are held at a time.
    """

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
            plan = RenderPlan(parts, True, options.media_type)
        elif frames is None:
            part = self._instance_part(instances[0], options)
            plan = RenderPlan((part,), False, options.media_type)
        else:
            _check_frames(instances[0], frames)
            parts = tuple(Part(instances[0], (n,), options) for n in frames)
            plan = RenderPlan(parts, len(parts) > 1, options.media_type)
        await self._admit(plan, scope, study, series, sop)
        return plan

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
        plan = RenderPlan((Part(instance, (number,), options),), False, options.media_type)
        await self._admit(plan, scope, study, instance.series_uid, instance.sop_uid)
        return plan

    def _instance_part(self, instance: StoredInstance, options: RenderOptions) -> Part:
        count = _frame_count(instance)
        if options.media_type == GIF and count > 1:
            return Part(instance, tuple(range(1, count + 1)), options)
        return Part(instance, (1,), options)

    async def _admit(
        self,
        plan: RenderPlan,
        scope: Scope,
        study: str,
        series: str | None,
        sop: str | None,
    ) -> None:
        """Refuse, with 422 and before any blob is read, a response that would render more
        than ``max_frames`` frames or more than ``max_response_samples`` samples in all
        (frames x output width x height x samples per pixel).

        A single frame is sized from its parameters alone when that bound fits; anything more
        is sized exactly from the index's Image Pixel attributes, which also refuses, before
        the first byte of a streamed response, every part whose header the worker would refuse
        (not an image: 406; a frame over ``max_frame_samples``, pixels shorter than the header
        says: 422).
        """
        frames = sum(len(part.frames) for part in plan.parts)
        if frames > self._limits.max_frames:
            raise UnprocessableInstance(
                f"the response would render {frames} frames, more than this server renders "
                f"in one response ({self._limits.max_frames}); ask for fewer"
            )
        budget = self._limits.max_response_samples
        bound = _most_samples(plan.parts[0].options, self._limits.max_frame_samples)
        if frames == 1 and bound <= budget:
            return
        documents = await self._pixel_documents(scope, study, series, sop)
        total = 0
        for part in plan.parts:
            document = documents.get(part.instance.sop_uid)
            if document is None:  # deleted since the instances were looked up
                raise NotFound("no such study, series or instance")
            total += len(part.frames) * self._frame_samples(part, document)
        if total > budget:
            raise UnprocessableInstance(
                f"the response would hold {total} rendered samples (frames x pixels x samples "
                f"per pixel), more than this server renders in one response ({budget}); ask "
                "for fewer frames or instances, or a smaller viewport"
            )

    async def _pixel_documents(
        self, scope: Scope, study: str, series: str | None, sop: str | None
    ) -> dict[str, dict[str, Any]]:
        """The stored DICOM JSON of the instances, by SOP Instance UID (no blob read)."""
        found = await self._retriever.metadata(scope, "", study, series, sop)
        documents: list[dict[str, Any]] = orjson.loads(found.body)
        by_uid: dict[str, dict[str, Any]] = {}
        for document in documents:
            values = document.get(_SOP_INSTANCE_UID, {}).get("Value") or [None]
            if isinstance(values[0], str):
                by_uid[values[0]] = document
        return by_uid

    def _frame_samples(self, part: Part, document: dict[str, Any]) -> int:
        """Samples of one rendered frame of ``part``, after the header checks of the worker."""
        with _request_errors():
            geometry = image_geometry(_indexed_header(document))
            pixel = pixel_info(part.instance)
            native_length = (
                None if pixel is None or pixel["encapsulated"] else pixel.get("value_length")
            )
            check_bounds(
                geometry,
                native_value_length=native_length,
                max_frame_samples=self._limits.max_frame_samples,
            )
            width, height = output_size(
                geometry.columns, geometry.rows, part.options.viewport, upscale=part.options.upscale
            )
        return width * height * geometry.display_samples

    # -- rendering ------------------------------------------------------------------------------
    async def image(self, part: Part) -> bytes:
        """One image of a single frame, whole: from the cache, or rendered now and cached."""
        key = part.key
        cached = await self._cache.get(key)
        if cached is not None:
            return cached
        with _request_errors():
            read = self._blocking_single_frame(part)
        if read is not None:
            # One worker-thread hop for read and render: the common cold case (local disk,
            # one native frame), where a hop costs about as much as the read itself.
            image = await self._in_worker(self._read_and_render_sync, read, part)
        else:
            with _request_errors():
                source = await self._source(part.instance, part.frames)
            image = await self._in_worker(self._render_sync, source, part)
        await self._cache.put(key, image)
        return image

    def _blocking_single_frame(
        self, part: Part
    ) -> tuple[Callable[[], bytes], int, int | None] | None:
        """(blocking read of header and pixels, header length, Pixel Data length) when the
        part is the one native frame of an instance whose pixels ingest located and the blob
        store reads cheaply in a worker thread; otherwise None (``_source`` handles it)."""
        pixel = pixel_info(part.instance)
        if list(part.frames) != [1] or pixel is None or pixel["encapsulated"]:
            return None
        frame_length = pixel.get("frame_length")
        if not frame_length:
            return None
        self._check_frame_bytes(pixel, part.frames)
        offset = _header_length(pixel)
        end = offset + int(frame_length)
        read = self._retriever.blocking_range_reader(part.instance, 0, end)
        return None if read is None else (read, offset, pixel.get("value_length"))

    def _read_and_render_sync(
        self, read: tuple[Callable[[], bytes], int, int | None], part: Part
    ) -> bytes:
        """In the worker thread: read the start of the file (header and the frame, adjacent),
        then render as ``_render_sync`` does."""
        blocking_read, offset, native_length = read
        start_of_file = blocking_read()
        source = _Source(
            start_of_file[:offset], [EncodedFrame(start_of_file[offset:], 1)], native_length
        )
        del start_of_file
        return self._render_sync(source, part)

    async def encoded(self, part: Part) -> AsyncGenerator[bytes, None]:
        """The bytes of one image in chunks: a single frame in one chunk; an animated GIF frame
        by frame as each is rendered (the first chunk is the header with the first frame)."""
        if len(part.frames) == 1:
            yield await self.image(part)
            return
        async with aclosing(self._animation(part)) as chunks:
            async for chunk in chunks:
                yield chunk
                del chunk

    async def _animation(self, part: Part) -> AsyncGenerator[bytes, None]:
        """An animated GIF from the cache, or rendered frame by frame; it is collected for the
        cache only while it stays within the cache's largest value, and only a complete one
        is cached (a client that goes away leaves nothing)."""
        key = part.key
        cached = await self._cache.get(key)
        if cached is not None:
            yield cached
            return
        kept: list[bytes] | None = []
        size = 0
        async with aclosing(self._animation_frames(part)) as chunks:
            async for chunk in chunks:
                size += len(chunk)
                if kept is not None:
                    kept = kept if size <= self._cache.max_value_bytes else None
                if kept is not None:
                    kept.append(chunk)
                yield chunk
                del chunk
        if kept is not None:
            await self._cache.put(key, b"".join(kept))

    async def _animation_frames(self, part: Part) -> AsyncGenerator[bytes, None]:
        with _request_errors():
            stream = await self._frame_stream(part.instance, part.frames)
        async with aclosing(stream.frames) as frames:
            header, geometry = await self._in_worker(
                _checked_header,
                stream.header,
                stream.native_value_length,
                self._limits.max_frame_samples,
            )
            animation = AnimatedGif(frame_duration_ms(header))
            async for frame in frames:
                yield await self._in_worker(_gif_frame, animation, header, geometry, part, frame)
                del frame
        yield animation.end()

    async def _in_worker(self, function: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        """``function`` in a worker thread, at most ``concurrency`` at once in this process."""
        with _request_errors():
            return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)

    def _render_sync(self, source: _Source, part: Part) -> bytes:
        """In the worker thread: parse the header, refuse what is too large, render."""
        header, _geometry = _checked_header(
            source.header, source.native_value_length, self._limits.max_frame_samples
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
            header, data = await self._deflated(instance, numbers)
            frames = [EncodedFrame(d, n) for n, d in zip(numbers, data, strict=True)]
            return _Source(header, frames, None)
        offset = _header_length(pixel)
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

    async def _frame_stream(self, instance: StoredInstance, numbers: Sequence[int]) -> _FrameStream:
        """Like :meth:`_source`, for the frames of an animation (``numbers`` ascending): the
        header now, the frames one at a time as they are rendered, read by byte ranges in
        batches of at most ``_READ_BATCH_BYTES``, or walked in order through a local copy when
        their boundaries are unknown. A deflated file is inflated once, so its frames are held
        together (bounded by ``max_inflated_bytes``); bit-packed frames share one small value."""
        pixel = pixel_info(instance)
        if pixel is None:
            header, data = await self._deflated(instance, numbers)
            frames = [EncodedFrame(d, n) for n, d in zip(numbers, data, strict=True)]
            del data
            return _FrameStream(header, _one_by_one(frames), None)
        offset = _header_length(pixel)
        encapsulated = bool(pixel["encapsulated"])
        native_length = None if encapsulated else pixel.get("value_length")
        head = await self._retriever.read_range(instance, 0, offset)
        if encapsulated and not pixel.get("fragments_by_frame"):
            stream = self._unmapped_frame_stream(instance, pixel, numbers)
        elif not encapsulated and not pixel.get("frame_length"):
            stream = _one_by_one(await self._bit_packed_frames(instance, pixel, numbers))
        else:
            self._check_frame_bytes(pixel, numbers)
            stream = self._stored_frame_stream(instance, pixel, numbers)
        return _FrameStream(head, stream, native_length)

    async def _deflated(
        self, instance: StoredInstance, numbers: Sequence[int]
    ) -> tuple[Dataset, list[bytes]]:
        if instance.transfer_syntax_uid != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            raise UnsupportedImage("the instance has no Pixel Data to render")
        return await self._retriever.deflated_frames(instance, numbers)

    async def _stored_frame_stream(
        self, instance: StoredInstance, pixel: dict[str, Any], numbers: Sequence[int]
    ) -> AsyncGenerator[EncodedFrame, None]:
        for batch in _batches(numbers, _frame_sizes(pixel, numbers), _READ_BATCH_BYTES):
            stored = await self._retriever.frames(instance, batch)
            for frame in stored:
                yield EncodedFrame(frame.data, frame.number)
            del stored

    async def _unmapped_frame_stream(
        self, instance: StoredInstance, pixel: dict[str, Any], numbers: Sequence[int]
    ) -> AsyncGenerator[EncodedFrame, None]:
        count = _frame_count(instance)
        async with self._retriever.local_copy(instance) as path:
            reader = await anyio.to_thread.run_sync(
                _EncapsulatedFrames, path, int(pixel["value_offset"]), count
            )
            try:
                for number in numbers:
                    data = await anyio.to_thread.run_sync(reader.read, number)
                    yield EncodedFrame(data, number)
                    del data
            finally:
                reader.close()

    def _check_frame_bytes(self, pixel: dict[str, Any], numbers: Sequence[int]) -> None:
        """Before reading: no stored frame may be larger than the largest decodable frame
        (four bytes a sample) would be; the header's own check follows in the worker."""
        limit = 4 * self._limits.max_frame_samples + 65536
        if max(_frame_sizes(pixel, numbers)) > limit:
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


def _header_length(pixel: dict[str, Any]) -> int:
    offset = int(pixel["value_offset"])
    if offset > _MAX_HEADER_BYTES:
        raise UnprocessableInstance("the header before Pixel Data is too large to render")
    return offset


def _frame_sizes(pixel: dict[str, Any], numbers: Sequence[int]) -> list[int]:
    """Stored bytes of each frame ``numbers``, from the locations ingest recorded."""
    if pixel["encapsulated"]:
        by_frame = pixel["fragments_by_frame"]
        return [sum(int(length) for _, length in by_frame[n - 1]) for n in numbers]
    return [int(pixel["frame_length"])] * len(numbers)


def _batches(numbers: Sequence[int], sizes: Sequence[int], limit: int) -> list[list[int]]:
    """``numbers`` cut into runs of at most ``limit`` bytes (at least one frame each)."""
    batches: list[list[int]] = []
    used = limit
    for number, size in zip(numbers, sizes, strict=True):
        if used + size > limit:
            batches.append([])
            used = 0
        batches[-1].append(number)
        used += size
    return batches


async def _one_by_one(frames: list[EncodedFrame]) -> AsyncGenerator[EncodedFrame, None]:
    """Frames already read, handed out and let go one at a time."""
    frames.reverse()
    while frames:
        yield frames.pop()


def _checked_header(
    header: Dataset | bytes, native_value_length: int | None, max_frame_samples: int
) -> tuple[Dataset, ImageGeometry]:
    """In the worker thread: the parsed header and its geometry, refused if too large."""
    if not isinstance(header, Dataset):
        header = _parse_header(header)
    geometry = image_geometry(header)
    check_bounds(
        geometry, native_value_length=native_value_length, max_frame_samples=max_frame_samples
    )
    return header, geometry


def _gif_frame(
    animation: AnimatedGif,
    header: Dataset,
    geometry: ImageGeometry,
    part: Part,
    frame: EncodedFrame,
) -> bytes:
    """In the worker thread: one frame rendered and appended to the animation; the decoded
    arrays and the image are gone when this returns, only the GIF frame's bytes remain."""
    image = render_frame(header, part.instance.transfer_syntax_uid, frame, part.options, geometry)
    return animation.add(image)


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


class _EncapsulatedFrames:
    """The frames of an encapsulated value in a local file, found by pydicom (frame boundaries
    unknown at ingest) and read in ascending order, one at a time, in worker threads."""

    def __init__(self, path: Path, value_offset: int, count: int) -> None:
        self._file = path.open("rb")
        self._file.seek(value_offset)
        self._frames = generate_frames(self._file, number_of_frames=count)
        self._next = 1

    def read(self, number: int) -> bytes:
        if number < self._next:
            raise ValueError("encapsulated frames are read in ascending order")
        try:
            for data in self._frames:
                self._next += 1
                if self._next - 1 == number:
                    return data
        except (ValueError, EOFError, OSError) as exc:
            raise UnprocessableInstance("the encapsulated frames cannot be read") from exc
        raise UnprocessableInstance("the encapsulated Pixel Data holds fewer frames than declared")

    def close(self) -> None:
        self._file.close()


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

"""The measurements, each a coroutine taking one running server and the shared data set.

Every request is checked (status, and content where cheap): a failed request is counted as an
error, never as a fast one.
"""

from __future__ import annotations

import io
import itertools
import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio
import httpx
from PIL import Image

from bench import dicomweb
from bench.data import BenchData
from bench.measure import RssSampler, Stopwatch, Throughput, latency_stats
from bench.results import Measurement, Target
from bench.servers import RunningServer
from dicomvault.testing.synthetic import GeneratedInstance

T = TypeVar("T")
R = TypeVar("R")

INGEST_CONFIGS: tuple[tuple[int, int], ...] = ((1, 1), (4, 1), (8, 1), (1, 20), (4, 20), (8, 20))
INGEST_TARGET = Target(ratio=1.5)
QIDO_TARGET = Target(ratio=0.5)
WADO_TARGET = Target(ratio=3.0)
METADATA_TARGET = Target(ratio=0.5)
LARGE_UPLOAD_TARGET = Target(ratio=1.0)
LARGE_RSS_TARGET = Target(limit=200.0)
LARGE_FRAME_TARGET = Target(limit=200.0)
# Issue 4: rendered 512x512 CT frame, p95 under 300 ms cold and 100 ms warm, at most 2x Orthanc.
RENDERED_COLD_TARGET = Target(ratio=2.0, limit=300.0)
RENDERED_WARM_TARGET = Target(ratio=2.0, limit=100.0)
TIMEOUT = httpx.Timeout(900.0, connect=10.0)


@dataclass(frozen=True)
class Rounds:
    """How many repetitions each latency measurement gets (bounded loops only)."""

    qido: int
    metadata: int
    frames: int
    wado_sample: int
    rendered: int = 20
    warmup: int = 2


# A p95 is only as good as its sample: of 20 requests it is the 19th slowest, one hiccup of a
# shared machine. Full scale takes 100 per QIDO shape and 150 per /metadata level (each of the
# 75 studies twice), for both servers alike.
ROUNDS = {
    "full": Rounds(qido=100, metadata=150, frames=50, wado_sample=400, rendered=60),
    "small": Rounds(qido=15, metadata=10, frames=20, wado_sample=100, rendered=30),
}


def client_for(server: RunningServer, connections: int) -> httpx.AsyncClient:
    """HTTP/1.1 keep-alive client with exactly ``connections`` pooled connections."""
    return httpx.AsyncClient(
        timeout=TIMEOUT,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers=server.headers,
    )


async def run_pool(
    jobs: Sequence[T], concurrency: int, work: Callable[[T], Awaitable[R]]
) -> list[R]:
    """Run ``work`` over ``jobs`` with ``concurrency`` workers; results in job order."""
    results: dict[int, R] = {}
    pending = iter(enumerate(jobs))

    async def worker() -> None:
        for index, job in pending:
            results[index] = await work(job)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return [results[i] for i in range(len(jobs))]


def _slices(items: Sequence[T], parts: int) -> list[Sequence[T]]:
    size = -(-len(items) // parts)
    return [items[i * size : (i + 1) * size] for i in range(parts)]


def _batches(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------- STOW-RS


async def _stow_batch(
    client: httpx.AsyncClient, root: str, batch: Sequence[GeneratedInstance]
) -> dicomweb.StowOutcome:
    paths = [i.path for i in batch if i.path is not None]
    try:
        return await dicomweb.stow(client, root, paths)
    except httpx.HTTPError as exc:
        return dicomweb.StowOutcome(False, 0, repr(exc))


async def measure_ingest(server: RunningServer, data: BenchData) -> list[Measurement]:
    """STOW-RS ingest (PS3.18 10.5) at each (concurrency, instances per request).

    The data set is cut into one disjoint slice per configuration, so each instance is stored
    once (no duplicate path measured) and at the end the server holds the whole data set.
    """
    out: list[Measurement] = []
    for (concurrency, per_request), part in zip(
        INGEST_CONFIGS, _slices(data.instances, len(INGEST_CONFIGS)), strict=True
    ):
        batches = _batches(part, per_request)
        async with client_for(server, concurrency) as client:
            with Stopwatch() as sw:
                outcomes = await run_pool(
                    batches, concurrency, lambda b: _stow_batch(client, server.dicomweb_root, b)
                )
        failed = [o for o in outcomes if not o.ok]
        stored = sum(len(b) for b, o in zip(batches, outcomes, strict=True) if o.ok)
        nbytes = sum(i.size for b, o in zip(batches, outcomes, strict=True) if o.ok for i in b)
        tp = Throughput(stored, nbytes, sw.seconds, len(failed))
        note = f"{len(part)} instances in {len(batches)} requests"
        if failed:
            note += f"; first failure: HTTP {failed[0].status} {failed[0].detail[:200]}"
        label = f"concurrency {concurrency}, {per_request} per request"
        key = f"stow.c{concurrency}.b{per_request}"
        out.append(
            Measurement(
                f"{key}.ips",
                "STOW-RS ingest",
                label,
                "instances/s",
                "higher",
                tp.items_per_s,
                tp.errors,
                note,
                INGEST_TARGET,
            )
        )
        out.append(
            Measurement(
                f"{key}.mbps",
                "STOW-RS ingest",
                label,
                "MB/s",
                "higher",
                tp.mb_per_s,
                tp.errors,
                note,
            )
        )
        server.check_alive()
    return out


# --------------------------------------------------------------------------- QIDO-RS


def qido_queries(data: BenchData) -> list[tuple[str, str, list[str]]]:
    """(key, label, URL paths to rotate through) for each QIDO-RS query (PS3.18 10.6)."""
    instances = data.instances
    patients = sorted({i.patient_id for i in instances})
    name_prefixes = sorted({i.patient_name[:-1] + "*" for i in instances})
    years = sorted({i.study_date[:4] for i in instances})
    accessions = sorted({i.accession_number for i in instances})
    studies = list(dict.fromkeys(i.study_uid for i in instances))
    series = list(dict.fromkeys((i.study_uid, i.series_uid) for i in instances))
    page = 20
    offsets = list(range(0, max(len(studies) - page, 0) + 1, page))[:4] or [0]
    return [
        ("patientid", "studies?PatientID=X", [f"studies?PatientID={p}" for p in patients]),
        (
            "patientname",
            "studies?PatientName=prefix*",
            [f"studies?PatientName={n}" for n in name_prefixes],
        ),
        (
            "studydate",
            "studies?StudyDate=one-year range",
            [f"studies?StudyDate={y}0101-{y}1231" for y in years],
        ),
        ("modality", "studies?ModalitiesInStudy=CT", ["studies?ModalitiesInStudy=CT"]),
        (
            "accession",
            "studies?AccessionNumber=X",
            [f"studies?AccessionNumber={a}" for a in accessions],
        ),
        (
            "series",
            "series of a study, includefield",
            [
                f"studies/{s}/series?includefield=SeriesDescription&includefield=BodyPartExamined"
                for s in studies
            ],
        ),
        (
            "instances",
            "instances of a series",
            [f"studies/{st}/series/{se}/instances" for st, se in series],
        ),
        (
            "paging",
            f"studies?limit={page}&offset=…",
            [f"studies?limit={page}&offset={o}" for o in offsets],
        ),
    ]


async def _timed_json(client: httpx.AsyncClient, url: str) -> tuple[float, bool, int]:
    """(seconds, ok, number of results). The time is the server's answer to its last byte;
    the client's JSON parsing (and the garbage collections it sets off in this process, which
    holds the whole data set's manifest) is checked after the stopwatch, not counted in it."""
    try:
        with Stopwatch() as sw:
            response = await dicomweb.get_json_response(client, url)
    except httpx.HTTPError:
        return 0.0, False, 0
    status, body = response.status_code, dicomweb.json_body(response)
    ok = status in (200, 204) and isinstance(body, list)
    return sw.seconds, ok, len(body) if isinstance(body, list) else 0


async def _latency_series(
    client: httpx.AsyncClient, urls: Sequence[str], rounds: int, warmup: int
) -> tuple[list[float], int, list[int]]:
    """Sequential requests rotating through ``urls``: latencies, error count, result counts."""
    for url in itertools.islice(itertools.cycle(urls), warmup):
        await _timed_json(client, url)
    latencies: list[float] = []
    counts: list[int] = []
    errors = 0
    for url in itertools.islice(itertools.cycle(urls), rounds):
        seconds, ok, count = await _timed_json(client, url)
        if ok:
            latencies.append(seconds)
            counts.append(count)
        else:
            errors += 1
    return latencies, errors, counts


async def measure_qido(server: RunningServer, data: BenchData, rounds: Rounds) -> list[Measurement]:
    out: list[Measurement] = []
    root = server.dicomweb_root
    async with client_for(server, 1) as client:
        for key, label, paths in qido_queries(data):
            urls = [f"{root}/{p}" for p in paths]
            latencies, errors, counts = await _latency_series(
                client, urls, rounds.qido, rounds.warmup
            )
            stats = latency_stats(latencies, errors)
            note = f"median {statistics.median(counts) if counts else 0:g} results"
            if counts and max(counts) == 0:
                errors += 1
                note += " (no query matched anything: wrong results)"
            out.append(
                Measurement(
                    f"qido.{key}.p50",
                    "QIDO-RS",
                    f"{label} p50",
                    "ms",
                    "lower",
                    stats.p50_ms,
                    errors,
                    note,
                )
            )
            out.append(
                Measurement(
                    f"qido.{key}.p95",
                    "QIDO-RS",
                    f"{label} p95",
                    "ms",
                    "lower",
                    stats.p95_ms,
                    errors,
                    note,
                    QIDO_TARGET,
                )
            )
    server.check_alive()
    return out


# --------------------------------------------------------------------------- WADO-RS


def _sample(instances: Sequence[GeneratedInstance], count: int) -> list[GeneratedInstance]:
    """``count`` instances spread evenly over the data set (same choice for every server)."""
    step = max(1, len(instances) // max(count, 1))
    return list(instances[::step][:count])


async def _fetch_checked(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], minimum: int
) -> dicomweb.Fetched | str:
    """The response when it is a 200 multipart/related of at least ``minimum`` bytes, otherwise
    why not (a short reason for the report)."""
    try:
        got = await dicomweb.fetch(client, url, headers)
    except httpx.HTTPError as exc:
        return repr(exc)[:200]
    if got.status != 200 or not got.content_type.startswith("multipart/related"):
        return f"HTTP {got.status} {got.content_type} {got.head[:120]!r}"
    if got.decoded_bytes < minimum:
        return f"{got.decoded_bytes} bytes, expected at least {minimum}"
    return got


async def _retrieve_all(
    server: RunningServer,
    sample: Sequence[GeneratedInstance],
    concurrency: int,
    headers: dict[str, str],
) -> tuple[list[dicomweb.Fetched | str], float]:
    """Fetch every instance of ``sample`` with ``concurrency`` connections: (results, seconds)."""
    root = server.dicomweb_root
    async with client_for(server, concurrency) as client:

        async def one(inst: GeneratedInstance) -> dicomweb.Fetched | str:
            url = dicomweb.instance_url(root, inst.study_uid, inst.series_uid, inst.sop_uid)
            return await _fetch_checked(client, url, headers, inst.size)

        with Stopwatch() as sw:
            got = await run_pool(sample, concurrency, one)
    return got, sw.seconds


async def measure_wado(server: RunningServer, data: BenchData, rounds: Rounds) -> list[Measurement]:
    """WADO-RS instance retrieval (PS3.18 10.4.1.1.1) as MB/s of DICOM delivered."""
    sample = _sample(data.instances, rounds.wado_sample)
    variants = [
        ("c1", 1, "identity", WADO_TARGET),
        ("c4", 4, "identity", WADO_TARGET),
        ("c1.gzip", 1, "gzip", None),
    ]
    out: list[Measurement] = []
    for key, concurrency, encoding, target in variants:
        headers = {"Accept": dicomweb.ACCEPT_DICOM, "Accept-Encoding": encoding}
        got, seconds = await _retrieve_all(server, sample, concurrency, headers)
        fetched = [g for g in got if isinstance(g, dicomweb.Fetched)]
        failures = [g for g in got if isinstance(g, str)]
        errors = len(failures)
        decoded = sum(g.decoded_bytes for g in fetched)
        wire = sum(g.wire_bytes for g in fetched)
        tp = Throughput(len(fetched), decoded, seconds, errors)
        note = f"{len(sample)} instances, {decoded / 1e6:.0f} MB"
        if encoding == "gzip":
            note += f", {wire / 1e6:.0f} MB on the wire ({wire / decoded:.0%})" if decoded else ""
        if failures:
            note += f"; first failure: {failures[0]}"
        label = f"concurrency {concurrency}, Accept-Encoding: {encoding}"
        out.append(
            Measurement(
                f"wado.{key}.mbps",
                "WADO-RS instances",
                label,
                "MB/s",
                "higher",
                tp.mb_per_s,
                errors,
                note,
                target,
            )
        )
    server.check_alive()
    return out


async def measure_metadata(
    server: RunningServer, data: BenchData, rounds: Rounds
) -> list[Measurement]:
    """Study and series /metadata (PS3.18 10.4.1.1.2), rotating over studies / series."""
    root = server.dicomweb_root
    studies = list(dict.fromkeys(i.study_uid for i in data.instances))
    series = list(dict.fromkeys((i.study_uid, i.series_uid) for i in data.instances))
    levels = [
        ("study", [f"{root}/studies/{s}/metadata" for s in studies]),
        ("series", [f"{root}/studies/{st}/series/{se}/metadata" for st, se in series]),
    ]
    out: list[Measurement] = []
    async with client_for(server, 1) as client:
        for level, urls in levels:
            latencies, errors, counts = await _latency_series(
                client, urls, rounds.metadata, rounds.warmup
            )
            if counts and min(counts) == 0:
                errors += 1
            stats = latency_stats(latencies, errors)
            note = f"median {statistics.median(counts) if counts else 0:g} instances"
            group = "WADO-RS metadata"
            out.append(
                Measurement(
                    f"metadata.{level}.p50",
                    group,
                    f"{level} /metadata p50",
                    "ms",
                    "lower",
                    stats.p50_ms,
                    errors,
                    note,
                )
            )
            out.append(
                Measurement(
                    f"metadata.{level}.p95",
                    group,
                    f"{level} /metadata p95",
                    "ms",
                    "lower",
                    stats.p95_ms,
                    errors,
                    note,
                    METADATA_TARGET,
                )
            )
    server.check_alive()
    return out


@dataclass(frozen=True)
class FrameTimes:
    latencies: list[float]
    errors: int
    first_failure: str


async def _frame_latencies(
    client: httpx.AsyncClient, urls: Sequence[str], minimum: int, rounds: int, warmup: int
) -> FrameTimes:
    """Sequential frame requests (PS3.18 10.4.1.1.3) of at least ``minimum`` bytes each."""
    headers = {"Accept": dicomweb.ACCEPT_FRAMES, "Accept-Encoding": "identity"}
    for url in urls[:warmup]:
        await _fetch_checked(client, url, headers, minimum)
    latencies: list[float] = []
    failures: list[str] = []
    for url in itertools.islice(itertools.cycle(urls), rounds):
        with Stopwatch() as sw:
            got = await _fetch_checked(client, url, headers, minimum)
        if isinstance(got, str):
            failures.append(got)
        else:
            latencies.append(sw.seconds)
    return FrameTimes(latencies, len(failures), failures[0] if failures else "")


async def measure_frames(
    server: RunningServer, data: BenchData, rounds: Rounds
) -> list[Measurement]:
    """frames/1 of single-frame instances (PS3.18 10.4.1.1.3)."""
    sample = _sample(data.instances, rounds.frames)
    root = server.dicomweb_root
    urls = [
        dicomweb.instance_url(root, i.study_uid, i.series_uid, i.sop_uid) + "/frames/1"
        for i in sample
    ]
    minimum = 256 * 256 * 2  # the smallest frame in the data set
    async with client_for(server, 1) as client:
        times = await _frame_latencies(client, urls, minimum, rounds.frames, rounds.warmup)
    stats = latency_stats(times.latencies, times.errors)
    note = f"first failure: {times.first_failure}" if times.errors else ""
    server.check_alive()
    group = "WADO-RS frames"
    return [
        Measurement(
            "frames.p50", group, "frames/1 p50", "ms", "lower", stats.p50_ms, times.errors, note
        ),
        Measurement(
            "frames.p95", group, "frames/1 p95", "ms", "lower", stats.p95_ms, times.errors, note
        ),
    ]


# --------------------------------------------------------------------------- rendered


async def _rendered_latency(client: httpx.AsyncClient, url: str) -> float | str:
    """Seconds for one rendered frame, or why it failed: a 200 image/jpeg that is a JPEG of
    512 x 512 pixels (Pillow reads the header only)."""
    try:
        with Stopwatch() as sw:
            response = await client.get(url, headers={"Accept": "image/jpeg"})
    except httpx.HTTPError as exc:
        return repr(exc)[:200]
    media = response.headers.get("content-type", "")
    if response.status_code != 200 or not media.startswith("image/jpeg"):
        return f"HTTP {response.status_code} {media} {response.content[:120]!r}"
    try:
        size = Image.open(io.BytesIO(response.content)).size
    except OSError as exc:
        return f"not a JPEG: {exc}"
    if size != (512, 512):
        return f"rendered as {size[0]}x{size[1]}, expected 512x512"
    return sw.seconds


async def _rendered_round(client: httpx.AsyncClient, urls: Sequence[str]) -> FrameTimes:
    latencies: list[float] = []
    failures: list[str] = []
    for url in urls:
        got = await _rendered_latency(client, url)
        if isinstance(got, str):
            failures.append(got)
        else:
            latencies.append(got)
    return FrameTimes(latencies, len(failures), failures[0] if failures else "")


async def measure_rendered(
    server: RunningServer, data: BenchData, rounds: Rounds
) -> list[Measurement]:
    """``frames/1/rendered`` as image/jpeg of 512x512 CT frames (PS3.18 10.4.1.1.4).

    Cold: the first request for each of ``rounds.rendered`` instances (nothing cached yet);
    warm: the same requests again, in the same order (a server with a rendered-image cache
    answers from it). Sequential, one connection.
    """
    ct = [i for i in data.instances if i.modality == "CT"]
    sample = _sample(ct, rounds.rendered)
    root = server.dicomweb_root
    urls = [
        dicomweb.instance_url(root, i.study_uid, i.series_uid, i.sop_uid) + "/frames/1/rendered"
        for i in sample
    ]
    async with client_for(server, 1) as client:
        cold = await _rendered_round(client, urls)
        warm = await _rendered_round(client, urls)
    server.check_alive()
    group = "Rendered 512x512 CT frame (image/jpeg)"
    out: list[Measurement] = []
    for key, label, times, target in (
        ("cold", "cold (first request per instance)", cold, RENDERED_COLD_TARGET),
        ("warm", "warm (repeat)", warm, RENDERED_WARM_TARGET),
    ):
        stats = latency_stats(times.latencies, times.errors)
        note = f"{len(urls)} instances"
        if times.errors:
            note += f"; first failure: {times.first_failure}"
        out.append(
            Measurement(
                f"rendered.{key}.p50",
                group,
                f"{label} p50",
                "ms",
                "lower",
                stats.p50_ms,
                times.errors,
                note,
            )
        )
        out.append(
            Measurement(
                f"rendered.{key}.p95",
                group,
                f"{label} p95",
                "ms",
                "lower",
                stats.p95_ms,
                times.errors,
                note,
                target,
            )
        )
    return out


# --------------------------------------------------------------------------- 500 MB


async def _upload_large(
    server: RunningServer, path: Path, chunked: bool
) -> tuple[dicomweb.StowOutcome, float, int, int]:
    """(outcome, seconds, baseline RSS, peak RSS) of one STOW-RS of one large file."""
    async with client_for(server, 1) as client:
        with RssSampler(server.pid) as rss, Stopwatch() as sw:
            try:
                outcome = await dicomweb.stow(client, server.dicomweb_root, [path], chunked=chunked)
            except httpx.HTTPError as exc:
                outcome = dicomweb.StowOutcome(False, 0, repr(exc))
    return outcome, sw.seconds, rss.baseline, rss.peak


async def measure_large(server: RunningServer, data: BenchData) -> list[Measurement]:
    """One large multi-frame instance uploaded with Content-Length, another chunked; peak RSS of
    the server during each; then latency of one frame from the middle of the first."""
    out: list[Measurement] = []
    group = "Large multi-frame instance"
    first, second = data.large
    size_mb = (first.size or 0) / 1e6
    for inst, chunked in ((first, False), (second, True)):
        assert inst.path is not None
        outcome, seconds, baseline, peak = await _upload_large(server, inst.path, chunked)
        how = "chunked" if chunked else "Content-Length"
        errors = 0 if outcome.ok else 1
        note = f"{size_mb:.0f} MB in {seconds:.1f} s; RSS before {baseline / 1e6:.0f} MB"
        if not outcome.ok:
            note += f"; FAILED: HTTP {outcome.status} {outcome.detail[:200]}"
        key = f"large.{'chunked' if chunked else 'length'}"
        out.append(
            Measurement(
                f"{key}.mbps",
                group,
                f"upload {size_mb:.0f} MB, {how}",
                "MB/s",
                "higher",
                inst.size / 1e6 / seconds if outcome.ok else None,
                errors,
                note,
                LARGE_UPLOAD_TARGET,
            )
        )
        out.append(
            Measurement(
                f"{key}.rss",
                group,
                f"peak server RSS, upload {how}",
                "MB",
                "lower",
                peak / 1e6,
                errors,
                note,
                LARGE_RSS_TARGET,
            )
        )
        server.check_alive()
    middle = max(1, first.number_of_frames // 2)
    url = (
        dicomweb.instance_url(
            server.dicomweb_root, first.study_uid, first.series_uid, first.sop_uid
        )
        + f"/frames/{middle}"
    )
    async with client_for(server, 1) as client:
        cold = await _frame_latencies(client, [url], 512 * 512 * 2, 1, 0)
        warm = await _frame_latencies(client, [url], 512 * 512 * 2, 5, 0)
    for key, label, times in (("first", "first request", cold), ("p50", "median of 5", warm)):
        value = latency_stats(times.latencies).p50_ms if times.latencies else None
        note = f"first failure: {times.first_failure}" if times.errors else ""
        out.append(
            Measurement(
                f"large.frame.{key}",
                group,
                f"frames/{middle}, {label}",
                "ms",
                "lower",
                value,
                times.errors,
                note,
                LARGE_FRAME_TARGET,
            )
        )
    server.check_alive()
    return out

"""The DICOMweb requests the bench makes (PS3.18), for any server: STOW-RS, QIDO-RS, WADO-RS.

Bodies are streamed from disk in chunks by async generators: httpx re-copies a ``bytes`` body
after every partial socket send, which is quadratic for a large body, and a 500 MB ``bytes``
object would also dominate the client's memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

BOUNDARY = "dicomvault-bench-7f3c9a1e"
STOW_CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
ACCEPT_JSON = "application/dicom+json"
READ_CHUNK = 1024 * 1024

# PS3.18 Table 10.5.3-1 / F.2: Referenced and Failed SOP Sequence in the STOW-RS response.
_REFERENCED_SOP_SEQUENCE = "00081199"
_FAILED_SOP_SEQUENCE = "00081198"

_PART_HEADER = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
_PART_END = b"\r\n"
_CLOSE = f"--{BOUNDARY}--\r\n".encode()


def multipart_length(paths: Sequence[Path]) -> int:
    """Exact length of the multipart/related body ``multipart_body`` yields (PS3.18 8.6.1.2)."""
    sizes = sum(p.stat().st_size for p in paths)
    return sizes + len(paths) * (len(_PART_HEADER) + len(_PART_END)) + len(_CLOSE)


async def multipart_body(paths: Sequence[Path]) -> AsyncIterator[bytes]:
    """One part per file, each read from disk in ``READ_CHUNK`` pieces."""
    for path in paths:
        yield _PART_HEADER
        async with await anyio.open_file(path, "rb") as f:
            while chunk := await f.read(READ_CHUNK):
                yield chunk
        yield _PART_END
    yield _CLOSE


@dataclass(frozen=True)
class StowOutcome:
    ok: bool
    status: int
    detail: str


def _check_stow_response(response: httpx.Response, expected: int) -> StowOutcome:
    """Success means 200, no Failed SOP Sequence, and every instance referenced (PS3.18 10.5.3)."""
    if response.status_code != 200:
        return StowOutcome(False, response.status_code, response.text[:300])
    try:
        body = response.json()
    except ValueError:
        return StowOutcome(False, response.status_code, "response is not JSON")
    item = body[0] if isinstance(body, list) and body else body
    if not isinstance(item, dict):
        return StowOutcome(False, response.status_code, "unexpected response body")
    failed = item.get(_FAILED_SOP_SEQUENCE, {}).get("Value", [])
    referenced = item.get(_REFERENCED_SOP_SEQUENCE, {}).get("Value", [])
    if failed or len(referenced) != expected:
        return StowOutcome(
            False, 200, f"{len(referenced)} referenced, {len(failed)} failed of {expected}"
        )
    return StowOutcome(True, 200, "")


async def stow(
    client: httpx.AsyncClient, root: str, paths: Sequence[Path], *, chunked: bool = False
) -> StowOutcome:
    """POST ``paths`` as one STOW-RS request; with ``chunked`` no Content-Length is sent."""
    headers = {"Content-Type": STOW_CONTENT_TYPE, "Accept": ACCEPT_JSON}
    if not chunked:
        headers["Content-Length"] = str(multipart_length(paths))
    response = await client.post(f"{root}/studies", content=multipart_body(paths), headers=headers)
    return _check_stow_response(response, len(paths))


@dataclass(frozen=True)
class Fetched:
    status: int
    content_type: str
    decoded_bytes: int
    wire_bytes: int
    head: bytes


async def fetch(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> Fetched:
    """GET ``url`` streaming the body; counts decoded and on-the-wire bytes, keeps the first KB."""
    decoded = 0
    head = b""
    async with client.stream("GET", url, headers=headers) as response:
        async for chunk in response.aiter_bytes():
            if len(head) < 1024:
                head += chunk[: 1024 - len(head)]
            decoded += len(chunk)
        return Fetched(
            status=response.status_code,
            content_type=response.headers.get("content-type", ""),
            decoded_bytes=decoded,
            wire_bytes=response.num_bytes_downloaded,
            head=head,
        )


async def get_json_response(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """The answer read to its last byte (what a latency measures), not yet parsed."""
    return await client.get(url, headers={"Accept": ACCEPT_JSON})


def json_body(response: httpx.Response) -> object:
    """The parsed DICOM JSON of an answer: ``[]`` for 204 or empty, ``None`` if not JSON."""
    if response.status_code == 204 or not response.content:
        return []
    try:
        return response.json()
    except ValueError:
        return None


def instance_url(root: str, study: str, series: str, sop: str) -> str:
    return f"{root}/studies/{study}/series/{series}/instances/{sop}"

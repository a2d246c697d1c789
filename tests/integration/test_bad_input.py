"""Bad input over real HTTP: a clear error, nothing stored, the server keeps serving (issue 2).

Every case is sent to a running ``dicomvault serve``; then ``assert_nothing_left`` checks the data
directory itself (blob files, spool files, the SQLite index read directly), QIDO-RS, ``/healthz``
and that a valid STOW-RS still succeeds. STOW responses are the Store Instances Response Module of
PS3.18 10.5.3 (FailedSOPSequence (0008,1198) / FailureReason (0008,1197), PS3.18 Table GG.4-1).
"""

from __future__ import annotations

import json
import re
import secrets
import select
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dicomvault.testing.synthetic import make_instance
from tests.integration import bad_inputs as bad
from tests.support.server import LiveServer, running_server

DICOM_JSON = "application/dicom+json"
CANNOT_UNDERSTAND = 0xC000
DATA_SET_MISMATCH = 0xA900  # required attributes missing (PS3.4 B.2.3)
OUT_OF_RESOURCES = 0xA700
STUDY_MISMATCH = 0xC409
TABLES = ("instances", "series", "studies", "pending_writes")
BOUNDARY = "dicomvault-test-boundary-7f3a"
SMALL_LIMITS = {
    "DICOMVAULT_MAX_INSTANCE_BYTES": "2000000",
    "DICOMVAULT_MAX_REQUEST_BYTES": "5000000",
}
MAX_INSTANCE_BYTES = 2_000_000
MAX_REQUEST_BYTES = 5_000_000


# The server authenticates every DICOMweb request (DESIGN.md, security model): these tests log
# in as the bootstrap admin, and lift the per-principal rate limit that a test burst would hit.
ADMIN_PASSWORD = "bad-input-tests-" + secrets.token_urlsafe(12)
SERVER_ENV = {
    "DICOMVAULT_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "DICOMVAULT_RATE_LIMIT_RATE": "100000",
    "DICOMVAULT_RATE_LIMIT_BURST": "100000",
}
_TOKENS: dict[str, str] = {}  # base URL -> access token


def log_in(server: LiveServer) -> None:
    """Password grant (RFC 6749 4.3) for the bootstrap admin; no-op on a server without auth."""
    response = httpx.post(
        f"{server.base_url}/api/v1/auth/token",
        data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
        timeout=30,
    )
    if response.status_code == 404:
        return
    assert response.status_code == 200, response.text
    _TOKENS[server.base_url] = response.json()["access_token"]


def auth(server: LiveServer) -> dict[str, str]:
    token = _TOKENS.get(server.base_url)
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    """A default server and one with small size limits, started side by side (start-up is slow)."""
    default_dir = tmp_path_factory.mktemp("bad-input") / "data"
    small_dir = tmp_path_factory.mktemp("small-limits") / "data"
    with ExitStack() as stack:
        with ThreadPoolExecutor(max_workers=2) as pool:
            default = pool.submit(stack.enter_context, running_server(default_dir, env=SERVER_ENV))
            small = pool.submit(
                stack.enter_context, running_server(small_dir, env=SERVER_ENV | SMALL_LIMITS)
            )
        live = default.result(), small.result()
        for one in live:
            log_in(one)
        yield live


@pytest.fixture(scope="module")
def server(servers: tuple[LiveServer, LiveServer]) -> LiveServer:
    """Overrides the package's ``server``: the default limits."""
    return servers[0]


@pytest.fixture(scope="module")
def small_server(servers: tuple[LiveServer, LiveServer]) -> LiveServer:
    """Small limits, so that the 413 paths are cheap to reach."""
    return servers[1]


# ------------------------------------------------------------------------------ state snapshots


@dataclass(frozen=True)
class Snapshot:
    """What a request could leave behind: blob files, index rows, what QIDO-RS finds."""

    blobs: frozenset[Path]
    rows: dict[str, int]
    qido_sops: frozenset[str]


def index_rows(server: LiveServer) -> dict[str, int]:
    """Row counts read straight from the SQLite file, not through the server."""
    path = server.data_dir / "index.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as con:
        return {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}


def qido_sop_uids(server: LiveServer) -> frozenset[str]:
    response = httpx.get(
        f"{server.dicomweb}/instances",
        params={"includefield": "00080018", "limit": "10000"},
        headers=auth(server),
        timeout=30,
    )
    if response.status_code == 204:
        return frozenset()
    assert response.status_code == 200, response.text
    return frozenset(item["00080018"]["Value"][0] for item in response.json())


def snapshot(server: LiveServer) -> Snapshot:
    return Snapshot(frozenset(server.blob_files()), index_rows(server), qido_sop_uids(server))


def wait_for_empty_spool(server: LiveServer, timeout: float = 5.0) -> list[Path]:
    """Spool files still present after ``timeout`` (a client disconnect is noticed late)."""
    deadline = time.monotonic() + timeout
    while (left := server.spool_files()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def assert_nothing_left(
    server: LiveServer, before: Snapshot, *, stored: Sequence[str] = ()
) -> None:
    """Only the instances in ``stored`` (SOP Instance UIDs) may have been added; else nothing.

    Then the server must still serve: ``/healthz`` 200 and a valid STOW-RS stored (200).
    """
    left = wait_for_empty_spool(server)
    assert left == [], f"spool files left behind: {left}"
    after = snapshot(server)
    assert before.blobs <= after.blobs, "a stored blob disappeared"
    new_blobs = after.blobs - before.blobs
    assert len(new_blobs) == len(set(stored)), sorted(map(str, new_blobs))
    for blob in new_blobs:
        assert any(sop in blob.parts for sop in stored), blob
    strays = [p for p in after.blobs if p.name.startswith(".") or p.suffix != ".dcm"]
    assert strays == [], "temporary files left in blobs/"
    assert after.qido_sops == before.qido_sops | set(stored)
    assert after.rows["instances"] == before.rows["instances"] + len(set(stored))
    assert after.rows["pending_writes"] == before.rows["pending_writes"] == 0
    for table in ("studies", "series"):
        assert before.rows[table] <= after.rows[table] <= before.rows[table] + len(stored)
    assert_still_serving(server)


def assert_still_serving(server: LiveServer) -> None:
    assert server.process.poll() is None, "the server died"
    assert httpx.get(f"{server.base_url}/healthz", timeout=10).status_code == 200
    response = stow(server, make_instance(), "application/dicom")
    assert response.status_code == 200, response.text


def assert_no_traversal(server: LiveServer) -> None:
    """No UID like ``../../x`` became a path: nothing named ``x`` or holding ``..`` anywhere."""
    for root in (server.data_dir, server.data_dir.parent):
        for path in root.rglob("*"):
            rel = path.relative_to(root)
            assert not any(part == "x" or ".." in part for part in rel.parts), path


# ------------------------------------------------------------------------------ HTTP helpers


def stow(
    server: LiveServer, body: bytes, content_type: str, *, study: str | None = None
) -> httpx.Response:
    url = f"{server.dicomweb}/studies" + (f"/{study}" if study else "")
    headers = {"Content-Type": content_type, **auth(server)}
    return httpx.post(url, content=body, headers=headers, timeout=60)


def stow_multipart(
    server: LiveServer, parts: list[bytes], *, study: str | None = None
) -> httpx.Response:
    body = bad.multipart_body(parts, BOUNDARY)
    return stow(server, body, bad.multipart_type(BOUNDARY), study=study)


def dicom_json(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith(DICOM_JSON), response.headers
    body = response.json()
    assert isinstance(body, dict)
    return body


def failure_reasons(response: httpx.Response) -> list[int]:
    """FailureReason (0008,1197) of each FailedSOPSequence (0008,1198) item."""
    items = dicom_json(response).get("00081198", {}).get("Value", [])
    return [int(item["00081197"]["Value"][0]) for item in items]


def failed_sops(response: httpx.Response) -> list[str | None]:
    items = dicom_json(response).get("00081198", {}).get("Value", [])
    return [(item["00081155"].get("Value") or [None])[0] for item in items]


def referenced_sops(response: httpx.Response) -> list[str]:
    """ReferencedSOPInstanceUID of each ReferencedSOPSequence (0008,1199) item."""
    items = dicom_json(response).get("00081199", {}).get("Value", [])
    return [item["00081155"]["Value"][0] for item in items]


def stored_by(response: httpx.Response) -> list[str]:
    """What the response says was stored; a plain error body (413, 415...) says nothing."""
    if not response.headers.get("content-type", "").startswith(DICOM_JSON):
        return []
    return referenced_sops(response)


def assert_refused(response: httpx.Response, status: int, reasons: list[int]) -> None:
    assert response.status_code == status, response.text
    assert failure_reasons(response) == reasons
    assert referenced_sops(response) == []


@dataclass(frozen=True)
class RawResponse:
    status: int
    content_type: str
    body: bytes
    sent: int  # body bytes the server accepted before it answered
    exhausted: bool  # whether every chunk was sent

    def as_httpx(self) -> httpx.Response:
        return httpx.Response(
            self.status, headers={"Content-Type": self.content_type}, content=self.body
        )


def raw_post(
    server: LiveServer,
    headers: dict[str, str],
    chunks: Iterable[bytes],
    *,
    chunked: bool,
    pause: float = 0.002,
) -> RawResponse:
    """POST /dicom-web/studies over a plain socket, stopping as soon as the server answers.

    httpx sends the whole body before it reads a response; here the body is sent chunk by chunk
    and the socket is polled for the answer between chunks, so an early 413 is observable.
    """
    assert chunked or "Content-Length" in headers, "a plain body needs its Content-Length"
    port = int(server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = "POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers | auth(server)).items())
        head += "Transfer-Encoding: chunked\r\n" if chunked else ""
        sock.sendall((head + "\r\n").encode("latin-1"))
        sent, exhausted = 0, True
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                exhausted = False
                break
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
            except OSError:  # the server answered and closed; read what it said
                exhausted = False
                break
            sent += len(chunk)
            time.sleep(pause)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        return _read_response(sock, sent, exhausted)


def _read_response(sock: socket.socket, sent: int, exhausted: bool) -> RawResponse:
    sock.settimeout(15)
    data = b""
    while True:
        head, found, body = data.partition(b"\r\n\r\n")
        if found:
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length and len(body) >= int(length.group(1)):
                break
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    found_type = re.search(rb"(?im)^content-type:\s*([^\r\n]*)", head)
    content_type = found_type.group(1).decode("latin-1") if found_type else ""
    return RawResponse(status, content_type, body, sent, exhausted)


def chunks_of(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# ------------------------------------------------------------------ resource-heavy cases first


def vm_hwm_kib(server: LiveServer) -> int:
    """Peak resident set size of the server process (``VmHWM``, proc(5))."""
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def test_deflate_bomb_is_refused_quickly_with_bounded_memory(server: LiveServer) -> None:
    bomb = bad.deflate_bomb(1024 * 1024 * 1024)
    assert len(bomb.data) < 1_500_000
    deflated = bomb.data[bad.meta_end(bomb.data) :]
    assert bad.inflated_size(deflated, limit=64 * 1024 * 1024) > 64 * 1024 * 1024
    before = snapshot(server)
    peak_before = vm_hwm_kib(server)

    started = time.monotonic()
    response = stow(server, bomb.data, "application/dicom")
    elapsed = time.monotonic() - started

    assert elapsed < 5, f"took {elapsed:.1f} s"
    assert response.status_code in (409, 413), response.text
    if response.headers["content-type"].startswith(DICOM_JSON):
        assert failure_reasons(response) == [OUT_OF_RESOURCES]
        assert referenced_sops(response) == []
    growth_mib = (vm_hwm_kib(server) - peak_before) / 1024
    assert growth_mib < 150, f"server peak RSS grew by {growth_mib:.0f} MiB"
    assert_nothing_left(server, before)


@pytest.mark.parametrize("defined_length", [False, True], ids=["undefined-length", "defined"])
def test_sequences_nested_300_deep(server: LiveServer, defined_length: bool) -> None:
    before = snapshot(server)
    started = time.monotonic()
    response = stow(
        server, bad.deeply_nested(300, defined_length=defined_length).data, "application/dicom"
    )
    assert time.monotonic() - started < 5
    assert_refused(response, 400, [CANNOT_UNDERSTAND])
    assert_nothing_left(server, before)


def test_sequences_nested_a_little_are_stored(server: LiveServer) -> None:
    """The depth cap refuses abuse, not ordinary structured reports."""
    nested = bad.deeply_nested(5)
    before = snapshot(server)
    response = stow(server, nested.data, "application/dicom")
    assert response.status_code == 200, response.text
    assert nested.sop_uid is not None
    assert referenced_sops(response) == [nested.sop_uid]
    assert_nothing_left(server, before, stored=[nested.sop_uid])


# ------------------------------------------------------------------------------ not DICOM


@pytest.mark.parametrize("kind", ["text", "png", "random"])
def test_non_dicom_body_as_application_dicom(server: LiveServer, kind: str) -> None:
    before = snapshot(server)
    response = stow(server, bad.not_dicom_bodies()[kind], "application/dicom")
    assert_refused(response, 400, [CANNOT_UNDERSTAND])
    assert_nothing_left(server, before)


@pytest.mark.parametrize("kind", ["text", "png", "random"])
def test_non_dicom_body_as_multipart_part(server: LiveServer, kind: str) -> None:
    before = snapshot(server)
    response = stow_multipart(server, [bad.not_dicom_bodies()[kind]])
    assert_refused(response, 400, [CANNOT_UNDERSTAND])
    assert_nothing_left(server, before)


def test_non_dicom_part_beside_a_valid_one(server: LiveServer) -> None:
    good = bad.valid_instance()
    assert good.sop_uid is not None
    before = snapshot(server)
    response = stow_multipart(server, [bad.png_body(), good.data])
    assert response.status_code == 202, response.text
    assert failure_reasons(response) == [CANNOT_UNDERSTAND]
    assert referenced_sops(response) == [good.sop_uid]
    assert_nothing_left(server, before, stored=[good.sop_uid])


def test_empty_body(server: LiveServer) -> None:
    before = snapshot(server)
    response = stow(server, b"", "application/dicom")
    assert response.status_code == 400, response.text
    assert_nothing_left(server, before)


# ------------------------------------------------------------------------------ broken files


@pytest.mark.parametrize(
    "cut",
    [
        "in-preamble",
        "after-preamble",
        "in-file-meta",
        "mid-data-set",
        "in-pixel-header",
        "mid-pixel-data",
        "one-byte-short",
    ],
)
def test_truncated_file(server: LiveServer, cut: str) -> None:
    body = bad.truncations(bad.valid_instance().data)[cut]
    before = snapshot(server)
    response = stow(server, body, "application/dicom")
    assert_refused(response, 400, [CANNOT_UNDERSTAND])
    assert_nothing_left(server, before)


@pytest.mark.parametrize(
    "case", ["pixel-data-length", "patient-name-length", "meta-element-length"]
)
def test_element_length_past_the_end(server: LiveServer, case: str) -> None:
    body = bad.length_past_end_cases()[case].data
    before = snapshot(server)
    response = stow(server, body, "application/dicom")
    assert_refused(response, 400, [CANNOT_UNDERSTAND])
    assert_nothing_left(server, before)


_UID_65 = "1.2.826.0.1.3680043.10.1234." + "9" * 37
assert len(_UID_65) == 65

MALFORMED_UIDS: list[tuple[str, str, dict[str, object], int, int]] = [
    (
        "study-path-traversal",
        "StudyInstanceUID",
        {"StudyInstanceUID": "../../x"},
        400,
        CANNOT_UNDERSTAND,
    ),
    (
        "series-path-traversal",
        "SeriesInstanceUID",
        {"SeriesInstanceUID": "../../x"},
        400,
        CANNOT_UNDERSTAND,
    ),
    ("sop-path-traversal", "SOPInstanceUID", {"SOPInstanceUID": "../../x"}, 400, CANNOT_UNDERSTAND),
    (
        "study-65-characters",
        "StudyInstanceUID",
        {"StudyInstanceUID": _UID_65},
        400,
        CANNOT_UNDERSTAND,
    ),
    (
        "study-leading-zero",
        "StudyInstanceUID",
        {"StudyInstanceUID": "1.02.3"},
        400,
        CANNOT_UNDERSTAND,
    ),
    ("study-empty", "StudyInstanceUID", {"StudyInstanceUID": ""}, 409, DATA_SET_MISMATCH),
    ("sop-missing", "SOPInstanceUID", {"SOPInstanceUID": None}, 409, DATA_SET_MISMATCH),
    ("series-missing", "SeriesInstanceUID", {"SeriesInstanceUID": None}, 409, DATA_SET_MISMATCH),
]


@pytest.mark.parametrize(
    ("keyword", "overrides", "status", "reason"),
    [case[1:] for case in MALFORMED_UIDS],
    ids=[case[0] for case in MALFORMED_UIDS],
)
def test_missing_or_malformed_uid(
    server: LiveServer, keyword: str, overrides: dict[str, object], status: int, reason: int
) -> None:
    instance = bad.valid_instance(**overrides)
    before = snapshot(server)
    response = stow(server, instance.data, "application/dicom")
    assert_refused(response, status, [reason])
    assert_nothing_left(server, before)
    assert_no_traversal(server)


@pytest.mark.parametrize("study", ["1.02.3", _UID_65, "1.2.3.x"])
def test_malformed_study_uid_in_url(server: LiveServer, study: str) -> None:
    instance = bad.valid_instance(StudyInstanceUID=study)
    before = snapshot(server)
    response = stow(server, instance.data, "application/dicom", study=study)
    assert response.status_code == 400, response.text
    assert_nothing_left(server, before)


def test_study_uid_differs_from_url(server: LiveServer) -> None:
    instance = bad.valid_instance()
    before = snapshot(server)
    response = stow(server, instance.data, "application/dicom", study=bad.fresh_uid())
    assert_refused(response, 409, [STUDY_MISMATCH])
    assert failed_sops(response) == [instance.sop_uid]
    assert_nothing_left(server, before)


def test_study_uid_differs_from_url_for_one_part(server: LiveServer) -> None:
    study = bad.fresh_uid()
    matching = bad.valid_instance(StudyInstanceUID=study)
    other = bad.valid_instance()
    assert matching.sop_uid is not None
    before = snapshot(server)
    response = stow_multipart(server, [matching.data, other.data], study=study)
    assert response.status_code == 202, response.text
    assert referenced_sops(response) == [matching.sop_uid]
    assert failure_reasons(response) == [STUDY_MISMATCH]
    assert failed_sops(response) == [other.sop_uid]
    assert_nothing_left(server, before, stored=[matching.sop_uid])


# ------------------------------------------------------------------------------ multipart framing


def test_multipart_without_boundary_parameter(server: LiveServer) -> None:
    before = snapshot(server)
    body = bad.multipart_body([bad.valid_instance().data], BOUNDARY)
    response = stow(server, body, bad.multipart_type(None))
    assert response.status_code == 400, response.text
    assert_nothing_left(server, before)


def test_multipart_boundary_never_in_body(server: LiveServer) -> None:
    before = snapshot(server)
    body = bad.multipart_body([bad.valid_instance().data], "some-other-boundary")
    response = stow(server, body, bad.multipart_type(BOUNDARY))
    assert response.status_code == 400, response.text
    assert_nothing_left(server, before)


def test_multipart_cut_inside_the_only_part(server: LiveServer) -> None:
    body = bad.multipart_body([bad.valid_instance().data], BOUNDARY, close=False)
    before = snapshot(server)
    response = stow(server, body[: len(body) // 2], bad.multipart_type(BOUNDARY))
    assert response.status_code == 400, response.text
    assert_nothing_left(server, before)


def test_multipart_without_closing_delimiter(server: LiveServer) -> None:
    """A part whose end is never delimited is not complete: it must not be stored."""
    body = bad.multipart_body([bad.valid_instance().data], BOUNDARY, close=False)
    before = snapshot(server)
    response = stow(server, body, bad.multipart_type(BOUNDARY))
    assert response.status_code == 400, response.text
    assert_nothing_left(server, before)


def test_multipart_cut_after_two_complete_parts(server: LiveServer) -> None:
    """Complete parts may be stored; the response says exactly which; the cut part never is."""
    parts = [bad.valid_instance() for _ in range(3)]
    body = bad.multipart_body([p.data for p in parts], BOUNDARY, close=False)
    cut = body.rfind(f"--{BOUNDARY}".encode()) + 300  # inside the third part's data set
    before = snapshot(server)
    response = stow(server, body[:cut], bad.multipart_type(BOUNDARY))
    stored = [p.sop_uid for p in parts[:2] if p.sop_uid is not None]
    assert response.status_code == 202, response.text
    assert referenced_sops(response) == stored
    assert failure_reasons(response) == [CANNOT_UNDERSTAND]
    assert_nothing_left(server, before, stored=stored)


def test_multipart_that_breaks_after_a_stored_part_says_what_was_stored(
    server: LiveServer,
) -> None:
    """The first part arrives whole and is stored (visible at once); then the body breaks (a
    header line that is no header). The answer must be 202 naming the stored part, not a bare
    400 that hides it from the client and the audit record."""
    first = bad.valid_instance()
    head = bad.multipart_body([first.data], BOUNDARY, close=False) + f"--{BOUNDARY}\r\n".encode()
    tail = b"this is no header line\r\n\r\n" + bytes(1000) + f"\r\n--{BOUNDARY}--\r\n".encode()
    before = snapshot(server)
    raw = raw_post(
        server,
        {"Content-Type": bad.multipart_type(BOUNDARY)},
        [head, tail],
        chunked=True,
        pause=0.5,
    )
    response = raw.as_httpx()
    assert response.status_code == 202, response.text
    assert referenced_sops(response) == [first.sop_uid]
    assert failure_reasons(response) == [CANNOT_UNDERSTAND]
    assert_nothing_left(server, before, stored=[first.sop_uid])


@pytest.mark.parametrize(
    "content_type",
    [
        f'multipart/related; type="application/pdf"; boundary={BOUNDARY}',
        "text/plain",
        "application/json",
    ],
    ids=["multipart-type-pdf", "text-plain", "json"],
)
def test_unsupported_media_type(server: LiveServer, content_type: str) -> None:
    body = bad.multipart_body([bad.valid_instance().data], BOUNDARY)
    before = snapshot(server)
    response = stow(server, body, content_type)
    assert response.status_code == 415, response.text
    assert_nothing_left(server, before)


def test_multipart_part_with_wrong_content_type(server: LiveServer) -> None:
    body = bad.multipart_body([bad.valid_instance().data], BOUNDARY, part_type="application/pdf")
    before = snapshot(server)
    response = stow(server, body, bad.multipart_type(BOUNDARY))
    assert response.status_code in (400, 409, 415), response.text
    assert stored_by(response) == []
    assert_nothing_left(server, before)


@pytest.mark.parametrize("multipart", [False, True], ids=["application-dicom", "multipart"])
def test_client_goes_away_mid_body(server: LiveServer, multipart: bool) -> None:
    data = bad.valid_instance(PixelData=bytes(600_000)).data
    body = bad.multipart_body([data], BOUNDARY) if multipart else data
    content_type = bad.multipart_type(BOUNDARY) if multipart else "application/dicom"
    before = snapshot(server)
    port = int(server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            (
                "POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in auth(server).items())
                + f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode("latin-1")
            + body[: len(body) // 2]
        )
        time.sleep(0.3)  # let the server spool what it got
    assert_nothing_left(server, before)


# ------------------------------------------------------------------------------ size limits


def test_declared_length_over_limit_refused_before_the_body(small_server: LiveServer) -> None:
    before = snapshot(small_server)
    headers = {"Content-Type": "application/dicom", "Content-Length": str(MAX_REQUEST_BYTES * 20)}
    started = time.monotonic()
    never_sent = (bytes(64 * 1024) for _ in range(2000))  # 128 MB if the server waited for it
    response = raw_post(small_server, headers, never_sent, chunked=False, pause=0.01)
    assert response.status == 413, response.body
    assert not response.exhausted
    assert response.sent < MAX_REQUEST_BYTES, "the server read the body before refusing it"
    assert time.monotonic() - started < 5
    assert_nothing_left(small_server, before)


def test_declared_single_instance_over_instance_limit_refused_before_the_body(
    small_server: LiveServer,
) -> None:
    """Under the request cap but over the instance cap: one application/dicom is one instance."""
    assert MAX_INSTANCE_BYTES * 2 < MAX_REQUEST_BYTES
    before = snapshot(small_server)
    declared = MAX_INSTANCE_BYTES * 2
    headers = {"Content-Type": "application/dicom", "Content-Length": str(declared)}
    never_sent = (bytes(64 * 1024) for _ in range(declared // (64 * 1024)))
    response = raw_post(small_server, headers, never_sent, chunked=False, pause=0.01)
    assert response.status == 413, response.body
    assert not response.exhausted
    assert response.sent < MAX_INSTANCE_BYTES, "the server read the body before refusing it"
    assert_nothing_left(small_server, before)


def test_chunked_body_over_request_limit(small_server: LiveServer) -> None:
    """Parts each under the instance limit, the whole body far over the request limit."""
    junk_part = bad.multipart_body([bad.random_body(1_000_000)], BOUNDARY, close=False)

    def body() -> Iterator[bytes]:
        for _ in range(50):  # ~50 MB if read to the end
            yield from chunks_of(junk_part)
        yield f"--{BOUNDARY}--\r\n".encode()

    before = snapshot(small_server)
    response = raw_post(
        small_server, {"Content-Type": bad.multipart_type(BOUNDARY)}, body(), chunked=True
    )
    assert response.status == 413, response.body
    assert not response.exhausted
    assert response.sent < MAX_REQUEST_BYTES + 2_000_000
    assert_nothing_left(small_server, before)


def test_chunked_single_instance_over_instance_limit(small_server: LiveServer) -> None:
    before = snapshot(small_server)
    body = (bytes(64 * 1024) for _ in range(800))  # ~52 MB if read to the end
    response = raw_post(small_server, {"Content-Type": "application/dicom"}, body, chunked=True)
    assert response.status == 413, response.body
    assert not response.exhausted
    assert response.sent < MAX_INSTANCE_BYTES + 2_000_000
    assert_nothing_left(small_server, before)


def test_one_part_over_instance_limit(small_server: LiveServer) -> None:
    big = bad.valid_instance(PixelData=bytes(MAX_INSTANCE_BYTES + 100_000))
    before = snapshot(small_server)
    response = stow_multipart(small_server, [big.data])
    assert response.status_code == 413, response.text
    assert stored_by(response) == []
    assert_nothing_left(small_server, before)


def test_single_instance_over_instance_limit(small_server: LiveServer) -> None:
    big = bad.valid_instance(PixelData=bytes(MAX_INSTANCE_BYTES + 100_000))
    before = snapshot(small_server)
    response = stow(small_server, big.data, "application/dicom")
    assert response.status_code == 413, response.text
    assert_nothing_left(small_server, before)


def assert_stored_exactly_what_it_says(
    server: LiveServer, before: Snapshot, raw: RawResponse
) -> None:
    """A refused-for-size STOW: 413, or 202 naming the parts it stored; nothing else is left."""
    response = raw.as_httpx()
    assert response.status_code in (202, 413), response.text
    in_index = snapshot(server).qido_sops - before.qido_sops
    assert set(stored_by(response)) == in_index
    assert_nothing_left(server, before, stored=sorted(in_index))


@pytest.mark.parametrize("limit", ["instance-limit", "request-limit"])
def test_over_limit_after_stored_parts_reports_what_was_stored(
    small_server: LiveServer, limit: str
) -> None:
    """Roll back, or answer 202 listing the stored parts: never "413" with parts in the index."""
    if limit == "instance-limit":
        parts = [bad.valid_instance(), bad.valid_instance(PixelData=bytes(2_500_000))]
    else:  # four valid 1.5 MB instances, chunked (no Content-Length): 6 MB > the 5 MB limit
        parts = [bad.valid_instance(PixelData=bytes(1_500_000)) for _ in range(4)]
    body = bad.multipart_body([p.data for p in parts], BOUNDARY)
    before = snapshot(small_server)
    raw = raw_post(
        small_server,
        {"Content-Type": bad.multipart_type(BOUNDARY)}
        | ({} if limit == "request-limit" else {"Content-Length": str(len(body))}),
        chunks_of(body),
        chunked=limit == "request-limit",
        pause=0,
    )
    assert_stored_exactly_what_it_says(small_server, before, raw)


def test_parts_completed_with_an_oversized_one_leave_no_spool_files(
    small_server: LiveServer,
) -> None:
    """The oversized part and the small ones after it complete in the same read: the request
    ends at the oversized one, and the parts after it must not stay in the spool directory."""
    parts = [
        bad.valid_instance(),
        bad.valid_instance(PixelData=bytes(2_500_000)),
        bad.valid_instance(),
        bad.valid_instance(),
    ]
    body = bad.multipart_body([p.data for p in parts], BOUNDARY)
    before = snapshot(small_server)
    raw = raw_post(
        small_server,
        {"Content-Type": bad.multipart_type(BOUNDARY), "Content-Length": str(len(body))},
        [body],
        chunked=False,
        pause=0,
    )
    assert_stored_exactly_what_it_says(small_server, before, raw)


# ------------------------------------------------------------------------------ stored, escaped


def test_script_in_patient_name_is_stored_and_returned_as_json_data(server: LiveServer) -> None:
    instance = bad.valid_instance(PatientName=bad.SCRIPT_PATIENT_NAME)
    assert instance.sop_uid is not None
    before = snapshot(server)
    response = stow(server, instance.data, "application/dicom")
    assert response.status_code == 200, response.text
    assert_nothing_left(server, before, stored=[instance.sop_uid])

    found = httpx.get(
        f"{server.dicomweb}/studies",
        params={"StudyInstanceUID": instance.study_uid or "", "includefield": "00100010"},
        headers=auth(server),
        timeout=30,
    )
    assert found.status_code == 200, found.text
    content_type = found.headers["content-type"]
    assert content_type.startswith(DICOM_JSON)
    assert "html" not in content_type
    results = json.loads(found.content)  # the raw body is valid JSON
    assert len(results) == 1
    assert results[0]["00100010"] == {
        "vr": "PN",
        "Value": [{"Alphabetic": bad.SCRIPT_PATIENT_NAME}],
    }


# ------------------------------------------------------------------------------ concurrency


def _bad_bodies(count: int) -> list[bytes]:
    makers = [
        lambda: bad.text_body(),
        lambda: bad.random_body(4096, seed=7),
        lambda: bad.truncations(bad.valid_instance().data)["mid-pixel-data"],
        lambda: bad.valid_instance(StudyInstanceUID="../../x").data,
        lambda: bad.length_past_end_cases()["pixel-data-length"].data,
    ]
    return [makers[i % len(makers)]() for i in range(count)]


def test_bad_and_good_requests_in_parallel(server: LiveServer) -> None:
    good = [bad.valid_instance() for _ in range(10)]
    bodies = [(True, g.data) for g in good] + [(False, b) for b in _bad_bodies(10)]
    bodies = [bodies[i // 2 + (i % 2) * 10] for i in range(20)]  # interleave good and bad
    before = snapshot(server)

    def send(item: tuple[bool, bytes]) -> tuple[bool, httpx.Response]:
        return item[0], stow(server, item[1], "application/dicom")

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(send, bodies))

    for is_good, response in results:
        if is_good:
            assert response.status_code == 200, response.text
        else:
            assert_refused(response, 400, [CANNOT_UNDERSTAND])
    stored = [g.sop_uid for g in good if g.sop_uid is not None]
    assert sorted(sop for ok, r in results if ok for sop in referenced_sops(r)) == sorted(stored)
    assert_nothing_left(server, before, stored=stored)
    assert_no_traversal(server)

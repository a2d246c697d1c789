"""The bundled OHIF Viewer at /viewer, in Debian's headless Chromium against the real server.

The browser tests store a synthetic CT study through STOW-RS, sign in the way a browser does
(``POST /api/v1/auth/session``: HttpOnly cookie + CSRF cookie) and drive OHIF: the viewport must
show the image, the study list must find the study, measurements saved as an SR and OHIF's own
upload must reach the archive. Every one of them fails on a DICOMweb answer of 4xx/5xx and on any
request to a root path (the build expects to live at ``/``; the server moves it under /viewer/).
The plain-HTTP tests pin the serving rules: headers, caching, rewriting, login redirect, the
per-user app-config, and the 503 page of a server without the viewer.
"""

from __future__ import annotations

import http.client
import importlib.util
import io
import json
import re
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image
from playwright.sync_api import BrowserContext, Page, Request
from pydicom.uid import generate_uid

from dicomvault.api import security
from dicomvault.config import OHIF_VERSION, Settings
from dicomvault.testing.synthetic import make_ct_512
from dicomvault.web import viewer
from tests.browser.conftest import PageLog
from tests.integration.support_data import multipart_body, stow_content_type
from tests.support.server import ADMIN_PASSWORD, LiveServer, running_server

REPO = Path(__file__).resolve().parents[2]
DICOM_JSON = "application/dicom+json"
DRAW_TIMEOUT_S = 60
# The login page (web/pages.py) and what it loads, on the way into the viewer.
ELSEWHERE = ("/login", "/static/", "/api/v1/auth/session")


# -- helpers -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredStudy:
    study_uid: str
    series_uid: str
    patient_id: str
    description: str


def store_ct_study(server: LiveServer, *, patient_id: str, description: str) -> StoredStudy:
    """Three 512x512 CT slices of one series, stored with STOW-RS as the admin."""
    study_uid, series_uid = generate_uid(), generate_uid()
    parts = [
        make_ct_512(
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=generate_uid(),
            instance_number=n,
            seed=n,
            patient_id=patient_id,
            study_description=description,
        )
        for n in (1, 2, 3)
    ]
    body, boundary = multipart_body(parts)
    response = httpx.post(
        f"{server.dicomweb}/studies",
        content=body,
        headers={
            **server.auth_headers,
            "Content-Type": stow_content_type(boundary),
            "Accept": DICOM_JSON,
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return StoredStudy(study_uid, series_uid, patient_id, description)


def sign_in(context: BrowserContext, server: LiveServer) -> None:
    """The browser login: the session cookies land in the context's cookie jar."""
    response = context.request.post(
        f"{server.base_url}/api/v1/auth/session",
        form={"username": "admin", "password": ADMIN_PASSWORD},
    )
    assert response.ok, response.text()


@contextmanager
def http_session(
    server: LiveServer, username: str = "admin", password: str = ADMIN_PASSWORD
) -> Iterator[httpx.Client]:
    """An HTTP client signed in like a browser (session cookies)."""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        response = client.post(
            "/api/v1/auth/session", data={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        yield client


@dataclass
class RequestLog:
    """Every request the page made, with the status it got (None until answered)."""

    server: LiveServer
    entries: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)

    def attach(self, page: Page) -> None:
        def on_request(request: Request) -> None:
            self.entries.append((request.method, request.url, dict(request.headers)))

        def on_finished(request: Request) -> None:
            response = request.response()
            if response is not None:
                self.statuses.setdefault(request.url, []).append(response.status)

        page.on("request", on_request)
        page.on("requestfinished", on_finished)

    def same_origin_paths(self) -> list[str]:
        origin = urlsplit(self.server.base_url)
        return [
            urlsplit(url).path
            for _, url, _ in self.entries
            if urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc == origin.netloc
        ]

    def matching(self, pattern: str, method: str = "GET") -> list[tuple[str, dict[str, str]]]:
        return [(u, h) for m, u, h in self.entries if m == method and re.search(pattern, u)]


@pytest.fixture
def requests_seen(page: Page, web_server: LiveServer) -> RequestLog:
    log = RequestLog(web_server)
    log.attach(page)
    return log


def assert_clean(page_log: PageLog, requests_seen: RequestLog) -> None:
    """No DICOMweb failure, and nothing fetched from outside /viewer/ and /dicom-web/."""
    assert page_log.errors_matching(r"/dicom-web/") == []
    strays = [
        p
        for p in requests_seen.same_origin_paths()
        if not p.startswith(("/viewer/", "/dicom-web/", *ELSEWHERE))
    ]
    assert strays == [], f"requests outside /viewer/ and /dicom-web/: {strays}"
    assert not any(p.endswith("/sw.js") for p in requests_seen.same_origin_paths())


def lit_fraction(png: bytes) -> float:
    """The share of pixels brighter than near-black in a screenshot."""
    gray = Image.open(io.BytesIO(png)).convert("L")
    histogram = gray.histogram()
    return sum(histogram[16:]) / max(1, sum(histogram))


def wait_for_image(page: Page) -> float:
    """Wait until OHIF's viewport canvas shows pixels; returns the lit fraction."""
    canvas = page.locator("canvas.cornerstone-canvas").first
    canvas.wait_for(state="visible", timeout=DRAW_TIMEOUT_S * 1000)
    deadline = time.monotonic() + DRAW_TIMEOUT_S
    fraction = 0.0
    while time.monotonic() < deadline:
        fraction = lit_fraction(canvas.screenshot())
        if fraction > 0.2:
            return fraction
        page.wait_for_timeout(500)
    return fraction


def qido_json(server: LiveServer, path: str, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{server.dicomweb}{path}",
        params=params,
        headers={**server.auth_headers, "Accept": DICOM_JSON},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json() if response.content else []  # type: ignore[no-any-return]


@pytest.fixture(scope="module", autouse=True)
def viewer_is_installed() -> None:
    if not (Settings().viewer_dir / "index.html").is_file():
        pytest.fail(f"OHIF Viewer missing in {Settings().viewer_dir}: run scripts/install.sh")


@pytest.fixture(scope="module")
def ct_study(web_server: LiveServer) -> StoredStudy:
    return store_ct_study(web_server, patient_id="SYNVIEW01", description="VIEWER TEST STUDY")


# -- in the browser ------------------------------------------------------------------------------
def test_viewer_draws_the_study(
    page: Page,
    context: BrowserContext,
    page_log: PageLog,
    requests_seen: RequestLog,
    web_server: LiveServer,
    ct_study: StoredStudy,
) -> None:
    sign_in(context, web_server)
    page.goto(f"{web_server.base_url}/viewer/viewer?StudyInstanceUIDs={ct_study.study_uid}")

    fraction = wait_for_image(page)
    assert fraction > 0.2, f"viewport still blank ({fraction:.1%} lit)"
    # COOP + COEP took: SharedArrayBuffer (OHIF's 3D features) is available.
    assert page.evaluate("window.crossOriginIsolated") is True
    frames = requests_seen.matching(r"/frames/1$")
    assert frames, "no WADO-RS frame request"
    for url, headers in frames:
        assert "multipart/related" in headers.get("accept", "")
        assert requests_seen.statuses.get(url) and set(requests_seen.statuses[url]) == {200}
    # The study browser's thumbnail comes from the server's /thumbnail resource.
    page.locator("[data-cy=study-browser-thumbnail] img").first.wait_for(timeout=30_000)
    thumbnails = requests_seen.matching(r"/dicom-web/studies/.+/thumbnail")
    assert thumbnails and all(
        set(requests_seen.statuses.get(u, [])) == {200} for u, _ in thumbnails
    )
    # Configured for daily use: no onboarding tour, no investigational-use banner.
    assert page.locator(".shepherd-element").count() == 0
    assert page.get_by_text(re.compile("investigational use", re.I)).count() == 0
    assert_clean(page_log, requests_seen)


def test_open_in_viewer_without_a_session_goes_through_the_login_page(
    page: Page,
    page_log: PageLog,
    requests_seen: RequestLog,
    web_server: LiveServer,
    ct_study: StoredStudy,
) -> None:
    target = f"/viewer/viewer?StudyInstanceUIDs={ct_study.study_uid}"
    page.goto(web_server.base_url + target)
    assert urlsplit(page.url).path == "/login"
    assert parse_qs(urlsplit(page.url).query)["next"] == [target]
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(web_server.base_url + target)
    assert wait_for_image(page) > 0.2
    assert_clean(page_log, requests_seen)


def test_study_list_finds_the_study_by_patient_id(
    page: Page,
    context: BrowserContext,
    page_log: PageLog,
    requests_seen: RequestLog,
    web_server: LiveServer,
    ct_study: StoredStudy,
) -> None:
    sign_in(context, web_server)
    # The study list's filters live in its URL: MRN (Patient ID) and the modality picker.
    page.goto(f"{web_server.base_url}/viewer/?mrn=VIEW0&modalities=CT,MR")
    page.get_by_text(ct_study.description).first.wait_for(timeout=30_000)

    searches = requests_seen.matching(r"/dicom-web/studies\?")
    assert searches
    for url, _ in searches:
        assert set(requests_seen.statuses.get(url, [])) == {200}, url
    by_patient = [parse_qs(urlsplit(u).query) for u, _ in searches if "00100020=" in u]
    assert by_patient, "no study search by PatientID"
    query = by_patient[-1]
    assert query["00100020"] == ["*VIEW0*"]
    assert query["ModalitiesInStudy"] == ["CT,MR"]
    assert query["limit"] == ["101"] and query["offset"] == ["0"]
    assert query["fuzzymatching"] == ["true"]
    assert {"00081030", "00080060"} <= set(query["includefield"][0].split(","))
    assert_clean(page_log, requests_seen)


def test_measurements_are_saved_as_a_structured_report(
    page: Page,
    context: BrowserContext,
    page_log: PageLog,
    requests_seen: RequestLog,
    web_server: LiveServer,
) -> None:
    """OHIF's "Create SR" is a STOW-RS from the browser: it needs the CSRF header the
    app-config adds to cookie-authenticated writes."""
    study = store_ct_study(web_server, patient_id="SYNVIEW02", description="MEASURED STUDY")
    sign_in(context, web_server)
    page.goto(f"{web_server.base_url}/viewer/viewer?StudyInstanceUIDs={study.study_uid}")
    assert wait_for_image(page) > 0.2

    page.click("[data-cy=Length-btn]")
    box = page.locator("canvas.cornerstone-canvas").first.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4
    page.mouse.click(x, y)
    page.mouse.move(x + 150, y + 80, steps=5)
    page.mouse.click(x + 150, y + 80)
    page.click("[data-cy=prompt-begin-tracking-yes-btn]")
    page.click("[data-cy=trackedMeasurements-btn]")
    page.get_by_role("button", name="Create SR").click()
    page.get_by_placeholder("Report name").fill("viewer test report")
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/dicom-web/studies")
    ) as stored:
        page.get_by_role("button", name="Save", exact=True).click()
    assert stored.value.status == 200, stored.value.text()
    assert stored.value.request.headers.get("x-csrf-token")

    series = qido_json(web_server, f"/studies/{study.study_uid}/series")
    assert "SR" in {s["00080060"]["Value"][0] for s in series}
    assert_clean(page_log, requests_seen)


def test_upload_from_the_study_list(
    page: Page,
    context: BrowserContext,
    page_log: PageLog,
    requests_seen: RequestLog,
    web_server: LiveServer,
    tmp_path: Path,
) -> None:
    study_uid = generate_uid()
    upload = tmp_path / "upload.dcm"
    upload.write_bytes(
        make_ct_512(
            rows=64,
            columns=64,
            study_uid=study_uid,
            series_uid=generate_uid(),
            sop_uid=generate_uid(),
            patient_id="SYNVIEW03",
            study_description="UPLOADED IN OHIF",
        )
    )
    sign_in(context, web_server)
    page.goto(f"{web_server.base_url}/viewer/")
    page.get_by_text("Upload", exact=True).first.click()
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/dicom-web/studies")
    ) as stored:
        page.locator("input[type=file]").first.set_input_files(str(upload))
    assert stored.value.status == 200, stored.value.text()
    page.get_by_text("1 file completed").wait_for(timeout=30_000)
    assert qido_json(web_server, "/studies", StudyInstanceUID=study_uid)
    assert_clean(page_log, requests_seen)


# -- over plain HTTP -----------------------------------------------------------------------------
def test_without_a_session_the_viewer_sends_the_browser_to_the_login_page(
    web_server: LiveServer,
) -> None:
    with httpx.Client(base_url=web_server.base_url, timeout=30) as client:
        response = client.get("/viewer/viewer", params={"StudyInstanceUIDs": "1.2.3"})
        assert response.status_code == 303
        assert response.headers["location"] == (
            "/login?next=%2Fviewer%2Fviewer%3FStudyInstanceUIDs%3D1.2.3"
        )
        assert client.get("/viewer").headers["location"] == "/viewer/"
        # The app's files are public (they are the unmodified OHIF build); its config is not.
        assert client.get("/viewer/app-config.js").status_code == 401
        assert client.get("/viewer/app.bundle.css").status_code == 200
    with httpx.Client(
        base_url=web_server.base_url, cookies={security.ACCESS_COOKIE: "not-a-token"}
    ) as client:
        assert client.get("/viewer/").status_code == 303
        assert client.get("/viewer/index.html").status_code == 303


def test_viewer_files_are_served_under_viewer_with_isolation_headers(
    web_server: LiveServer,
) -> None:
    root = Settings().viewer_dir
    bundle = next(root.glob("app.bundle.*.js")).name
    wasm = next(root.glob("*.wasm")).name
    with http_session(web_server) as client:
        document = client.get("/viewer/viewer", params={"StudyInstanceUIDs": "1.2.3"})
        assert document.status_code == 200
        assert document.headers["content-type"].startswith("text/html")
        assert document.headers["cross-origin-opener-policy"] == "same-origin"
        assert document.headers["cross-origin-embedder-policy"] == "require-corp"
        assert document.headers["cache-control"] == "no-cache"
        # No other site may frame the signed-in app (clickjacking).
        assert document.headers["x-frame-options"] == "DENY"
        assert document.headers["content-security-policy"] == "frame-ancestors 'none'"
        html = document.text
        assert 'window.PUBLIC_URL="/viewer/"' in html
        assert 'src="/viewer/app-config.js"' in html and f'src="/viewer/{bundle}"' in html
        assert not re.search(r'(src|href)="/(?!viewer/)', html)
        assert "init-service-worker" not in html
        assert client.get("/viewer/").text == html

        js = client.get(f"/viewer/{bundle}")
        assert js.headers["content-type"].startswith("text/javascript")
        assert js.headers["cache-control"] == viewer.IMMUTABLE
        assert js.headers["cross-origin-resource-policy"] == "same-origin"
        assert '__webpack_require__.p = "/viewer/"' in js.text
        assert '__webpack_require__.p = "/"' not in js.text
        assert "x-frame-options" not in js.headers
        # RFC 9110 13.1.2: a list of tags, weak or strong, revalidates (memory and disk files).
        etag = js.headers["etag"]
        for header in (etag, f'"other", {etag}', f"W/{etag}", "*"):
            again = client.get(f"/viewer/{bundle}", headers={"If-None-Match": header})
            assert again.status_code == 304, header
        on_disk = client.get(f"/viewer/{wasm}")
        for header in (on_disk.headers["etag"], f'"x", W/{on_disk.headers["etag"]}'):
            again = client.get(f"/viewer/{wasm}", headers={"If-None-Match": header})
            assert again.status_code == 304, header
        assert client.get(f"/viewer/{wasm}", headers={"If-None-Match": '"x"'}).status_code == 200
        for header in (document.headers["etag"], f'"x", W/{document.headers["etag"]}'):
            again = client.get("/viewer/viewer", headers={"If-None-Match": header})
            assert again.status_code == 304, header
            assert again.headers["x-frame-options"] == "DENY"

        assert client.get(f"/viewer/{wasm}").headers["content-type"] == "application/wasm"
        css = client.get("/viewer/app.bundle.css").text
        assert "url(/viewer/" in css and not re.search(r"url\(/(?!viewer/)", css)
        assert client.head("/viewer/manifest.json").status_code == 200
        for missing in ("sw.js", "init-service-worker.js", ".integrity", "nope.js", "serve.json"):
            assert client.get(f"/viewer/{missing}").status_code == 404, missing
        # Not a file of the app: a client-side route, so the document.
        assert client.get("/viewer/_redirects").text == html
        for hostile in ("a%00b.js", "x" * 300 + ".js"):
            assert client.get(f"/viewer/{hostile}").status_code == 404, hostile


# -- nothing outside the build ---------------------------------------------------------------------
SECRET = b"outside-the-viewer-build-0f3c"


@pytest.fixture(scope="module")
def fenced_viewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose viewer build has secrets just outside it: next to it, two levels up, and
    behind a file and a folder symlinked from inside the build to the outside."""
    root = tmp_path_factory.mktemp("fenced")
    build = root / "share" / "ohif"
    build.mkdir(parents=True)
    (build / "index.html").write_text("<!doctype html><title>fenced</title>")
    (build / "inside.js").write_text("inside")
    for secret in (root / "secret.txt", root / "share" / "secret.txt"):
        secret.write_bytes(SECRET)
    private = root / "share" / "private"
    private.mkdir()
    (private / "secret.txt").write_bytes(SECRET)
    (build / "linked.txt").symlink_to(root / "share" / "secret.txt")
    (build / "assets").symlink_to(private, target_is_directory=True)
    with running_server(root / "data", env={"DICOMVAULT_VIEWER_DIR": str(build)}) as server:
        yield server


def raw_get(server: LiveServer, path: str) -> tuple[int, bytes]:
    """GET with the request target exactly as written: no client normalises ``..`` or ``%2e``."""
    origin = urlsplit(server.base_url)
    connection = http.client.HTTPConnection(origin.hostname or "", origin.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "path",
    [
        "../secret.txt",
        "../../secret.txt",
        "%2e%2e/secret.txt",
        "%2E%2E/%2e%2e/secret.txt",
        "..%2Fsecret.txt",
        "%2e%2e%2f%2e%2e%2fsecret.txt",
        "inside.js/../../secret.txt",
        "..%5Csecret.txt",
        "..\\secret.txt",
        "assets/..%2F..%2Fsecret.txt",
        # Symlinks inside the build that lead out of it.
        "linked.txt",
        "assets/secret.txt",
    ],
)
def test_no_file_outside_the_build_is_served(fenced_viewer: LiveServer, path: str) -> None:
    assert raw_get(fenced_viewer, "/viewer/inside.js") == (200, b"inside")
    status, body = raw_get(fenced_viewer, f"/viewer/{path}")
    assert SECRET not in body
    assert status == 404, (status, body[:200])


def test_app_config_offers_upload_only_to_who_may_store(web_server: LiveServer) -> None:
    with httpx.Client(
        base_url=web_server.base_url, headers=web_server.auth_headers, timeout=30
    ) as admin:
        created = admin.post(
            "/api/v1/users",
            json={
                "username": "viewer-auditor",
                "password": "auditor-password-1",
                "roles": ["auditor"],
            },
        )
        assert created.status_code == 201, created.text
    with http_session(web_server) as client:
        response = client.get("/viewer/app-config.js")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/javascript")
        assert response.headers["cache-control"] == "no-store"
        assert config_of(response.text)["dataSources"][0]["configuration"]["dicomUploadEnabled"]
    with http_session(web_server, "viewer-auditor", "auditor-password-1") as client:
        config = config_of(client.get("/viewer/app-config.js").text)
        assert config["dataSources"][0]["configuration"]["dicomUploadEnabled"] is False


def config_of(script: str) -> dict[str, Any]:
    match = re.search(r"var config = (\{.*?\n\});", script, re.S)
    assert match, script[:500]
    config: dict[str, Any] = json.loads(match.group(1))
    source = config["dataSources"][0]["configuration"]
    assert source["qidoRoot"] == source["wadoRoot"] == "/dicom-web"
    assert config["investigationalUseDialog"] == {"option": "never"}
    assert config["customizationService"] == [{"ohif.tours": {"$set": []}}]
    return config


def test_a_server_without_the_viewer_starts_and_says_how_to_install_it(tmp_path: Path) -> None:
    empty = tmp_path / "no-viewer"
    empty.mkdir()
    env = {"DICOMVAULT_VIEWER_DIR": str(empty)}
    with running_server(tmp_path / "data", env=env) as server:
        assert httpx.get(f"{server.base_url}/healthz", timeout=10).status_code == 200
        # Signed out, the document is the way to the login page (no file system path shown).
        response = httpx.get(f"{server.base_url}/viewer/", timeout=10)
        assert response.status_code == 303
        response = httpx.get(f"{server.base_url}/viewer/", headers=server.auth_headers, timeout=10)
        assert response.status_code == 503
        assert "scripts/install.sh" in response.text and str(empty) in response.text
        assert response.headers["x-frame-options"] == "DENY"
        assert httpx.get(f"{server.base_url}/viewer/app.js", timeout=10).status_code == 503


# -- units: rewriting, install script, constants -------------------------------------------------
def test_rewrites_move_root_urls_under_the_prefix() -> None:
    html = (
        '<script>window.PUBLIC_URL="/"</script><link href="/app.bundle.css" rel="stylesheet">'
        '<meta name="msapplication-TileImage" content="/assets/t.png">'
        '<script rel="preload" as="script" type="module" src="/init-service-worker.js"></script>'
        '<a href="//cdn.example/x">x</a><script defer src="/app.bundle.1.js"></script>'
    )
    assert viewer.rewrite_index_html(html) == (
        '<script>window.PUBLIC_URL="/viewer/"</script>'
        '<link href="/viewer/app.bundle.css" rel="stylesheet">'
        '<meta name="msapplication-TileImage" content="/viewer/assets/t.png">'
        '<a href="//cdn.example/x">x</a><script defer src="/viewer/app.bundle.1.js"></script>'
    )
    js = "(() => {\n__webpack_require__.p = \"/\";\n})();import('/dicom-microscopy-viewer/a.js')"
    assert viewer.rewrite_javascript(js) == (
        '(() => {\n__webpack_require__.p = "/viewer/";\n})();'
        "import('/viewer/dicom-microscopy-viewer/a.js')"
    )
    assert viewer.rewrite_javascript('a = "/"; b.p = "/x/"') == 'a = "/"; b.p = "/x/"'
    assert viewer.rewrite_css("a{src:url(/f.woff2)}b{src:url('//x/y')}") == (
        "a{src:url(/viewer/f.woff2)}b{src:url('//x/y')}"
    )
    assert viewer.rewrite_manifest('{"src": "/assets/i.png", "start_url": "./index.html"}') == (
        '{"src": "/viewer/assets/i.png", "start_url": "./index.html"}'
    )


def test_viewer_and_api_agree_on_the_csrf_double_submit() -> None:
    assert viewer.CSRF_COOKIE == security.CSRF_COOKIE
    assert viewer.CSRF_HEADER.lower() == security.CSRF_HEADER


def _fetch_viewer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_viewer", REPO / "scripts/fetch_viewer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fetch_viewer", module)
    spec.loader.exec_module(module)
    return module


def test_pinned_version_is_the_configured_one() -> None:
    pin = json.loads((REPO / "scripts/ohif-viewer.json").read_text())
    assert pin["version"] == OHIF_VERSION
    assert pin["tarball"].endswith(f"-{OHIF_VERSION}.tgz")
    assert Settings().viewer_dir == Path(sys.prefix) / "share" / "ohif" / OHIF_VERSION
    assert _fetch_viewer().default_dest(OHIF_VERSION) == Settings().viewer_dir


def _tarball(path: Path, members: dict[str, bytes], *, link: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            archive.addfile(info)
    return path


@pytest.fixture
def installer(tmp_path: Path) -> Iterator[Callable[..., tuple[Any, dict[str, str], Path]]]:
    fetch = _fetch_viewer()

    def make(
        members: dict[str, bytes], *, link: str | None = None
    ) -> tuple[Any, dict[str, str], Path]:
        tarball = _tarball(tmp_path / "app.tgz", members, link=link)
        pin = {"package": "@ohif/app", "version": "0.0.1", "tarball": "https://x/app.tgz"}
        pin["integrity"] = fetch.sri_sha512(tarball)
        return fetch, pin, tarball

    yield make


def test_install_unpacks_only_dist_and_is_idempotent(installer: Any, tmp_path: Path) -> None:
    fetch, pin, tarball = installer(
        {
            "package/package.json": b"{}",
            "package/LICENSE": b"MIT",
            "package/dist/index.html": b"<html></html>",
            "package/dist/assets/a.png": b"png",
        }
    )
    dest = tmp_path / "share" / "ohif" / "0.0.1"
    assert "files in" in fetch.install(pin, dest, tarball, False)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        ".integrity",
        "LICENSE",
        "assets/a.png",
        "index.html",
    ]
    assert "already in" in fetch.install(pin, dest, None, False)  # no download attempted


def test_install_refuses_a_tarball_that_is_not_the_pinned_one(
    installer: Any, tmp_path: Path
) -> None:
    fetch, pin, tarball = installer({"package/dist/index.html": b"<html></html>"})
    pin["integrity"] = "sha512-" + "A" * 86 + "=="
    dest = tmp_path / "dest"
    with pytest.raises(fetch.FetchError, match="integrity mismatch"):
        fetch.install(pin, dest, tarball, False)
    assert not dest.exists()


@pytest.mark.parametrize(
    ("members", "link"),
    [
        ({"package/dist/index.html": b"x", "package/dist/../../evil": b"x"}, None),
        ({"package/dist/index.html": b"x"}, "package/dist/passwd"),
    ],
)
def test_install_refuses_unsafe_members(
    installer: Any, tmp_path: Path, members: dict[str, bytes], link: str | None
) -> None:
    fetch, pin, tarball = installer(members, link=link)
    with pytest.raises(fetch.FetchError, match="unsafe path|unexpected member"):
        fetch.install(pin, tmp_path / "dest", tarball, False)
    assert not (tmp_path / "dest").exists()

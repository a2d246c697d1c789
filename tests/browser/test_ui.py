"""The web UI in Debian's Chromium against the real server: login, search, upload, live updates,
the study page with its thumbnails and ZIP download, tablet width, escaping.

Screenshots of every test land in test-artifacts/screenshots/ (conftest); the tablet ones also
under explicit names. All data is synthetic (dicomvault.testing.synthetic).
"""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
import pytest
from playwright.sync_api import BrowserContext, Dialog, Page, Route, expect

from dicomvault.testing.synthetic import make_instance
from tests.browser.conftest import ARTIFACTS, PageLog
from tests.support.server import ADMIN_PASSWORD, LiveServer

# No "=" or "^": those are PN group and component separators (PS3.5 6.2.1).
XSS_NAME = "<script>alert(1)</script><b>bold</b>"
TIMEOUT = 15_000  # ms, for things that wait on the server (uploads, live events)
# A page renews within 5 s (its check) + 15 s (its random wait) of the marker going.
RENEWAL_TIMEOUT = 30_000


@dataclass(frozen=True)
class Seeded:
    alpha: str  # study UIDs
    bravo: str
    charlie: str
    xss: str


def _stow(live: LiveServer, data: bytes) -> dict[str, object]:
    with live.client() as client:
        response = client.post(
            "/studies", content=data, headers={"Content-Type": "application/dicom"}
        )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def _study_uid(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).StudyInstanceUID)


@pytest.fixture(scope="module")
def seeded(web_server: LiveServer) -> Seeded:
    """Four studies in the admin's tenant, stored over STOW-RS (httpx, not the browser)."""
    alpha = make_instance(
        patient_name="UIWILD^ALPHA",
        patient_id="UI0001",
        modality="CT",
        study_date="20230105",
        accession="UIACC1",
        study_description="CT CHEST",
    )
    bravo = make_instance(
        "MR_small.dcm",
        patient_name="UIWILD^BRAVO",
        patient_id="UI0002",
        modality="MR",
        study_date="20230612",
        accession="UIACC2",
        study_description="MR BRAIN",
    )
    bravo_2 = make_instance(
        "MR_small.dcm",
        study_uid=_study_uid(bravo),
        patient_name="UIWILD^BRAVO",
        patient_id="UI0002",
        modality="MR",
        study_date="20230612",
        accession="UIACC2",
        study_description="MR BRAIN",
        series_number=2,
    )
    charlie = make_instance(
        patient_name="UIOTHER^CHARLIE",
        patient_id="UI0003",
        modality="CT",
        study_date="20240302",
        accession="UIACC3",
        study_description="CT ABDOMEN",
    )
    xss = make_instance(patient_name=XSS_NAME, patient_id="UI0666", study_date="20220101")
    for data in (alpha, bravo, bravo_2, charlie, xss):
        _stow(web_server, data)
    return Seeded(_study_uid(alpha), _study_uid(bravo), _study_uid(charlie), _study_uid(xss))


@pytest.fixture
def signed_in(context: BrowserContext, page: Page, web_server: LiveServer) -> Page:
    """The page with a session: the cookies of POST /api/v1/auth/session in this context."""
    response = context.request.post(
        f"{web_server.base_url}/api/v1/auth/session",
        form={"username": "admin", "password": ADMIN_PASSWORD},
    )
    assert response.ok
    return page


def rows(page: Page) -> list[str]:
    uids: list[str] = page.locator("#results tbody tr").evaluate_all(
        "rows => rows.map(r => r.getAttribute('data-study-uid'))"
    )
    return uids


def assert_clean(page_log: PageLog) -> None:
    """No script errors, no CSP refusals, no server errors (a 404 thumbnail is not one)."""
    assert not page_log.page_errors, page_log.page_errors
    csp = [m for m in page_log.console_errors if "Content Security Policy" in m]
    assert not csp, csp
    assert not [e for e in page_log.http_errors if e[1] >= 500], page_log.http_errors


# -- login -----------------------------------------------------------------------------------------
def test_login_by_keyboard_wrong_then_right_password(
    page: Page, page_log: PageLog, web_server: LiveServer
) -> None:
    page.goto(f"{web_server.base_url}/upload")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fupload$"))
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("not-the-password")
    page.keyboard.press("Enter")
    alert = page.get_by_role("alert")
    expect(alert).to_have_text("Wrong user name or password.")
    expect(page.get_by_label("Password")).to_be_focused()
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{web_server.base_url}/upload")  # the safe `next`
    page.get_by_role("link", name="Worklist").click()
    expect(page.get_by_role("heading", name="Worklist", level=1)).to_be_visible()
    # Logging out ends the session: the worklist sends us back to the login page.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(f"{web_server.base_url}/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    assert [e[1] for e in page_log.http_errors] == [400]  # the wrong password, nothing else
    assert_clean(page_log)


def test_login_never_redirects_off_site(page: Page, web_server: LiveServer) -> None:
    page.goto(f"{web_server.base_url}/login?next=//example.org/phish")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{web_server.base_url}/")


# -- search ----------------------------------------------------------------------------------------
def search(page: Page, **fields: str) -> None:
    page.get_by_role("link", name="Clear").click()
    for label, value in fields.items():
        field = page.get_by_label(label, exact=True)
        if label == "Modality":
            field.select_option(value)
        else:
            field.fill(value)
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state()


def test_search_by_id_name_modality_and_date(
    signed_in: Page, page_log: PageLog, web_server: LiveServer, seeded: Seeded
) -> None:
    page = signed_in
    page.goto(f"{web_server.base_url}/")
    search(page, **{"Patient ID": "UI0001"})
    assert rows(page) == [seeded.alpha]
    assert "PatientID=UI0001" in page.url and "PatientName=" not in page.url
    search(page, **{"Patient name": "uiwild*"})
    assert sorted(rows(page)) == sorted([seeded.alpha, seeded.bravo])
    search(page, **{"Patient name": "uiwild*", "Modality": "MR"})
    assert rows(page) == [seeded.bravo]
    search(page, **{"From": "2024-01-01", "To": "2024-12-31"})
    assert seeded.charlie in rows(page)
    assert not {seeded.alpha, seeded.bravo, seeded.xss} & set(rows(page))
    search(page, **{"Accession number": "UIACC2"})
    assert rows(page) == [seeded.bravo]
    search(page, **{"Study description": "ABDOMEN"})
    assert rows(page) == [seeded.charlie]
    # Sorting: by name ascending, then descending, through the column headers.
    search(page, **{"Patient name": "ui*"})
    page.get_by_role("link", name=re.compile("^Patient name")).click()
    assert rows(page)[:3] == [seeded.charlie, seeded.alpha, seeded.bravo]
    expect(page.locator("th.col-name")).to_have_attribute("aria-sort", "ascending")
    page.get_by_role("link", name=re.compile("^Patient name")).click()
    assert rows(page)[:3] == [seeded.bravo, seeded.alpha, seeded.charlie]
    # The same through the form's own controls (the only ones on a tablet, where the table
    # becomes cards without column headers).
    page.get_by_label("Sort by").select_option("date")
    page.get_by_label("Order").select_option("asc")
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state()
    assert rows(page)[:2] == [seeded.alpha, seeded.bravo]
    # The viewer link of each row opens the study in OHIF.
    link = page.locator(f'tr[data-study-uid="{seeded.bravo}"]').get_by_role(
        "link", name=re.compile("Open in viewer")
    )
    expect(link).to_have_attribute("href", f"/viewer/viewer?StudyInstanceUIDs={seeded.bravo}")
    search(page, **{"From": "2025-02-01", "To": "2024-01-01"})
    expect(page.get_by_role("alert")).to_contain_text("the From date is after the To date")
    assert_clean(page_log)


def test_script_in_patient_name_is_shown_as_text(
    signed_in: Page, page_log: PageLog, web_server: LiveServer, seeded: Seeded
) -> None:
    page = signed_in
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(f"{web_server.base_url}/?PatientID=UI0666")
    cell = page.locator(f'tr[data-study-uid="{seeded.xss}"] .patient-name')
    expect(cell).to_have_text(XSS_NAME)
    cell.click()
    expect(page.locator("#tag-patient-name")).to_have_text(XSS_NAME)
    assert page.locator("main b").count() == 0  # no markup made it into the DOM
    assert dialogs == []
    assert_clean(page_log)


# -- upload ----------------------------------------------------------------------------------------
def _folder(tmp_path: Path) -> tuple[Path, list[bytes]]:
    folder = tmp_path / "export"
    (folder / "series1").mkdir(parents=True)
    (folder / "series2").mkdir()
    first = make_instance(patient_name="UIUPLOAD^FOLDER", patient_id="UIUP01", series_number=1)
    study = _study_uid(first)
    files = [
        first,
        make_instance(study_uid=study, patient_id="UIUP01", series_number=1, instance_number=2),
        make_instance("MR_small.dcm", study_uid=study, patient_id="UIUP01", series_number=2),
    ]
    (folder / "series1" / "IM0001.dcm").write_bytes(files[0])
    (folder / "series1" / "IM0002.dcm").write_bytes(files[1])
    (folder / "series2" / "IM0001.dcm").write_bytes(files[2])
    (folder / "README.txt").write_text("not a DICOM file\n")
    return folder, files


def _states(page: Page) -> dict[str, str]:
    pairs = page.locator("#upload-rows tr").evaluate_all(
        "rows => rows.map(r => [r.querySelector('th').textContent, r.getAttribute('data-state')])"
    )
    return dict(pairs)


def test_upload_a_folder_with_progress_results_duplicates_and_retry(
    signed_in: Page, page_log: PageLog, web_server: LiveServer, tmp_path: Path
) -> None:
    page = signed_in
    folder, files = _folder(tmp_path)
    page.goto(f"{web_server.base_url}/upload")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    page.set_input_files("#folder-input", folder)
    expect(page.locator("#overall-progress")).to_have_attribute("value", "100", timeout=TIMEOUT)
    expect(page.locator("#overall-text")).to_contain_text("4 of 4 files done · 100 %")
    assert _states(page) == {
        "export/series1/IM0001.dcm": "stored",
        "export/series1/IM0002.dcm": "stored",
        "export/series2/IM0001.dcm": "stored",
        "export/README.txt": "rejected",
    }
    for bar in page.locator("#upload-rows progress").all():
        expect(bar).to_have_attribute("value", "100")
    # Retry is offered for the refused file only.
    expect(page.locator("#upload-rows button.retry:visible")).to_have_count(1)
    readme = page.locator("#upload-rows tr", has_text="README.txt")
    expect(readme.locator(".result")).to_contain_text("not a DICOM file")
    expect(readme.locator(".result")).to_contain_text("0xC000")
    expect(page.locator("#upload-summary")).to_have_text(
        "Finished: 3 stored, 0 duplicate, 1 rejected, 0 failed."
    )
    # The live panel saw the three instances arrive.
    expect(page.locator("#arrival-count")).to_contain_text("3 instances", timeout=TIMEOUT)

    # Different bytes under a stored SOP Instance UID: a duplicate (0x0111), not stored.
    stored = pydicom.dcmread(io.BytesIO(files[0]))
    changed = make_instance(
        study_uid=str(stored.StudyInstanceUID),
        series_uid=str(stored.SeriesInstanceUID),
        sop_uid=str(stored.SOPInstanceUID),
        patient_id="UIUP01",
        study_description="CHANGED",
    )
    again = tmp_path / "again.dcm"
    again.write_bytes(changed)
    page.set_input_files("#file-input", again)
    expect(page.locator("#overall-text")).to_contain_text("5 of 5 files done", timeout=TIMEOUT)
    duplicate = page.locator("#upload-rows tr", has_text="again.dcm")
    expect(duplicate).to_have_attribute("data-state", "duplicate")
    expect(duplicate.locator(".result")).to_contain_text("0x0111")

    # A connection that fails once: the file is "failed", and Retry sends it again.
    flaky = tmp_path / "flaky.dcm"
    flaky.write_bytes(make_instance(patient_id="UIUP02", patient_name="UIUPLOAD^FLAKY"))
    failures = {"left": 1}

    def fail_once(route: Route) -> None:
        if failures["left"]:
            failures["left"] -= 1
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/dicom-web/studies", fail_once)
    page.set_input_files("#file-input", flaky)
    expect(page.locator("#overall-text")).to_contain_text("6 of 6 files done", timeout=TIMEOUT)
    assert _states(page)["flaky.dcm"] == "failed"
    expect(page.get_by_role("button", name="Retry failed files")).to_be_visible()
    flaky_row = page.locator("#upload-rows tr", has_text="flaky.dcm")
    flaky_row.get_by_role("button", name="Retry flaky.dcm").click()
    expect(flaky_row).to_have_attribute("data-state", "stored", timeout=TIMEOUT)
    expect(page.locator("#overall-progress")).to_have_attribute("value", "100")
    assert_clean(page_log)


def test_files_dropped_on_the_zone_are_uploaded(
    signed_in: Page, page_log: PageLog, web_server: LiveServer
) -> None:
    page = signed_in
    page.goto(f"{web_server.base_url}/upload")
    data = make_instance(patient_id="UIDROP1", patient_name="UIUPLOAD^DROPPED")
    # A synthetic drop (DataTransfer with a File): the page falls back to dataTransfer.files
    # where no file-system entries exist, as for files dragged from some applications.
    page.evaluate(
        """([bytes]) => {
            const file = new File([new Uint8Array(bytes)], "dropped.dcm");
            const transfer = new DataTransfer();
            transfer.items.add(file);
            const zone = document.getElementById("drop-zone");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
        }""",
        [list(data)],
    )
    row = page.locator("#upload-rows tr", has_text="dropped.dcm")
    expect(row).to_have_attribute("data-state", "stored", timeout=TIMEOUT)
    expect(page.locator("#overall-progress")).to_have_attribute("value", "100")
    assert_clean(page_log)


# -- live updates ----------------------------------------------------------------------------------
def test_worklist_updates_live_when_another_client_stores(
    signed_in: Page, page_log: PageLog, web_server: LiveServer
) -> None:
    page = signed_in
    page.goto(f"{web_server.base_url}/?PatientID=UILIVE1")
    expect(page.locator("#no-results")).to_be_visible()
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    data = make_instance(patient_name="UILIVE^ARRIVAL", patient_id="UILIVE1")
    _stow(web_server, data)  # another client (httpx, Bearer token), not this browser
    row = page.locator(f'#results tr[data-study-uid="{_study_uid(data)}"]')
    expect(row).to_be_visible(timeout=TIMEOUT)
    expect(row.locator(".patient-name")).to_have_text("UILIVE, ARRIVAL")
    assert_clean(page_log)


# -- study page ------------------------------------------------------------------------------------
def test_study_page_series_thumbnails_and_zip_download(
    signed_in: Page, page_log: PageLog, web_server: LiveServer, seeded: Seeded, tmp_path: Path
) -> None:
    page = signed_in
    page.goto(f"{web_server.base_url}/?PatientID=UI0002")
    page.locator(f'tr[data-study-uid="{seeded.bravo}"] .patient-name').click()
    expect(page).to_have_url(f"{web_server.base_url}/studies/{seeded.bravo}")
    expect(page.locator("#tag-patient-id")).to_have_text("UI0002")
    expect(page.locator("#tag-accession")).to_have_text("UIACC2")
    expect(page.locator("#tag-modalities")).to_have_text("MR")
    cards = page.locator(".series-card")
    expect(cards).to_have_count(2)
    expect(cards.first.locator(".instance-count")).to_have_text("1")
    # Thumbnails come from /dicom-web/studies/{s}/series/{r}/thumbnail (api/rendered.py).
    thumbs = page.locator(".series-card img.thumb")
    for thumb in thumbs.all():
        thumb.scroll_into_view_if_needed()
        expect(thumb).not_to_have_class(re.compile(r"\bmissing\b"))
    page.wait_for_function(
        "() => [...document.querySelectorAll('.series-card img.thumb')]"
        ".every(img => img.complete && img.naturalWidth > 0)",
        timeout=TIMEOUT,
    )
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download study (ZIP)").click()
    download = download_info.value
    assert download.suggested_filename == f"{seeded.bravo}.zip"
    target = tmp_path / "study.zip"
    download.save_as(target)
    with zipfile.ZipFile(target) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert len(names) == 2 and all(n.startswith(seeded.bravo + "/") for n in names)
        for name in names:
            dataset = pydicom.dcmread(io.BytesIO(archive.read(name)))
            assert dataset.PatientID == "UI0002"
    assert_clean(page_log)


def test_worklist_thumbnails_load(
    signed_in: Page, page_log: PageLog, web_server: LiveServer, seeded: Seeded
) -> None:
    page = signed_in
    page.goto(f"{web_server.base_url}/?PatientID=UI0001")
    thumb = page.locator(f'tr[data-study-uid="{seeded.alpha}"] img.thumb')
    expect(thumb).to_have_attribute("alt", re.compile("Thumbnail of the study of UIWILD, ALPHA"))
    page.wait_for_function(
        "uid => { const img = document.querySelector(`tr[data-study-uid='${uid}'] img.thumb`);"
        " return img.complete && img.naturalWidth > 0; }",
        arg=seeded.alpha,
        timeout=TIMEOUT,
    )
    assert_clean(page_log)


# -- tablet width ----------------------------------------------------------------------------------
@pytest.fixture
def tablet(browser: object, web_server: LiveServer) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 768, "height": 1024})  # type: ignore[attr-defined]
    response = context.request.post(
        f"{web_server.base_url}/api/v1/auth/session",
        form={"username": "admin", "password": ADMIN_PASSWORD},
    )
    assert response.ok
    yield context.new_page()
    context.close()


def _no_horizontal_scroll(page: Page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_tablet_width_layouts(tablet: Page, web_server: LiveServer, seeded: Seeded) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tablet.goto(f"{web_server.base_url}/?PatientName=ui*")
    expect(tablet.locator("#results tbody tr").first).to_be_visible()
    _no_horizontal_scroll(tablet)
    _thumbnails_settled(tablet)
    tablet.screenshot(path=str(ARTIFACTS / "tablet-768-worklist.png"), full_page=True)
    tablet.goto(f"{web_server.base_url}/studies/{seeded.bravo}")
    _no_horizontal_scroll(tablet)
    _thumbnails_settled(tablet)
    tablet.screenshot(path=str(ARTIFACTS / "tablet-768-study.png"), full_page=True)
    tablet.goto(f"{web_server.base_url}/upload")
    _no_horizontal_scroll(tablet)
    tablet.screenshot(path=str(ARTIFACTS / "tablet-768-upload.png"), full_page=True)


def _thumbnails_settled(page: Page) -> None:
    """Before a screenshot: every thumbnail loaded (or failed, and shown as missing), the
    lazy ones below the fold too, so the artefact shows the page as a user sees it."""
    # Functions, not bare expressions: the page's CSP (script-src 'self') forbids eval.
    page.evaluate(
        "() => document.querySelectorAll('img.thumb').forEach(img => { img.loading = 'eager'; })"
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.thumb')].every(img => img.complete)",
        timeout=TIMEOUT,
    )


def test_laptop_width_worklist_screenshot(
    signed_in: Page, web_server: LiveServer, seeded: Seeded
) -> None:
    signed_in.goto(f"{web_server.base_url}/?PatientName=ui*")
    expect(signed_in.locator("#results tbody tr").first).to_be_visible()
    _no_horizontal_scroll(signed_in)
    _thumbnails_settled(signed_in)
    loaded = signed_in.evaluate(
        "() => [...document.querySelectorAll('img.thumb')].filter(i => i.naturalWidth > 0).length"
    )
    assert loaded >= 1  # the seeded studies are images: at least their thumbnails show
    signed_in.screenshot(path=str(ARTIFACTS / "laptop-1366-worklist.png"), full_page=True)


def test_http_api_still_refuses_without_session(web_server: LiveServer) -> None:
    assert httpx.get(f"{web_server.base_url}/api/v1/events", timeout=10).status_code == 401


def test_an_open_page_renews_its_session_before_it_runs_out(
    context: BrowserContext, signed_in: Page, web_server: LiveServer
) -> None:
    before = {c["name"]: c["value"] for c in context.cookies()}
    signed_in.goto(f"{web_server.base_url}/")
    # As if the access cookie were a minute from running out: the renewal marker goes (the
    # browser drops it in 1 s), and the page's session keeper must renew the session.
    context.add_cookies(
        [
            {
                "name": "dv_session_fresh",
                "value": "1",
                "url": web_server.base_url,
                "expires": time.time() + 1,
            }
        ]
    )
    signed_in.wait_for_timeout(1500)
    assert "dv_session_fresh" not in {c["name"] for c in context.cookies()}
    signed_in.wait_for_function(
        "() => document.cookie.includes('dv_session_fresh=')", timeout=RENEWAL_TIMEOUT
    )
    after = {c["name"]: c["value"] for c in context.cookies()}
    assert after["dv_access"] != before["dv_access"]
    assert after["dv_refresh"] != before["dv_refresh"]
    assert context.request.get(f"{web_server.base_url}/api/v1/auth/me").ok

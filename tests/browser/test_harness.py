"""The browser harness itself: Debian's Chromium starts and reaches the real server."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.browser.conftest import PageLog
from tests.support.server import LiveServer


def test_chromium_reaches_the_server_and_records_http_errors(
    page: Page, page_log: PageLog, web_server: LiveServer
) -> None:
    response = page.goto(f"{web_server.base_url}/healthz")
    assert response is not None and response.status == 200
    page.goto(f"{web_server.base_url}/dicom-web/studies")
    assert [status for _, status, _ in page_log.http_errors] == [401]

"""Browser fixtures: Debian's Chromium (never a downloaded browser) driven by Playwright.

Every page records the HTTP failures (4xx/5xx) and uncaught page errors it sees, and leaves a
screenshot under ``test-artifacts/screenshots/`` when its test ends, passed or failed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Response, sync_playwright

from tests.support.server import LiveServer, running_server

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
# Flags for a closed network and a root user (see the machine notes): no sandbox, no GPU, and no
# background connections to Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # WebGL through SwiftShader, so that viewers drawing with WebGL work without a GPU.
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


@dataclass
class PageLog:
    """What a page saw going wrong: HTTP errors (method, status, URL) and page errors."""

    http_errors: list[tuple[str, int, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def errors_matching(self, pattern: str) -> list[tuple[str, int, str]]:
        return [e for e in self.http_errors if re.search(pattern, e[2])]


# Module scope, not session: while Playwright's sync API is started, an event loop runs in this
# thread, and every asyncio/anyio test that pytest runs after the browser tests would fail.
@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Playwright]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: scripts/install-system.sh installs Debian's chromium")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real server, one per test module, with an empty archive."""
    data = tmp_path_factory.mktemp("web") / "data"
    with running_server(data) as live:
        yield live


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    yield context
    context.close()


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture
def page(
    context: BrowserContext, page_log: PageLog, request: pytest.FixtureRequest
) -> Iterator[Page]:
    page = context.new_page()

    def on_response(response: Response) -> None:
        if response.status >= 400:
            page_log.http_errors.append((response.request.method, response.status, response.url))

    page.on("response", on_response)
    page.on("pageerror", lambda error: page_log.page_errors.append(str(error)))
    page.on(
        "console",
        lambda message: (
            page_log.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("::", 1)[-1])
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    except Exception as exc:  # a crashed page still lets the test report its own failure
        print(f"no screenshot for {name}: {exc}")

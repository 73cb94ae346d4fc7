"""One real server (the shipped default model, SQLite log) and one headless Chromium for the web tests.

Chromium is Debian's (`/usr/bin/chromium`, installed by `make setup-browser` / .ci/run);
Playwright's own browser download is not used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.conftest import REPO
from tests.live import LiveServer, ready, start

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="session")
def web_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('web') / 'log.db'}"


@pytest.fixture(scope="session")
def web_server(
    web_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    server = ready(start(web_db, tmp_path_factory.mktemp("web-logs") / "server.log"))
    yield server
    server.stop()


# Module scope, not session: Playwright's sync API runs its event loop in the main thread for
# as long as it is open, and a test after it in the same process (under pytest-xdist, any
# file) found a running loop and could not call asyncio.run().
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `make setup-browser` (apt-get install -y chromium)"
        )
    b = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
    yield b
    b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def page(browser: Browser, web_server: LiveServer) -> Iterator[Page]:
    """A fresh page that fails the test on a script error, a CSP violation or any off-origin request."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, base_url=web_server.base
    )
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type == "error"
            else None
        ),
    )
    pg.on(
        "request",
        lambda r: (
            None
            if r.url.startswith((web_server.base, "data:", "blob:"))
            else problems.append(f"off-origin request: {r.url}")
        ),
    )
    yield pg
    context.close()
    assert problems == []

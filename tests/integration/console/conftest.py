"""A real headless Chromium for the console's tests: Debian's `chromium`, driven by Playwright.

One browser per module (each test opens its own page). Without Playwright or the chromium binary the
tests skip and say how to get them (`.ci/run` installs chromium when it runs as root). Set
MOORAGE_CONSOLE_SCREENSHOTS to a folder (docs/console) to save a screenshot of each page as it is tested.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from integration.console.browsing import CHROMIUM, LAPTOP

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the console tests need Playwright: pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        pytest.skip(
            f"the console tests need Chromium at {CHROMIUM}: apt-get install -y chromium "
            "(or point MOORAGE_TEST_CHROMIUM at one), then make test-browser"
        )
    from playwright.sync_api import expect

    # The console refreshes every few seconds and endpoints take seconds to start: wait up to 60 s.
    expect.set_options(timeout=60_000)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page (its own context: no sessionStorage shared with another test) that fails the test
    on any uncaught script error."""
    context = browser.new_context(viewport=LAPTOP)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.set_default_timeout(30_000)
    try:
        yield opened
    finally:
        context.close()
    assert errors == [], errors

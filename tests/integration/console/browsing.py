"""Helpers of the console's browser tests: where Chromium is, the viewports, screenshots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Page, ViewportSize

    from support.servers import RunningServer

CHROMIUM = Path(os.environ.get("MOORAGE_TEST_CHROMIUM", "/usr/bin/chromium"))
LAPTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}


def screenshot(page: Page, name: str, *, phone: bool = False, **options: Any) -> None:
    """Saves docs/console/<name>.png when MOORAGE_CONSOLE_SCREENSHOTS names a folder; else nothing."""
    folder = os.environ.get("MOORAGE_CONSOLE_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    if phone:
        page.set_viewport_size(PHONE)
    page.screenshot(path=str(Path(folder) / f"{name}.png"), **options)
    if phone:
        page.set_viewport_size(LAPTOP)


def console_url(server: RunningServer) -> str:
    return f"{server.url}/console/"

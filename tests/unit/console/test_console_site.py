"""The console's serving rules: when it is on, what it ships, and that it fetches nothing from elsewhere."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from moorage.console import ConsoleSite, console_enabled
from moorage.errors import ConfigError
from moorage.settings import Settings


@pytest.mark.parametrize(
    ("mode", "host", "auth_on", "expected"),
    [
        ("auto", "127.0.0.1", False, True),
        ("auto", "localhost", False, True),
        ("auto", "::1", False, True),
        ("auto", "[::1]", False, True),
        ("auto", "0.0.0.0", False, False),  # the network without authentication: off
        ("auto", "10.1.2.3", False, False),
        ("auto", "0.0.0.0", True, True),  # every call is signed: on
        ("off", "127.0.0.1", True, False),
        ("on", "0.0.0.0", False, True),  # said outright
    ],
)
def test_when_the_console_is_served(mode: str, host: str, auth_on: bool, expected: bool) -> None:
    assert console_enabled(mode, host, auth_on=auth_on) is expected  # type: ignore[arg-type]


def test_the_setting_comes_from_moorage_console() -> None:
    assert Settings.from_environ({}).console == "auto"
    assert Settings.from_environ({"MOORAGE_CONSOLE": "off"}).console == "off"
    with pytest.raises(ConfigError, match="MOORAGE_CONSOLE"):
        Settings.from_environ({"MOORAGE_CONSOLE": "maybe"})


def test_every_shipped_file_is_served_and_the_pages_modules_are_there() -> None:
    site = ConsoleSite()
    root = resources.files("moorage.console") / "static"
    shipped = sorted(_walk(root, ""))
    assert sorted(site.files) == shipped  # nothing in static/ is silently left out
    for name in ("index.html", "console.css", "js/main.js", "js/sigv4.js", "js/pages/endpoints.js"):
        assert name in site.files
    assert site.files["js/main.js"].content_type == "text/javascript; charset=utf-8"


def test_nothing_is_fetched_from_another_origin() -> None:
    """No CDN, no web font, no absolute URL: the only URL in the sources is the SVG namespace."""
    site = ConsoleSite()
    for name, served in site.files.items():
        text = served.body.decode()
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'`)]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)
        assert "innerHTML" not in text and "eval(" not in text, name


def _walk(folder: resources.abc.Traversable, prefix: str) -> list[str]:
    names: list[str] = []
    for entry in folder.iterdir():
        if entry.is_dir():
            names += _walk(entry, f"{prefix}{entry.name}/")
        else:
            names.append(f"{prefix}{entry.name}")
    return names

"""Serving the console's files: a fixed table built at start, so a path can only name a shipped file.

Every answer carries a Content-Security-Policy that allows nothing but this origin (no inline script,
no other host to connect to, no framing), `nosniff`, and an ETag so that a reload costs a 304.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from importlib import resources

from moorage.httpd import Request, Response
from moorage.settings import ConsoleMode

__all__ = ["PREFIX", "ConsoleSite", "console_enabled"]

PREFIX = "/console"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
]


def console_enabled(mode: ConsoleMode, host: str, *, auth_on: bool) -> bool:
    """`auto` serves the console with authentication on, or on a loopback bind; never otherwise, since
    without auth anyone who can reach a public bind could then drive the server from a browser."""
    if mode != "auto":
        return mode == "on"
    if auth_on:
        return True
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class _File:
    body: bytes
    content_type: str
    etag: str


class ConsoleSite:
    """GET/HEAD /console/… → a shipped file; /console → /console/ (the index)."""

    def __init__(self) -> None:
        self.files: dict[str, _File] = {}
        root = resources.files("moorage.console") / "static"
        self._load(root, "")

    def _load(self, folder: resources.abc.Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                self._load(entry, f"{prefix}{entry.name}/")
                continue
            suffix = entry.name[entry.name.rfind(".") :]
            content_type = _TYPES.get(suffix)
            if content_type is None:
                continue  # only the kinds of file the console is made of are ever served
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            self.files[f"{prefix}{entry.name}"] = _File(body, content_type, etag)

    @staticmethod
    def claims(path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    def serve(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _text(405, "The console's files are read with GET.", [("Allow", "GET, HEAD")])
        if request.path == PREFIX:
            return Response(301, b"", [("Location", PREFIX + "/"), *_SECURITY_HEADERS])
        name = request.path[len(PREFIX) + 1 :] or "index.html"
        found = self.files.get(name)
        if found is None:
            return _text(404, f"The console has no file {name[:200]!r}.")
        headers = [("Content-Type", found.content_type), ("ETag", found.etag), *_SECURITY_HEADERS]
        if found.etag in (request.headers.get("if-none-match") or ""):
            return Response(304, b"", headers)
        return Response(200, found.body, headers)  # the HTTP layer sends only the head for HEAD


def _text(status: int, message: str, extra: list[tuple[str, str]] | None = None) -> Response:
    headers = [("Content-Type", "text/plain; charset=utf-8"), *_SECURITY_HEADERS, *(extra or [])]
    return Response(status, (message + "\n").encode(), headers)

"""Browser safety: which Host names a server answers to, and which browser requests it refuses.

Two attacks need nothing but a web page the user happens to open (security probe 2, rows 61 and 62):

- DNS rebinding: a page at `attacker.example` re-points its own name to 127.0.0.1 and becomes
  same-origin with this server. Its requests then carry `Host: attacker.example`, so every request
  whose Host is not one of this server's own names is refused, with or without authentication.
- Cross-site "simple" requests: a page may POST `text/plain` to any address without a preflight
  (DeleteObjects, CreateMultipartUpload, InvokeEndpoint all run that way). Browsers mark such a
  request with `Origin` and `Sec-Fetch-Site`; while authentication is off, a request that comes from
  another origin by either mark is refused. With `--auth sigv4` a page cannot sign, so only the Host
  rule applies. Unchanged AWS clients send neither header and are never affected.

The decision is one pure function of the request's headers (`BrowserGuard.check`); each app renders
the refusal in its own API's error shape. An IP-literal Host is never the product of DNS rebinding,
so a server bound to every interface (0.0.0.0, ::) admits any IP literal as well as its own names.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from moorage.errors import ConfigError
from moorage.httpd.messages import Request
from moorage.httpd.notices import ThrottledLog

__all__ = ["BrowserGuard", "ServerNames", "split_authority"]

log = logging.getLogger("moorage.httpd")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_SAFE_FETCH_SITES = frozenset({"same-origin", "none"})  # "none": the user typed the URL or opened a bookmark
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAMES_VARIABLE = "MOORAGE_SERVER_NAMES"
_ONLY_OWN_ORIGIN = (
    "while authentication is off, this server answers only its own origin, so that no web page can "
    "call it. Call it from boto3, the aws CLI or the SDK, or start the server with --auth sigv4."
)


def split_authority(value: str) -> tuple[str, int | None] | None:
    """`host[:port]` or `[v6][:port]` → (host in canonical form, port); None when it is not one.

    The canonical form is lower case without a trailing dot for names, and the compressed address
    (without brackets) for IP literals, so that equal hosts compare equal.
    """
    value = value.strip()
    if not value or any(c in value for c in " ,/\\@?#\t"):
        return None
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket:
            return None
        try:
            return str(ipaddress.IPv6Address(host)), _port(rest)
        except ValueError:
            return None
    host, colon, rest = value.partition(":")
    if ":" in rest or not host:
        return None  # a bare IPv6 address is not a valid Host
    try:
        port = _port(colon + rest)
    except ValueError:
        return None
    try:
        return str(ipaddress.IPv4Address(host)), port
    except ValueError:
        return host.lower().rstrip("."), port


def _port(rest: str) -> int | None:
    """The port of `:<digits>`; None for "" or ":"; ValueError when it is not one."""
    if rest in ("", ":"):
        return None
    if not rest.startswith(":") or not rest[1:].isdigit() or int(rest[1:]) > 65535:
        raise ValueError(f"not a port: {rest!r}")
    return int(rest[1:])


def _address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_loopback(address: IPAddress) -> bool:
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


class ServerNames:
    """The names a server answers to: localhost and every loopback address, the address it is bound
    to, and the names an operator lists in MOORAGE_SERVER_NAMES ("*" there turns the Host check off,
    for a server behind a proxy that checks Host itself)."""

    def __init__(self, bind_host: str, extra: Iterable[str] = ()) -> None:
        self.any_name = False
        self.names: set[str] = {"localhost"}
        self.addresses: set[IPAddress] = set()
        self.shown: list[str] = ["127.0.0.1", "localhost", "[::1]"]
        bind = bind_host.strip().strip("[]")
        bound = _address(bind)
        self.wildcard = bound is not None and bound.is_unspecified
        if self.wildcard:
            self._add(socket.gethostname(), origin="")
            self.shown.append("any IP address")
        else:
            self._add(bind, origin="")
        for item in extra:
            if item.strip() == "*":
                self.any_name = True
            else:
                self._add(item, origin=_NAMES_VARIABLE)

    def _add(self, item: str, *, origin: str) -> None:
        item = item.strip()
        bare = _address(item.strip("[]"))
        parsed = split_authority(f"[{bare}]" if bare is not None and bare.version == 6 else item)
        if parsed is None:
            if origin:
                raise ConfigError(f"{origin}: {item!r} is not a host name or address")
            return
        host = parsed[0]
        address = _address(host)
        if address is not None and _is_loopback(address):
            return  # admitted anyway
        if address is not None:
            self.addresses.add(address)
        else:
            self.names.add(host)
        shown = f"[{host}]" if address is not None and address.version == 6 else host
        if shown not in self.shown:
            self.shown.append(shown)

    def admits(self, host: str) -> bool:
        """Whether a canonical host (from `split_authority`) is one of this server's names."""
        if self.any_name or host in self.names:
            return True
        address = _address(host)
        if address is None:
            return False
        return _is_loopback(address) or self.wildcard or address in self.addresses

    def describe(self) -> str:
        return ", ".join(self.shown)


class BrowserGuard:
    """Decides, from the headers alone, whether a request may reach the app (see the module docstring).

    `refuse_cross_site` is on while authentication is off. Refusals are logged once per client and
    kind per minute.
    """

    def __init__(self, names: ServerNames, *, refuse_cross_site: bool) -> None:
        self.names = names
        self.refuse_cross_site = refuse_cross_site
        self.notices = ThrottledLog(log)

    @classmethod
    def for_server(cls, bind_host: str, server_names: Iterable[str], *, auth_on: bool) -> BrowserGuard:
        return cls(ServerNames(bind_host, server_names), refuse_cross_site=not auth_on)

    def check(self, request: Request) -> str | None:
        """None if the request may proceed, else a message that says why not and what to do."""
        message, kind = self._decide(request)
        if message is not None:
            self.notices.warning(request.client[0], kind, f"{request.method} {request.path}: {message}")
        return message

    def _decide(self, request: Request) -> tuple[str | None, str]:
        host_header = request.headers.get("host")
        host: tuple[str, int | None] | None = None
        if host_header is not None:  # HTTP/1.0 may omit it; no browser does
            host = split_authority(host_header)
            if host is None or not self.names.admits(host[0]):
                shown = host[0] if host is not None else host_header[:200]
                return (
                    f"Host header {shown!r} is not one of this server's names ({self.names.describe()}); "
                    f"if clients reach this server by that name, add it to {_NAMES_VARIABLE}.",
                    "a foreign Host",
                )
        if not self.refuse_cross_site:
            return None, ""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site.strip().lower() not in _SAFE_FETCH_SITES:
            return (
                f"Cross-site request refused (Sec-Fetch-Site: {site.strip()[:40]}): {_ONLY_OWN_ORIGIN}",
                "a cross-site request",
            )
        origin = request.headers.get("origin")
        if origin is not None and not self._same_origin(origin, host):
            return (
                f"Cross-origin request refused (Origin: {origin.strip()[:200]}): {_ONLY_OWN_ORIGIN}",
                "a cross-origin request",
            )
        return None, ""

    def _same_origin(self, origin: str, host: tuple[str, int | None] | None) -> bool:
        """Whether `Origin` names the scheme-host-port the browser sent this request to."""
        parts = urlsplit(origin.strip())
        default = _DEFAULT_PORTS.get(parts.scheme)
        if default is None or parts.path or parts.query:  # "null", file:, data: and other opaque origins
            return False
        named = split_authority(parts.netloc)
        if named is None or not self.names.admits(named[0]):
            return False
        if host is None:
            return True
        return named[0] == host[0] and (named[1] or default) == (host[1] or default)

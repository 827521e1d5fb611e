"""Which hosts and addresses an http(s) model source may reach: the SSRF guard for ModelDataUrl.

A model URL is attacker-controlled input that makes the server open a connection, so every hop
(the first request and each redirect) is checked here before any byte is sent: the host against
`ArtifactPolicy.allowed_http_hosts`, then every address the name resolves to against the ranges that
are not the public internet (loopback, private, link-local, cloud metadata, ...). The caller then
connects to exactly the address vetted here, so a DNS answer that changes between the check and
the connection (rebinding) cannot redirect it. See reliability.md §2.2 "SSRF through ModelDataUrl".
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from moorage.errors import ArtifactSourceError
from moorage.settings import ArtifactPolicy

__all__ = [
    "DnsUnavailable",
    "HttpTarget",
    "address_problem",
    "host_is_allowlisted",
    "precheck_http_target",
    "vet_http_target",
]

IPAddress = IPv4Address | IPv6Address

# Instance metadata services: AWS/Azure/GCP/OCI (v4), AWS over IPv6, and the ECS task endpoint.
_METADATA = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("169.254.170.2"),
    }
)
_NAT64 = IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")
_THIS_NETWORK = IPv4Network("0.0.0.0/8")


class DnsUnavailable(Exception):
    """The resolver failed temporarily (EAI_AGAIN): worth another try, unlike an unknown name."""


@dataclass(frozen=True)
class HttpTarget:
    """One vetted hop: connect to `address`, and speak to `host` (Host header, TLS SNI and cert)."""

    host: str
    port: int
    address: str


def address_problem(address: IPAddress) -> str | None:
    """Why a connection to `address` would not reach the public internet, or None when it would."""
    if address in _METADATA:
        return "a cloud metadata address"
    if isinstance(address, IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            problem = address_problem(embedded)
            return f"{problem} (IPv4 {embedded} inside IPv6)" if problem else None
    if address.is_unspecified or (isinstance(address, IPv4Address) and address in _THIS_NETWORK):
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, IPv6Address) and address.is_site_local:
        return "a site-local address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "an address that is not publicly routable"
    return None


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address that an IPv6 form routes to: mapped, 6to4, NAT64 or the old compatible form."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def host_is_allowlisted(host: str, port: int, allowed: tuple[str, ...]) -> bool:
    """Whether `host:port` matches an entry of `allowed_http_hosts` ("host", "host:port", "[v6]:port")."""
    host = host.lower().strip("[]")
    for entry in allowed:
        entry_host, entry_port = _split_host_port(entry.strip().lower())
        if entry_host == host and (entry_port is None or entry_port == port):
            return True
    return False


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, int(port) if port.isdigit() else None
    return entry, None  # a bare name, an IPv4 address or an unbracketed IPv6 address


def vet_http_target(host: str, port: int, *, url: str, policy: ArtifactPolicy) -> HttpTarget:
    """Decide whether `url` (whose authority is host:port) may be fetched, and which address to use.

    Raises ArtifactSourceError naming the URL when the policy refuses it, and DnsUnavailable when
    the name could not be resolved for a temporary reason.
    """
    host = host.lower().strip("[]")
    allowlisted = _check_allowlist(host, port, url, policy)
    addresses = _resolve(host, port, url)
    if not allowlisted:
        _check_addresses(host, addresses, url, policy)
    return HttpTarget(host=host, port=port, address=str(addresses[0]))


def precheck_http_target(
    host: str, port: int, *, url: str, policy: ArtifactPolicy, resolve_timeout_s: float = 2.0
) -> None:
    """The same decision as `vet_http_target`, taken early (at CreateModel) and without connecting.

    A literal address is judged as it is; a name is resolved for at most `resolve_timeout_s`. A name
    that does not resolve (or not in time) passes here: the fetch resolves it again and decides.
    Raises ArtifactSourceError when the policy refuses the URL.
    """
    host = host.lower().strip("[]")
    if _check_allowlist(host, port, url, policy):
        return
    try:
        addresses: list[IPAddress] | None = [ipaddress.ip_address(host.partition("%")[0])]
    except ValueError:
        addresses = _resolve_within(host, port, url, resolve_timeout_s)
    if addresses:
        _check_addresses(host, addresses, url, policy)


def _check_allowlist(host: str, port: int, url: str, policy: ArtifactPolicy) -> bool:
    """Whether the host is allowlisted; ArtifactSourceError when a non-empty allowlist leaves it out."""
    allowlisted = host_is_allowlisted(host, port, policy.allowed_http_hosts)
    if policy.allowed_http_hosts and policy.block_private_addresses and not allowlisted:
        raise ArtifactSourceError(
            f"model data URL {url} is not allowed: host {host!r} is not in MOORAGE_ALLOWED_HTTP_HOSTS "
            f"({', '.join(policy.allowed_http_hosts)})"
        )
    return allowlisted


def _check_addresses(host: str, addresses: list[IPAddress], url: str, policy: ArtifactPolicy) -> None:
    if not policy.block_private_addresses:
        return
    for address in addresses:
        problem = address_problem(address)
        if problem is not None:
            raise ArtifactSourceError(
                f"model data URL {url} is not allowed: {host} resolves to {address}, {problem}. "
                "Add the host to MOORAGE_ALLOWED_HTTP_HOSTS if this server is meant to fetch from it"
            )


def _resolve_within(host: str, port: int, url: str, timeout_s: float) -> list[IPAddress] | None:
    """`_resolve` on a helper thread, so that a hanging resolver holds the caller `timeout_s` at most."""
    found: list[list[IPAddress]] = []

    def run() -> None:
        with contextlib.suppress(ArtifactSourceError, DnsUnavailable):
            found.append(_resolve(host, port, url))

    thread = threading.Thread(target=run, name="netguard-resolve", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return found[0] if found else None


def _resolve(host: str, port: int, url: str) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise DnsUnavailable(f"could not resolve {host}: {exc.strerror}") from exc
        raise ArtifactSourceError(f"could not resolve the host of {url}: {exc.strerror}") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ArtifactSourceError(f"could not resolve the host of {url}: no addresses")
    return addresses

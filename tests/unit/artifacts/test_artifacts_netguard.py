"""SSRF classification of addresses and the allowlist rules for http(s) model sources."""

from __future__ import annotations

import ipaddress
import re

import pytest

from moorage.artifacts.netguard import address_problem, host_is_allowlisted, vet_http_target
from moorage.errors import ArtifactSourceError
from moorage.settings import ArtifactPolicy


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("::ffff:169.254.169.254", "a cloud metadata address (IPv4 169.254.169.254 inside IPv6)"),
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address (IPv4 127.0.0.1 inside IPv6)"),
        ("::ffff:10.1.2.3", "a private address (IPv4 10.1.2.3 inside IPv6)"),
        ("2002:c0a8:0101::1", "a private address (IPv4 192.168.1.1 inside IPv6)"),
        ("64:ff9b::a00:1", "a private address (IPv4 10.0.0.1 inside IPv6)"),
        ("10.0.0.1", "a private address"),
        ("172.16.5.4", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fc00::1", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("0.1.2.3", "an unspecified address"),
        ("::", "an unspecified address"),
        ("240.0.0.1", "a private address"),
        ("fec0::1", "a site-local address"),
        ("100.64.0.1", "an address that is not publicly routable"),
    ],
)
def test_non_public_addresses_are_classified(address: str, problem: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("host", "port", "allowed", "expected"),
    [
        ("models.example.com", 443, ("models.example.com",), True),
        ("Models.Example.com", 443, ("models.example.com:443",), True),
        ("models.example.com", 8443, ("models.example.com:443",), False),
        ("models.example.com.evil", 443, ("models.example.com",), False),
        ("127.0.0.1", 8000, ("127.0.0.1:8000",), True),
        ("127.0.0.1", 8001, ("127.0.0.1:8000",), False),
        ("::1", 8000, ("[::1]:8000",), True),
        ("[::1]", 8000, ("::1",), True),
        ("::1", 8000, ("[::1]:9000",), False),
    ],
)
def test_allowlist_matches_exact_host_or_host_and_port(
    host: str, port: int, allowed: tuple[str, ...], expected: bool
) -> None:
    assert host_is_allowlisted(host, port, allowed) is expected


def test_loopback_is_refused_by_default_and_allowed_when_listed() -> None:
    url = "http://127.0.0.1:8000/m.tar.gz"
    with pytest.raises(ArtifactSourceError) as caught:
        vet_http_target("127.0.0.1", 8000, url=url, policy=ArtifactPolicy())
    assert caught.value.message.startswith(
        f"model data URL {url} is not allowed: 127.0.0.1 resolves to 127.0.0.1"
    )
    assert "a loopback address" in caught.value.message

    target = vet_http_target(
        "127.0.0.1", 8000, url=url, policy=ArtifactPolicy(allowed_http_hosts=("127.0.0.1:8000",))
    )
    assert (target.host, target.port, target.address) == ("127.0.0.1", 8000, "127.0.0.1")


def test_metadata_address_is_refused_even_with_a_list_of_other_hosts() -> None:
    policy = ArtifactPolicy(allowed_http_hosts=("models.example.com",))
    with pytest.raises(ArtifactSourceError, match="is not in MOORAGE_ALLOWED_HTTP_HOSTS"):
        vet_http_target("169.254.169.254", 80, url="http://169.254.169.254/latest", policy=policy)


def test_public_hosts_outside_a_non_empty_allowlist_are_refused() -> None:
    policy = ArtifactPolicy(allowed_http_hosts=("models.example.com",))
    with pytest.raises(
        ArtifactSourceError, match=re.escape("host '8.8.8.8' is not in MOORAGE_ALLOWED_HTTP_HOSTS")
    ):
        vet_http_target("8.8.8.8", 443, url="https://8.8.8.8/m.tar.gz", policy=policy)


def test_turning_off_the_private_address_block_allows_loopback() -> None:
    policy = ArtifactPolicy(block_private_addresses=False)
    assert vet_http_target("::1", 80, url="http://[::1]/m", policy=policy).address == "::1"


def test_ipv6_mapped_loopback_literal_is_refused() -> None:
    with pytest.raises(ArtifactSourceError, match=re.escape("IPv4 127.0.0.1 inside IPv6")):
        vet_http_target("::ffff:127.0.0.1", 80, url="http://[::ffff:127.0.0.1]/m", policy=ArtifactPolicy())

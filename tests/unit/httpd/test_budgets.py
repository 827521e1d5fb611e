"""Connections as budgets: the per-client cap and the request-line deadline, over raw sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from moorage.httpd import Request, Response
from moorage.httpd.server import client_key
from moorage.settings import HttpLimits
from support.background import serve_in_thread
from support.sockets import read_until_closed

LIMITS = HttpLimits(
    header_timeout_s=5.0,
    keepalive_timeout_s=30.0,
    max_connections=8,
    max_connections_per_client=3,
    request_line_timeout_s=0.3,
)


async def app(request: Request) -> Response:
    return Response(200, b"ok")


@pytest.fixture(scope="module")
def address() -> Iterator[tuple[str, int]]:
    with serve_in_thread(app, LIMITS) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def connect(address: tuple[str, int], source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(address, timeout=5, source_address=(source, 0))


def exchange(sock: socket.socket) -> bytes:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock.recv(4096)


def test_one_address_holds_at_most_its_share(address: tuple[str, int]) -> None:
    held = [connect(address, "127.0.0.3") for _ in range(LIMITS.max_connections_per_client)]
    try:
        for sock in held:  # each is registered (and kept alive) before the extra one arrives
            assert exchange(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        with connect(address, "127.0.0.3") as extra:
            refused = read_until_closed(extra, 5.0)
        assert refused is not None and refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert refused.endswith(b'Too many connections from 127.0.0.3; close idle ones or retry later."}')
        with connect(address, "127.0.0.4") as other:  # another address still gets in
            assert exchange(other).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        for sock in held:
            sock.close()


def open_budget(address: tuple[str, int], source: str) -> list[socket.socket]:
    """A client's whole budget of working connections, once the server has noticed earlier closes."""
    deadline = time.monotonic() + 5
    while True:
        socks = [connect(address, source) for _ in range(LIMITS.max_connections_per_client)]
        if all(exchange(sock).startswith(b"HTTP/1.1 200 OK\r\n") for sock in socks):
            return socks
        for sock in socks:
            sock.close()
        assert time.monotonic() < deadline, "closed connections still count against their client"
        time.sleep(0.05)


def test_closed_connections_return_to_their_clients_budget(address: tuple[str, int]) -> None:
    for _ in range(5):
        for sock in open_budget(address, "127.0.0.5"):
            sock.close()


def test_a_silent_new_connection_is_closed_at_the_request_line_deadline(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        assert read_until_closed(sock, 5.0) == b""  # well before the 30 s keep-alive


def test_a_partial_request_line_gets_408(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(b"GET /some/long/pa")
        answer = read_until_closed(sock, 5.0)
    assert answer is not None and answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert answer.endswith(b'"Request line was not received in time."}')


def test_a_whole_request_line_then_the_header_deadline_applies(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127")
        assert read_until_closed(sock, 1.0) is None  # past the 0.3 s line deadline, within the 5 s header one
        sock.sendall(b".0.0.1\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_kept_alive_connection_waits_the_keep_alive_time_not_the_line_deadline(
    address: tuple[str, int],
) -> None:
    with connect(address) as sock:
        assert exchange(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        assert read_until_closed(sock, 1.0) is None
        assert exchange(sock).startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_the_budget_of_an_address(peer: str, key: str) -> None:
    assert client_key(peer) == key

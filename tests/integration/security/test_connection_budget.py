"""Connections as budgets (security probe 2, row 53; reproduction W3).

Before this, one client could open every connection slot with idle sockets (no request, so no
credentials needed) and keep `--auth sigv4` servers answering 503 to correctly signed requests. Now
one client address may hold only MOORAGE_MAX_CONNECTIONS_PER_CLIENT connections, and a new
connection that sends no request line within MOORAGE_REQUEST_LINE_TIMEOUT is closed.

All test traffic is loopback, so the flood comes from 127.0.0.2 (a loopback address of its own,
hence a client of its own to the server) while the legitimate client uses 127.0.0.1.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from support.servers import RunningServer, start_server, wait_until_gone
from support.signed import Key, create_key
from support.sockets import read_until_closed

pytestmark = pytest.mark.slow

FLOOD_FROM = "127.0.0.2"
TOTAL = 64
PER_CLIENT = 16


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 0


def flood(url: str, count: int) -> list[socket.socket]:
    """`count` connections from FLOOD_FROM that send nothing at all."""
    return [
        socket.create_connection(address(url), timeout=30, source_address=(FLOOD_FROM, 0))
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Key]]:
    """--auth sigv4 with small caps, and a request-line deadline long enough to play no part."""
    data = tmp_path_factory.mktemp("budget-capped") / "data"
    admin = create_key(data)
    server = start_server(
        data,
        args=["--auth", "sigv4"],
        env={
            "MOORAGE_MAX_CONNECTIONS": str(TOTAL),
            "MOORAGE_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
            "MOORAGE_REQUEST_LINE_TIMEOUT": "120",
            "MOORAGE_KEEPALIVE_TIMEOUT": "120",
        },
    )
    yield server, admin
    server.stop()
    assert not wait_until_gone(server.tag), server.log()[-3000:]


@pytest.mark.parametrize("port", ["main", "s3"])
def test_an_idle_flood_from_one_address_leaves_room_for_signed_requests(
    capped: tuple[RunningServer, Key], port: str
) -> None:
    server, admin = capped
    url = server.url if port == "main" else server.s3_url or ""
    held = flood(url, TOTAL)  # as many as the whole server may hold
    try:
        answers = [read_until_closed(sock, 0.5) for sock in held]
        kept = [answer for answer in answers if answer is None]
        refused = [answer for answer in answers if answer is not None]
        assert len(kept) == PER_CLIENT
        assert len(refused) == TOTAL - PER_CLIENT
        for answer in refused:
            if answer:  # else a byte crossed the close and the kernel reset the connection
                assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
                assert answer.endswith(
                    b'{"__type":"ServiceUnavailable","Message":'
                    b'"Too many connections from 127.0.0.2; close idle ones or retry later."}'
                )
        assert sum(1 for answer in refused if answer) >= len(refused) * 0.8
        # The flood is still held open, and a signed request from another address is served.
        if port == "main":
            assert server.client("sagemaker", credentials=admin).list_models()["Models"] == []
        else:
            assert server.client("s3", credentials=admin).list_buckets()["Buckets"] == []
        assert all(
            read_until_closed(sock, 0.01) is None
            for sock, answer in zip(held, answers, strict=True)
            if answer is None
        )
    finally:
        for sock in held:
            sock.close()
    assert "refused a connection from 127.0.0.2" in server.log()
    assert server.log().count("refused a connection from 127.0.0.2") <= 2  # once a minute, per port


@pytest.fixture(scope="module")
def deadline_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """No auth; the global cap is small, and connections must send a request line within 1 s."""
    server = start_server(
        tmp_path_factory.mktemp("budget-deadline") / "data",
        env={
            "MOORAGE_MAX_CONNECTIONS": str(PER_CLIENT),
            "MOORAGE_REQUEST_LINE_TIMEOUT": "1",
            "MOORAGE_KEEPALIVE_TIMEOUT": "120",
        },
    )
    yield server
    server.stop()
    assert not wait_until_gone(server.tag), server.log()[-3000:]


def test_connections_without_a_request_line_are_closed_and_service_returns(
    deadline_server: RunningServer,
) -> None:
    held = flood(deadline_server.url, PER_CLIENT)  # every slot of the server
    try:
        held[0].sendall(b"GET /pi")  # part of a request line, and then nothing
        # Well past the 1 s deadline but far short of the 120 s keep-alive: the server has hung up.
        deadline = time.monotonic() + 30
        answers = [read_until_closed(sock, max(0.01, deadline - time.monotonic())) for sock in held]
        assert answers[0] is not None and answers[0].startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert answers[0].endswith(
            b'{"__type": "ValidationError", "Message": "Request line was not received in time."}'
        )
        assert answers[1:] == [b""] * (PER_CLIENT - 1)
    finally:
        for sock in held:
            sock.close()
    assert deadline_server.client("sagemaker").list_models()["Models"] == []
    # A connection that sends its request in time is served as always, and kept alive after.
    with socket.create_connection(address(deadline_server.url), timeout=30) as sock:
        sock.sendall(f"GET /ping HTTP/1.1\r\nHost: {urlsplit(deadline_server.url).netloc}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
        assert read_until_closed(sock, 1.5) is None  # past the request-line deadline, still open

"""The HTTP server's promises, checked over raw sockets: limits, deadlines, keep-alive, pipelining."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import pytest

from moorage.errors import PayloadTooLarge
from moorage.httpd import Request, Response
from moorage.settings import HttpLimits
from support.background import serve_in_thread

LIMIT = 1000


async def app(request: Request) -> Response:
    if request.path == "/crlf":
        return Response(200, b"x", [("X-Evil", "a\r\nSet-Cookie: stolen=1")])
    if request.path == "/slow":
        await asyncio.sleep(0.2)
    try:
        body = await request.body(LIMIT)
    except PayloadTooLarge as exc:
        return Response(413, exc.message.encode(), close=True)
    payload = {"method": request.method, "path": request.path, "n": len(body), "query": request.query_string}
    return Response(200, json.dumps(payload).encode(), [("Content-Type", "application/json")])


LIMITS = HttpLimits(header_timeout_s=0.3, body_idle_timeout_s=0.3, keepalive_timeout_s=0.5, max_connections=3)


@pytest.fixture(scope="module")
def address() -> Iterator[tuple[str, int]]:
    with serve_in_thread(app, LIMITS) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=5)
    return sock


_leftover: dict[int, bytes] = {}


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read exactly one response (Content-Length framed); bytes of the next one are kept for later."""
    data = _leftover.pop(sock.fileno(), b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    if rest[length:]:
        _leftover[sock.fileno()] = rest[length:]
    return status, headers, rest[:length]


def is_closed(sock: socket.socket, within: float = 2.0) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_keep_alive_serves_two_requests_on_one_connection(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        for body in (b"hello", b"hello world"):
            sock.sendall(
                b"POST /echo?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            status, headers, payload = read_response(sock)
            assert status == 200
            assert json.loads(payload) == {"method": "POST", "path": "/echo", "n": len(body), "query": "x=1"}
            assert headers["content-type"] == "application/json"


def test_declared_body_over_the_cap_is_refused_before_it_is_sent(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1))
        status, headers, payload = read_response(sock)
        assert status == 413
        assert payload == f"HTTP content length exceeded {LIMIT} bytes.".encode()
        assert headers["connection"] == "close"
        assert is_closed(sock)


def test_chunked_body_growing_past_the_cap_is_refused(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"%x\r\n%s\r\n" % (600, b"a" * 600))
        sock.sendall(b"%x\r\n%s\r\n" % (600, b"b" * 600))
        status, _, _ = read_response(sock)
        assert status == 413


def test_chunked_body_within_the_cap_is_reassembled(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
        )
        status, _, payload = read_response(sock)
        assert status == 200
        assert json.loads(payload)["n"] == 7


def test_headers_that_trickle_in_are_cut_off(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\n")
        started = time.monotonic()
        status, _, payload = read_response(sock)
        assert status == 408
        assert b"headers were not received in time" in payload
        assert time.monotonic() - started < 2.0
        assert is_closed(sock)


def test_a_stalled_body_is_cut_off(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        assert is_closed(sock, within=3.0)


def test_idle_keep_alive_connections_are_closed(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock)[0] == 200
        assert is_closed(sock, within=3.0)


def test_pipelined_requests_are_answered_in_order(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(
            b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\na"
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nbb"
        )
        first = json.loads(read_response(sock)[2])
        second = json.loads(read_response(sock)[2])
        assert (first["path"], first["n"]) == ("/slow", 1)
        assert (second["path"], second["n"]) == ("/echo", 2)


def test_expect_continue_is_answered_when_the_body_is_wanted(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        sock.settimeout(2)
        interim = sock.recv(1024)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        status, _, payload = read_response(sock)
        assert status == 200
        assert json.loads(payload)["n"] == 4


def test_a_header_with_crlf_is_never_written(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(b"GET /crlf HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, _ = read_response(sock)
        assert status == 500
        assert "set-cookie" not in headers


def test_malformed_requests_get_400(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, _ = read_response(sock)
        assert status == 400


def test_head_gets_headers_without_a_body(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(b"HEAD /echo HTTP/1.1\r\nHost: t\r\n\r\nGET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, _ = read_response_head_only(sock)
        assert status == 200 and int(headers["content-length"]) > 0
        status, _, payload = read_response(sock)
        assert status == 200 and json.loads(payload)["method"] == "GET"


def read_response_head_only(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(1)
    lines = data.decode("latin-1").strip().split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, b""


def test_connections_over_the_cap_get_503(address: tuple[str, int]) -> None:
    held = [connect(address) for _ in range(LIMITS.max_connections)]
    try:
        for sock in held:  # make sure each is registered before the extra one arrives
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(sock)[0] == 200
        with connect(address) as extra:
            status, _, payload = read_response(extra)
            assert status == 503
            assert b"Too many connections" in payload
    finally:
        for sock in held:
            sock.close()

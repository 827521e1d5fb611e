"""Fuzzing the HTTP/1.1 parser path: random bytes, and requests with random parts, sent to the real server.

Whatever arrives, the server answers with an HTTP/1.1 status line (a 4xx for what it cannot parse) or
closes the connection; the application never sees a request the parser did not accept whole (each
request it sees has the whole body its Content-Length declared, and every 200 on the wire is one of
those requests); no error escapes into the log; and the next well-formed request is answered as usual.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moorage.httpd import Request, Response
from moorage.settings import HttpLimits
from support.background import serve_in_thread

# caplog is shared by all examples on purpose: no example may log an error.
FAST = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
LIMITS = HttpLimits(
    max_request_bytes=1024,
    max_header_bytes=2048,
    header_timeout_s=1.0,
    body_idle_timeout_s=1.0,
    keepalive_timeout_s=1.0,
)


# What the application saw, request by request: (the declared Content-Length, the body it received).
SEEN: list[tuple[str | None, int]] = []


async def app(request: Request) -> Response:
    body = await request.body(LIMITS.max_request_bytes)
    SEEN.append((request.headers.get("content-length"), len(body)))
    return Response(200, b"ok:%d" % len(body), [("Content-Type", "text/plain")])


@pytest.fixture(scope="module")
def address() -> Iterator[tuple[str, int]]:
    with serve_in_thread(app, LIMITS) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        yield host, int(port)


def exchange(address: tuple[str, int], data: bytes) -> bytes:
    """Send `data`, then end the stream; everything the server sent back before closing."""
    with socket.create_connection(address, timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may hang up before it has read everything
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


def statuses(answer: bytes) -> list[int]:
    """The status of every response in `answer` (pipelined requests may get several)."""
    found = []
    for line in answer.split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 "):
            found.append(int(line.split()[1]))
    return found


def still_serving(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"ok:2"), answer


def check(address: tuple[str, int], data: bytes, caplog: pytest.LogCaptureFixture) -> None:
    SEEN.clear()
    answer = exchange(address, data)
    seen = list(SEEN)
    if answer:
        assert answer.startswith(b"HTTP/1.1 "), answer[:80]
        assert all(status == 200 or 400 <= status < 500 for status in statuses(answer)), answer[:300]
    for declared, received in seen:  # a declared length is one the parser accepted: all of it arrived
        assert declared is None or int(declared) == received, (declared, received, data[:300])
    # (a request the app saw may go unanswered: the client had already half-closed, so the server hung up)
    assert statuses(answer).count(200) <= len(seen), (seen, answer[:300])
    still_serving(address)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("moorage")]
    assert errors == [], [r.getMessage() for r in errors]


@FAST
@given(st.binary(max_size=512))
def test_random_bytes_get_a_4xx_or_a_closed_connection(
    address: tuple[str, int], caplog: pytest.LogCaptureFixture, data: bytes
) -> None:
    check(address, data, caplog)


token = st.text(st.sampled_from("abcXYZ-_09!#$%&'*+.^`|~"), min_size=1, max_size=12)
header_value = st.binary(max_size=40)
requests = st.builds(
    lambda method, target, version, headers, body, ending: (
        method
        + b" "
        + target
        + b" "
        + version
        + b"\r\n"
        + b"".join(name.encode() + sep + value + b"\r\n" for name, sep, value in headers)
        + ending
        + body
    ),
    st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"CONNECT", b"BREW", b"G T", b""]),
    st.sampled_from([b"/", b"/x?y=1", b"*", b"http://a/b", b"/%zz", b"/\x00", b"//..//"])
    | st.binary(max_size=20),
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b"http/1.1", b""]),
    st.lists(
        st.tuples(
            st.sampled_from(["Content-Length", "Transfer-Encoding", "Expect", "Connection", "Host"]) | token,
            st.sampled_from([b": ", b":", b" : ", b"\r\n "]),
            st.sampled_from([b"chunked", b"100-continue", b"close", b"5", b"-1", b"99999999999999999999"])
            | header_value,
        ),
        max_size=5,
    ),
    st.sampled_from(
        [b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n", b"0\r\n\r\nGET / HTTP/1.1\r\n\r\n"]
    )
    | st.binary(max_size=64),
    st.sampled_from([b"\r\n", b"\n", b""]),
)


@FAST
@given(requests)
def test_requests_with_random_parts_get_an_answer_or_a_closed_connection(
    address: tuple[str, int], caplog: pytest.LogCaptureFixture, data: bytes
) -> None:
    check(address, data, caplog)

"""Matrix row 13: slowloris, slow bodies, slow readers and a flood of idle connections.

The server runs with a 1 s header deadline and a 1 s body idle deadline (MOORAGE_HEADER_TIMEOUT,
MOORAGE_BODY_IDLE_TIMEOUT) and a cap of 48 connections. What the tests assert, and no more:
connections that trickle their headers are closed between the deadline and 10 s, and at least 80 % of
them read SageMaker's 408 first (the others were reset by the kernel as a byte crossed the close);
connections that trickle their body are closed likewise, with a 408 or no answer (the handler was
already reading the body, so the server hangs up); a boto3 probe gets every answer meanwhile; past the
cap a new connection gets a 503 while the held connections are still open (it does not wait for one to
close), and so does boto3; a client that never reads a large answer leaves the endpoint's one worker
free for the probe; and the server holds no connection of a client that has gone.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from integration.reliability.rig import (
    SlowClients,
    delete_endpoint,
    deploy,
    error_of,
    idle_connections,
    invoke,
    one_attempt,
    server_connections,
    server_peers,
)
from support.servers import RunningServer, http_get, start_server, wait_until_gone

pytestmark = pytest.mark.slow

CAP = 48


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("slow-clients") / "data",
        env={
            "MOORAGE_HEADER_TIMEOUT": "1",
            "MOORAGE_BODY_IDLE_TIMEOUT": "1",
            "MOORAGE_KEEPALIVE_TIMEOUT": "60",
            "MOORAGE_MAX_CONNECTIONS": str(CAP),
        },
    )
    yield running
    running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


@pytest.fixture(scope="module")
def endpoint(server: RunningServer, artifacts: Any) -> Iterator[str]:
    sm = server.client("sagemaker")
    name = deploy(sm, f"file://{artifacts.fault_tar}")
    yield name
    delete_endpoint(sm, name)


def address(server: RunningServer) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def probe(server: RunningServer, endpoint: str, count: int) -> float:
    """`count` invocations and pings on fresh connections; all must succeed. Returns the slowest, in s."""
    slowest = 0.0
    for index in range(count):
        runtime = one_attempt(server, read_timeout=10)
        started = time.monotonic()
        assert invoke(runtime, endpoint, action="echo", index=index)["echo"]["index"] == index
        assert http_get(server.url + "/ping")[0] == 200
        slowest = max(slowest, time.monotonic() - started)
        runtime.close()
    return slowest


def wait_connections(server: RunningServer, at_most: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while (count := server_connections(server)) > at_most and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def still_held(server: RunningServer, socks: list[socket.socket]) -> set[int]:
    """Which of these client sockets the server still holds a connection for."""
    ours = {sock.getsockname()[1] for sock in socks}
    return ours & set(server_peers(server))


@pytest.mark.parametrize("round_", range(2))
def test_slowloris_connections_are_cut_at_the_header_deadline_while_others_are_served(
    server: RunningServer, endpoint: str, round_: int
) -> None:
    with SlowClients(
        *address(server), count=40, interval=0.2, path=f"/endpoints/{endpoint}/invocations"
    ) as slow:
        slowest = probe(server, endpoint, 15)
        slow.wait_all_closed(timeout=15)
        assert slow.open == 0
        answered = 0
        for client in slow.clients:
            assert client.closed is not None
            assert 0.9 <= client.closed - client.opened < 10
            if not client.answer:
                continue  # a byte crossed the server's close: the kernel reset the connection
            answered += 1
            assert client.answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), client.answer[:100]
            assert client.answer.endswith(
                b'{"__type": "ValidationError", "Message": "Request headers were not received in time."}'
            )
        assert answered >= len(slow.clients) * 0.8
        assert still_held(server, [client.sock for client in slow.clients]) == set()
    assert slowest < 5  # generous: the probe was never stuck behind the attackers


def test_a_trickling_body_is_cut_at_the_body_deadline(server: RunningServer, endpoint: str) -> None:
    with SlowClients(
        *address(server), count=20, interval=0.2, body=True, path=f"/endpoints/{endpoint}/invocations"
    ) as slow:
        probe(server, endpoint, 5)
        slow.wait_all_closed(timeout=15)
        assert slow.open == 0
        for client in slow.clients:
            assert client.closed is not None
            # Deadline: 1 s of silence, or the declared 100 kB at 64 kB/s after a 1 s allowance.
            assert 0.9 <= client.closed - client.opened < 10
            # The handler was already reading the body, so the server just hangs up (no 408 can be sent
            # while a request is being answered); a client sees a closed connection, which it may retry.
            assert not client.answer or client.answer.startswith(b"HTTP/1.1 408 "), client.answer[:100]
        assert still_held(server, [client.sock for client in slow.clients]) == set()


def test_connections_past_the_cap_get_503_at_once_and_service_returns(
    server: RunningServer, endpoint: str
) -> None:
    held = idle_connections(*address(server), CAP - server_connections(server))
    try:
        deadline = time.monotonic() + 10
        while server_connections(server) < CAP:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with socket.create_connection(address(server), timeout=5) as extra:
            extra.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := extra.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert answer.endswith(
            b'{"__type":"ServiceUnavailable","Message":"Too many connections; retry later."}'
        )
        runtime = one_attempt(server)
        with pytest.raises(ClientError) as caught:
            invoke(runtime, endpoint, action="echo")
        assert error_of(caught.value) == (503, "ServiceUnavailable")
        runtime.close()
    finally:
        for sock in held:
            sock.close()
    assert wait_connections(server, CAP // 2) <= CAP // 2
    probe(server, endpoint, 3)


def test_a_client_that_never_reads_a_large_answer_holds_nothing_up(
    server: RunningServer, endpoint: str
) -> None:
    body = json.dumps({"action": "big", "bytes": 5_000_000}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(address(server))
    try:
        sock.sendall(
            f"POST /endpoints/{endpoint}/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        # The one worker produced the answer and is free again; other clients do not wait.
        probe(server, endpoint, 10)
        port = sock.getsockname()[1]
    finally:
        sock.close()
    deadline = time.monotonic() + 10
    while port in server_peers(server):  # gone with its client, the unsent answer dropped
        assert time.monotonic() < deadline
        time.sleep(0.05)

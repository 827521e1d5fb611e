"""`moorage serve-model`'s /invocations with a handler that yields: an HTTP/1.1 chunked answer, one
chunk per part, read here with the standard library's HTTP client (what SageMaker's platform relays)."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from support.servers import RunningServer, start_model_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def container(
    tmp_path_factory: pytest.TempPathFactory, stream_tarball: Path, gates: Path
) -> Iterator[RunningServer]:
    running = start_model_server(
        stream_tarball,
        tmp_path_factory.mktemp("stream-container") / "data",
        env={"MOORAGE_SANDBOX_WRITABLE": str(gates), "SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
    )
    try:
        yield running
    finally:
        running.stop()


@contextmanager
def invocations(container: RunningServer, request: dict[str, object]) -> Iterator[http.client.HTTPResponse]:
    where = urlsplit(container.url)
    connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=60)
    try:
        connection.request("POST", "/invocations", json.dumps(request), {"Content-Type": "application/json"})
        yield connection.getresponse()
    finally:
        connection.close()


def test_parts_are_chunks_sent_as_the_handler_yields(container: RunningServer, gates: Path) -> None:
    gate = gates / f"gate-{uuid.uuid4().hex}"
    with invocations(
        container, {"mode": "gated", "parts": ["first\n", "second\n"], "gate": str(gate)}
    ) as response:
        assert response.status == 200
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert response.getheader("Content-Length") is None
        assert response.getheader("Content-Type") == "application/json"
        assert response.readline() == b"first\n"  # while the handler still waits for the gate
        assert not gate.exists()
        gate.touch()
        assert response.read() == b"second\n"


def test_a_handler_that_does_not_stream_answers_with_a_length(container: RunningServer) -> None:
    with invocations(container, {"mode": "whole", "parts": ["x"]}) as response:
        assert response.getheader("Transfer-Encoding") is None
        body = response.read()
        assert response.getheader("Content-Length") == str(len(body))
        assert json.loads(body) == {"whole": True, "echo": ["x"]}


def test_a_stream_that_breaks_is_cut_off_without_its_last_chunk(container: RunningServer) -> None:
    with invocations(container, {"mode": "raise_after", "parts": ["one\n"], "message": "broken"}) as response:
        assert response.status == 200
        assert response.readline() == b"one\n"
        with pytest.raises(http.client.IncompleteRead):
            response.read()


def test_an_error_before_the_first_part_is_the_toolkits_error_answer(container: RunningServer) -> None:
    with invocations(container, {"mode": "raise_first"}) as response:
        assert (response.status, response.read()) == (500, b"refused before the first part")

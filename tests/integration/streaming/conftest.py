"""Shared pieces of the streaming tests: a handler that yields, driven per request by its JSON body.

STREAM_HANDLER's predict_fn returns a generator (there is no output_fn: the default one lets a stream
through), chosen by {"mode": ...}:
- "parts": yields each of "parts", then ends;
- "gated": yields parts[0], waits until the file "gate" exists (the test creates it after reading that
  part: evidence that parts leave before the handler has finished), then yields the rest;
- "raise_after": yields "parts", then raises RuntimeError("message");
- "raise_first": raises before yielding anything;
- "endless": yields "tick" forever, writing the file "marker" from its `finally` (when it is stopped);
- "async": the same as "parts" from an async generator;
- "whole": answers one JSON body, as a handler that does not stream.
The gate and marker files live in a directory the sandboxed worker may write (MOORAGE_SANDBOX_WRITABLE).
Each module starts its own `server`; the `runtime` and `endpoint` fixtures and the `check_*` scenarios
below serve both backends' modules.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from support.hosting import deploy, pack_handler
from support.servers import RunningServer

STREAM_HANDLER = textwrap.dedent("""
    import asyncio
    import json
    import os
    import time


    def model_fn(model_dir):
        return {}


    def input_fn(body, content_type):
        return json.loads(body)


    def _gated(request):
        yield request["parts"][0]
        deadline = time.monotonic() + 60
        while not os.path.exists(request["gate"]) and time.monotonic() < deadline:
            time.sleep(0.005)
        yield from request["parts"][1:]


    def _raise_after(request):
        yield from request["parts"]
        raise RuntimeError(request["message"])


    def _endless(request):
        try:
            while True:
                yield b"tick\\n"
                time.sleep(0.005)
        finally:
            with open(request["marker"], "w") as marker:
                marker.write("finally ran")


    async def _async_parts(request):
        for part in request["parts"]:
            await asyncio.sleep(0)
            yield part


    def predict_fn(request, model):
        mode = request["mode"]
        if mode == "parts":
            return iter(request["parts"])
        if mode == "gated":
            return _gated(request)
        if mode == "raise_after":
            return _raise_after(request)
        if mode == "raise_first":
            raise ValueError("refused before the first part")
        if mode == "endless":
            return _endless(request)
        if mode == "async":
            return _async_parts(request)
        return {"whole": True, "echo": request.get("parts")}
""")


@pytest.fixture(scope="session")
def stream_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_handler(tmp_path_factory.mktemp("stream-model"), STREAM_HANDLER, archive="stream.tar.gz")


@pytest.fixture(scope="module")
def runtime(server: RunningServer) -> Any:
    """boto3's sagemaker-runtime client for the module's `server`."""
    return server.client("sagemaker-runtime")


@pytest.fixture(scope="module")
def endpoint(server: RunningServer, stream_tarball: Path) -> str:
    """STREAM_HANDLER deployed on one worker of the module's `server`."""
    return deploy(server.client("sagemaker"), stream_tarball)


def stream(runtime: Any, endpoint: str, **request: Any) -> Any:
    """InvokeEndpointWithResponseStream with a JSON request for STREAM_HANDLER."""
    return runtime.invoke_endpoint_with_response_stream(
        EndpointName=endpoint, Body=json.dumps(request), ContentType="application/json"
    )


def payloads(events: Any) -> list[bytes]:
    return [event["PayloadPart"]["Bytes"] for event in events]


# The scenarios both backends' modules run -------------------------------------------------------------
def check_parts_leave_before_the_handler_finishes(runtime: Any, endpoint: str, gates: Path) -> Any:
    """The handler yields, then waits for a gate this test opens only after reading that part."""
    gate = gates / f"gate-{uuid.uuid4().hex}"
    response = stream(runtime, endpoint, mode="gated", parts=["first ", "second ", "third"], gate=str(gate))
    events = iter(response["Body"])
    assert next(events) == {"PayloadPart": {"Bytes": b"first "}}
    assert not gate.exists()
    gate.touch()
    assert payloads(events) == [b"second ", b"third"]
    return response


def check_model_stream_error_after_two_parts(runtime: Any, endpoint: str) -> None:
    response = stream(runtime, endpoint, mode="raise_after", parts=["one", "two"], message="ran out of ideas")
    received = []
    with pytest.raises(botocore.exceptions.EventStreamError) as raised, closing(response["Body"]):
        for event in response["Body"]:
            received.append(event["PayloadPart"]["Bytes"])
    assert received == [b"one", b"two"]
    assert raised.value.response["Error"] == {"Code": "ModelStreamError", "Message": "ran out of ideas"}


def check_a_client_that_leaves_stops_the_generator(runtime: Any, endpoint: str, gates: Path) -> None:
    """The endpoint has one worker: it answers again only once the endless generator was stopped."""
    marker = gates / f"marker-{uuid.uuid4().hex}"
    response = stream(runtime, endpoint, mode="endless", marker=str(marker))
    events = iter(response["Body"])
    assert next(events) == {"PayloadPart": {"Bytes": b"tick\n"}}
    response["Body"]._raw_stream.close()  # urllib3's response: the connection goes
    after = stream(runtime, endpoint, mode="async", parts=["free"])
    assert payloads(after["Body"]) == [b"free"]
    assert marker.read_text() == "finally ran"


@pytest.fixture(scope="session")
def gates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory the sandboxed workers may write: the tests' gate and marker files."""
    return tmp_path_factory.mktemp("stream-gates")

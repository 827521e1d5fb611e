"""Handlers that yield, through unchanged boto3's InvokeEndpointWithResponseStream and InvokeEndpoint.

One `moorage serve` for the module; one endpoint on one worker (so a worker that did not come free
would block the next test), and one with a 3 s invocation timeout for the whole-stream timeout.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from support.cli import isolated_environment
from support.hosting import deploy
from support.servers import RunningServer, start_server

from .conftest import (
    check_a_client_that_leaves_stops_the_generator,
    check_model_stream_error_after_two_parts,
    check_parts_leave_before_the_handler_finishes,
    payloads,
    stream,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gates: Path) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("stream-server") / "data",
        env={"MOORAGE_SANDBOX_WRITABLE": str(gates), "MOORAGE_STREAM_IDLE_TIMEOUT": "3"},
    )
    try:
        yield running
    finally:
        running.stop()


def test_parts_arrive_before_the_handler_has_finished(runtime: Any, endpoint: str, gates: Path) -> None:
    response = check_parts_leave_before_the_handler_finishes(runtime, endpoint, gates)
    assert response["ContentType"] == "application/json"  # the Accept, as for any handler answer
    assert response["InvokedProductionVariant"] == "AllTraffic"


def test_each_item_is_one_payload_part_in_order_str_as_utf8(runtime: Any, endpoint: str) -> None:
    parts = ["α", "", "b" * 70_000, "done\n"]
    response = stream(runtime, endpoint, mode="parts", parts=parts)
    assert payloads(response["Body"]) == [part.encode() for part in parts]


def test_an_async_generator_streams_too(runtime: Any, endpoint: str) -> None:
    response = stream(runtime, endpoint, mode="async", parts=["a", "b", "c"])
    assert payloads(response["Body"]) == [b"a", b"b", b"c"]


def test_a_handler_that_raises_after_two_parts_ends_with_model_stream_error(
    runtime: Any, endpoint: str
) -> None:
    check_model_stream_error_after_two_parts(runtime, endpoint)


def test_an_error_before_the_first_part_is_an_ordinary_model_error(runtime: Any, endpoint: str) -> None:
    with pytest.raises(runtime.exceptions.ModelError) as raised:
        stream(runtime, endpoint, mode="raise_first")
    assert raised.value.response["OriginalStatusCode"] == 500
    assert "refused before the first part" in raised.value.response["Error"]["Message"]


def test_plain_invoke_endpoint_answers_the_joined_parts(runtime: Any, endpoint: str) -> None:
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint,
        Body=json.dumps({"mode": "parts", "parts": ["to", "get", "her"]}),
        ContentType="application/json",
    )
    assert answer["Body"].read() == b"together"
    with pytest.raises(runtime.exceptions.ModelError) as raised:
        runtime.invoke_endpoint(
            EndpointName=endpoint,
            Body=json.dumps({"mode": "raise_after", "parts": ["x"], "message": "late failure"}),
            ContentType="application/json",
        )
    assert "late failure" in raised.value.response["Error"]["Message"]


def test_a_handler_that_does_not_stream_is_unchanged_on_both_calls(runtime: Any, endpoint: str) -> None:
    request = {"mode": "whole", "parts": ["x"]}
    plain = runtime.invoke_endpoint(
        EndpointName=endpoint, Body=json.dumps(request), ContentType="application/json"
    )
    whole = json.loads(plain["Body"].read())
    assert whole == {"whole": True, "echo": ["x"]}
    streamed = stream(runtime, endpoint, **request)
    assert json.loads(b"".join(payloads(streamed["Body"]))) == whole


def test_a_client_that_leaves_stops_the_generator_and_frees_the_worker(
    runtime: Any, endpoint: str, gates: Path
) -> None:
    check_a_client_that_leaves_stops_the_generator(runtime, endpoint, gates)


def test_a_stream_past_the_invocation_timeout_ends_with_model_invocation_time_exceeded(
    server: RunningServer, runtime: Any, stream_tarball: Path, gates: Path
) -> None:
    short = deploy(server.client("sagemaker"), stream_tarball, env={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "2"})
    response = stream(runtime, short, mode="endless", marker=str(gates / f"marker-{uuid.uuid4().hex}"))
    with pytest.raises(botocore.exceptions.EventStreamError) as raised, closing(response["Body"]):
        for event in response["Body"]:
            assert event == {"PayloadPart": {"Bytes": b"tick\n"}}
    assert raised.value.response["Error"] == {
        "Code": "ModelStreamError",
        "Message": "The model did not finish streaming within the 2 s invocation timeout.",
    }


def test_a_stream_that_stalls_ends_after_the_idle_timeout(runtime: Any, endpoint: str, gates: Path) -> None:
    never = gates / f"never-{uuid.uuid4().hex}"
    response = stream(runtime, endpoint, mode="gated", parts=["only", "never sent"], gate=str(never))
    events = iter(response["Body"])
    assert next(events) == {"PayloadPart": {"Bytes": b"only"}}
    with pytest.raises(botocore.exceptions.EventStreamError) as raised, closing(response["Body"]):
        next(events)
    assert raised.value.response["Error"] == {
        "Code": "ModelStreamError",
        "Message": "The model sent no part within the 3 s stream idle timeout (MOORAGE_STREAM_IDLE_TIMEOUT).",
    }
    # The stalled worker was replaced; the endpoint answers again.
    assert payloads(stream(runtime, endpoint, mode="parts", parts=["back"])["Body"]) == [b"back"]


def test_sagemaker_sdk_predict_stream_with_its_line_iterator(
    server: RunningServer, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    import boto3

    sagemaker_session = importlib.import_module("sagemaker.session").Session
    predictor_class = importlib.import_module("sagemaker.predictor").Predictor
    line_iterator = importlib.import_module("sagemaker.iterators").LineIterator
    session = sagemaker_session(
        boto_session=boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ),
        sagemaker_client=server.client("sagemaker"),
        sagemaker_runtime_client=server.client("sagemaker-runtime"),
        default_bucket="unused",
    )
    predictor = predictor_class(endpoint, sagemaker_session=session)
    # Lines split across parts, as a generative model's JSON lines often are.
    request = {"mode": "parts", "parts": ['{"token": "Ba', 'ss"}\n{"tok', 'en": "oon"}\n']}
    lines = list(predictor.predict_stream(json.dumps(request), iterator=line_iterator))
    assert lines == [b'{"token": "Bass"}', b'{"token": "oon"}']


def test_moorage_sdk_predict_stream(server: RunningServer, endpoint: str) -> None:
    import boto3

    from moorage.sdk import PredictionError, Predictor

    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    predictor = Predictor(endpoint, endpoint_url=server.url, session=session)
    request = {"mode": "parts", "parts": ["to", "ken", "s"]}
    assert list(predictor.predict_stream(json.dumps(request).encode())) == [b"to", b"ken", b"s"]
    failing = {"mode": "raise_after", "parts": ["kept"], "message": "out of tokens"}
    received = []
    with pytest.raises(PredictionError, match="out of tokens"):
        for part in predictor.predict_stream(json.dumps(failing).encode()):
            received.append(part)
    assert received == [b"kept"]


def test_cli_invoke_stream_prints_each_part_as_it_arrives(
    server: RunningServer, endpoint: str, gates: Path, tmp_path: Path
) -> None:
    gate = gates / f"gate-{uuid.uuid4().hex}"
    request = {"mode": "gated", "parts": ["first\n", "second\n"], "gate": str(gate)}
    process = subprocess.Popen(
        [sys.executable, "-m", "moorage", "invoke", endpoint, "--stream", "--json", json.dumps(request)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=isolated_environment(tmp_path, {"MOORAGE_URL": server.url}),
    )
    try:
        assert process.stdout is not None
        # Printed while the handler still waits for the gate.
        assert process.stdout.readline() == b"first\n"
        assert not gate.exists()
        gate.touch()
        assert process.stdout.read() == b"second\n"
        assert process.wait(60) == 0
    finally:
        process.kill()
        process.communicate()
    failing = {"mode": "raise_after", "parts": ["kept\n"], "message": "out of tokens"}
    done = subprocess.run(
        [sys.executable, "-m", "moorage", "invoke", endpoint, "--stream", "--json", json.dumps(failing)],
        capture_output=True,
        env=isolated_environment(tmp_path, {"MOORAGE_URL": server.url}),
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (1, b"kept\n")
    assert "the model failed while streaming, after 5 bytes: out of tokens" in done.stderr.decode()

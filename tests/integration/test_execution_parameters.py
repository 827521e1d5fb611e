"""SageMaker's batch container contract on a real `moorage serve-model`, over HTTP.

With SAGEMAKER_BATCH=true, `GET /execution-parameters` answers the job's values (MaxConcurrentTransforms
defaulting to the model's workers) and /invocations takes bodies up to SAGEMAKER_MAX_PAYLOAD_IN_MB MiB,
not the real-time 6 MiB that SageMaker's PyTorch container keeps (its users meet 413s). Without it the
container is a real-time one: the path is 404 and the cap is 6 MiB. A value out of range stops the
container at start with a message naming the variable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.servers import (
    RunningServer,
    base_environment,
    http_get,
    post,
    start_model_server,
    wait_until_gone,
)

pytestmark = pytest.mark.slow

_MIB = 1024 * 1024


def _running(artifacts: Any, data_dir: Path, env: dict[str, str]) -> Iterator[RunningServer]:
    server = start_model_server(artifacts.fault_tar, data_dir, args=["--workers", "1"], env=env)
    yield server
    server.stop()
    assert not wait_until_gone(server.tag)


@pytest.fixture(scope="module")
def batch(artifacts: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "8",
    }
    yield from _running(artifacts, tmp_path_factory.mktemp("batch") / "data", env)


@pytest.fixture(scope="module")
def realtime(artifacts: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from _running(artifacts, tmp_path_factory.mktemp("realtime") / "data", {})


def _send(server: RunningServer, size: int) -> tuple[int, bytes]:
    status, _, body, _ = post(
        server.url + "/invocations", b"x" * size, {"Content-Type": "application/octet-stream"}
    )
    return status, body


def test_execution_parameters_answer_the_batch_variables(batch: RunningServer) -> None:
    status, body = http_get(batch.url + "/execution-parameters")
    assert status == 200
    # MaxConcurrentTransforms was not set: one per worker (--workers 1).
    assert json.loads(body) == {
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 8,
    }


def test_batch_requests_may_be_as_large_as_max_payload(batch: RunningServer) -> None:
    status, body = _send(batch, 7 * _MIB)  # over the real-time 6 MiB, under MaxPayloadInMB
    assert status == 200
    assert json.loads(body)["echo"]["length"] == 7 * _MIB
    status, body = _send(batch, 8 * _MIB + 1)
    assert status == 413
    assert json.loads(body)["type"] == "RequestEntityTooLarge"


def test_a_realtime_container_has_no_execution_parameters(realtime: RunningServer) -> None:
    status, body = http_get(realtime.url + "/execution-parameters")
    assert status == 404
    assert json.loads(body)["type"] == "ResourceNotFoundException"
    assert _send(realtime, 7 * _MIB)[0] == 413  # the real-time cap: 6 MiB
    assert _send(realtime, 5 * _MIB)[0] == 200


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "SAGEMAKER_MAX_PAYLOAD_IN_MB",
            "100",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB=100 is out of range; give 1 to 60",
        ),
        ("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", "many", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS='many' is not"),
        ("SAGEMAKER_BATCH_STRATEGY", "EVERYTHING", "SAGEMAKER_BATCH_STRATEGY='EVERYTHING' is not one of"),
    ],
)
def test_a_bad_batch_variable_stops_the_container(
    artifacts: Any, tmp_path: Path, name: str, value: str, expected: str
) -> None:
    env = base_environment("bad-batch-" + name.lower(), {"SAGEMAKER_BATCH": "true", name: value})
    command = [sys.executable, "-m", "moorage", "serve-model", str(artifacts.fault_tar), "--port", "0"]
    result = subprocess.run(
        [*command, "--data-dir", str(tmp_path / "data")], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout

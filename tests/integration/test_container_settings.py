"""The settings the README and docs/compatibility.md promise, each observed from outside the server.

`moorage serve-model` with the fault handler (tests/support/handlers.py) and, on one server:
SAGEMAKER_BIND_TO_PORT (no `--port`: the server binds the port the variable names),
SAGEMAKER_TS_RESPONSE_TIMEOUT (wins over SAGEMAKER_MODEL_SERVER_TIMEOUT), MOORAGE_TRACEBACKS_IN_ERRORS
(SageMaker's `str(e) + traceback` body) and `/models/model/invoke` (TorchServe's second invocation path).
Then `moorage serve` on a machine whose CUDA_VISIBLE_DEVICES names two GPUs: each worker of a GPU
instance sees only its own one (docs/compatibility.md). No GPU is needed for that: the variable is what
user code's `torch.device("cuda")` obeys, and it is read back from inside each worker.
"""

from __future__ import annotations

import json
import socket
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from integration.reliability.rig import create_model, delete_endpoint, invoke, wait_status
from moorage.examples.builders import pack
from support.servers import (
    RunningServer,
    launch_model_server,
    post,
    start_server,
    wait_for_ready,
    wait_until_gone,
)

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def container(artifacts: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    port = free_port()
    server = launch_model_server(
        artifacts.fault_tar,
        tmp_path_factory.mktemp("settings") / "data",
        args=["--workers", "1"],
        env={
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30",
            "SAGEMAKER_TS_RESPONSE_TIMEOUT": "1",
            "MOORAGE_TRACEBACKS_IN_ERRORS": "true",
        },
        port_flag=False,
    )
    try:
        wait_for_ready(server, 120)
    except BaseException:
        server.kill()
        raise
    assert server.url == f"http://127.0.0.1:{port}"
    yield server
    server.stop()
    assert not wait_until_gone(server.tag)


def act(server: RunningServer, path: str = "/invocations", **request: Any) -> tuple[int, bytes]:
    status, _, body, _ = post(
        server.url + path, json.dumps(request).encode(), {"Content-Type": "application/json"}
    )
    return status, body


def test_sagemaker_bind_to_port_chooses_the_port(container: RunningServer) -> None:
    """The fixture started the server without --port; it answers on the port the variable named."""
    status, body = act(container, action="echo")
    assert status == 200 and json.loads(body)["echo"] == {"action": "echo"}


def test_models_model_invoke_answers_like_invocations(container: RunningServer) -> None:
    status, body = act(container, "/models/model/invoke", action="echo", n=7)
    assert status == 200
    assert json.loads(body)["echo"] == {"action": "echo", "n": 7}
    assert act(container, "/models/model/invoke", action="raise", where="predict_fn")[0] == 500


def test_sagemaker_ts_response_timeout_wins_over_the_model_server_timeout(container: RunningServer) -> None:
    status, body = act(container, action="sleep", seconds=20)
    assert status == 500
    assert "did not finish within the 1 s invocation timeout" in json.loads(body)["message"]
    assert act(container, action="echo")[0] == 200  # the hung worker was replaced


def test_moorage_tracebacks_in_errors_restores_sagemakers_error_body(container: RunningServer) -> None:
    status, body = act(container, action="raise", where="predict_fn")
    assert status == 500
    text = body.decode()
    assert text.startswith("boom in predict_fn\n")
    assert "Traceback (most recent call last)" in text and "ValueError: boom in predict_fn" in text


GPU_HANDLER = textwrap.dedent("""
    import json
    import os
    import time


    def model_fn(model_dir):
        return None


    def transform_fn(model, body, content_type, accept):
        time.sleep(json.loads(body)["seconds"])
        answer = {"pid": os.getpid(), "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
        return json.dumps(answer), "application/json"
""")


def test_each_worker_of_a_gpu_instance_sees_only_its_own_gpu(artifacts: Any, tmp_path: Path) -> None:
    model = tmp_path / "gpu-model"
    (model / "code").mkdir(parents=True)
    (model / "code" / "inference.py").write_text(GPU_HANDLER)
    tarball = pack(model, tmp_path / "gpu-model.tar.gz")
    server = start_server(tmp_path / "data", env={"CUDA_VISIBLE_DEVICES": "0,1"})
    try:
        sm = server.client("sagemaker")
        model_name = create_model(sm, f"file://{tarball}", env={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
        # `local_gpu` takes every GPU of the machine, one worker each (SageMaker's PyTorch container).
        sm.create_endpoint_config(
            EndpointConfigName="gpus",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model_name,
                    "InitialInstanceCount": 1,
                    "InstanceType": "local_gpu",
                }
            ],
        )
        sm.create_endpoint(EndpointName="gpus", EndpointConfigName="gpus")
        wait_status(sm, "gpus", {"InService"})
        runtime = server.client("sagemaker-runtime")
        seen: dict[int, str | None] = {}
        with ThreadPoolExecutor(2) as pool:
            for _ in range(10):  # two requests at once occupy both workers
                for answer in pool.map(lambda _: invoke(runtime, "gpus", seconds=0.3), range(2)):
                    seen[answer["pid"]] = answer["visible"]
                if len(seen) == 2:
                    break
        assert sorted(seen.values(), key=str) == ["0", "1"], seen
        delete_endpoint(sm, "gpus")
    finally:
        server.stop()
    assert not wait_until_gone(server.tag)

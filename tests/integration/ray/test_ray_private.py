"""`moorage serve --backend ray` without --ray-address: the private single-node cluster it starts.

What the issue asks of it beyond the journey (tests/contract/): torch's threads follow the actor's
CPUs, no server secret reaches user code, every Ray listener is on loopback, Ray's token and temp
files stay out of the home directory, and nothing outlives a `kill -9` of the server.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from support.backends import NO_RAY, RAY_INSTALLED, start_backend_server
from support.hosting import deploy, pack_handler
from support.servers import RunningServer, tagged_processes, wait_until_gone

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.skipif(not RAY_INSTALLED, reason=NO_RAY)]

PROBE = textwrap.dedent("""
    import json
    import os


    def model_fn(model_dir):
        return {}


    def input_fn(body, content_type):
        return body


    def predict_fn(data, model):
        import torch

        return {
            "torch_threads": torch.get_num_threads(),
            "omp": os.environ.get("OMP_NUM_THREADS"),
            "secret": os.environ.get("AWS_SECRET_ACCESS_KEY"),
            "pid": os.getpid(),
        }


    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
""")


@pytest.fixture(scope="module")
def probe_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_handler(tmp_path_factory.mktemp("ray-probe"), PROBE, folder="probe", archive="probe.tar.gz")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, home: Path) -> Iterator[RunningServer]:
    running = start_backend_server(
        tmp_path_factory.mktemp("ray-private") / "data", "ray", env={"HOME": str(home)}
    )
    yield running
    running.kill()  # kill -9: Ray's processes must go with the server all the same
    assert not wait_until_gone(running.tag, timeout=60), "Ray processes outlived a killed server"


def probe(server: RunningServer, name: str) -> dict[str, Any]:
    response = server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=name, Body=b"{}", ContentType="application/json"
    )
    result: dict[str, Any] = json.loads(response["Body"].read())
    return result


def test_torch_uses_the_cpus_ray_gave_the_worker(server: RunningServer, probe_tar: Path) -> None:
    # ml.m5.xlarge: 4 vCPUs over 2 workers, so each actor has 2 CPUs: Ray's OMP_NUM_THREADS and torch agree.
    name = deploy(
        server.client("sagemaker"),
        probe_tar,
        env={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"},
        instance_type="ml.m5.xlarge",
    )
    answers = [probe(server, name) for _ in range(6)]
    assert {(a["torch_threads"], a["omp"]) for a in answers} == {(2, "2")}
    assert len({a["pid"] for a in answers}) == 2
    assert {a["secret"] for a in answers} == {None}, "the server's AWS credentials reached user code"


def test_the_private_cluster_stays_on_loopback_and_in_the_data_dir(server: RunningServer, home: Path) -> None:
    listening = []
    for process in tagged_processes(server.tag):
        try:
            connections = process.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        listening += [c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN]
    assert listening, "the Ray processes were found"
    assert {ip.removeprefix("::ffff:") for ip in listening} <= {"127.0.0.1", "::1"}, listening
    token = server.data_dir / "ray_auth_token"
    assert token.stat().st_mode & 0o777 == 0o600
    assert not (home / ".ray").exists(), "Ray wrote to the home directory"

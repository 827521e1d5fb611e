"""Servers and artifacts for the SDK journeys: moorage's own SDK and the unchanged SageMaker SDK.

Each journey runs twice: against `moorage serve` with its embedded S3 store, and against `moorage
serve` reading S3 from an independent implementation (moto's server on 127.0.0.1), so neither side
can hide the other's mistakes. The client side is configured only through the environment.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tarfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from moorage.examples.builders import SEED_HANDLER
from support.servers import REGION, RunningServer, start_server, wait_until_gone

FAST = {"Delay": 0.25, "MaxAttempts": 400}


@dataclass(frozen=True)
class Stack:
    """A running server and the S3 endpoint that holds model data (and that the server reads)."""

    kind: str  # "embedded" or "moto"
    server: RunningServer
    s3_url: str

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )

    def embedded_s3(self) -> Any:
        """The server's own store (in the moto stack: the one that must stay unused)."""
        assert self.server.s3_url is not None
        return boto3.client(
            "s3",
            endpoint_url=self.server.s3_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def new_bucket(self, prefix: str) -> str:
        bucket = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.s3().create_bucket(Bucket=bucket)
        return bucket


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module", params=["embedded", "moto"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env: dict[str, str] = {}
    if request.param == "moto":
        env["AWS_ENDPOINT_URL_S3"] = request.getfixturevalue("moto_url")
    server = start_server(tmp_path_factory.mktemp(f"sdk-{request.param}") / "data", env=env)
    try:
        s3_url = env.get("AWS_ENDPOINT_URL_S3") or server.s3_url
        assert s3_url is not None
        yield Stack(request.param, server, s3_url)
    finally:
        server.stop()
    assert not wait_until_gone(server.tag), server.log()[-3000:]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    server = start_server(tmp_path_factory.mktemp("sdk-embedded") / "data")
    assert server.s3_url is not None
    try:
        yield Stack("embedded", server, server.s3_url)
    finally:
        server.stop()
    assert not wait_until_gone(server.tag), server.log()[-3000:]


@pytest.fixture
def client_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No developer AWS configuration leaks in: only what a test sets. Returns a HOME for it."""
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if name.startswith(("AWS_", "MOORAGE_", "SAGEMAKER_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    return home


@pytest.fixture(scope="session")
def seed_weights_tar(artifacts: Any) -> Path:
    """The seed's model.tar.gz as the post uploads it: the weights only; the handler comes with deploy."""
    tarball = Path(artifacts.root) / "seed-weights.tar.gz"
    if not tarball.exists():
        with tarfile.open(tarball, "w:gz", compresslevel=1) as archive:
            archive.add(Path(artifacts.seed_dir) / "model_0.pth", arcname="model_0.pth")
    return tarball


@pytest.fixture(scope="session")
def seed_request(image_server: str) -> dict[str, str]:
    return {"url": f"{image_server}/predict.png"}


@pytest.fixture(scope="session")
def seed_top3(artifacts: Any, seed_request: dict[str, str]) -> list[str]:
    """The seed handler's answer computed in this process, for the endpoint's to be compared with."""
    spec = importlib.util.spec_from_file_location(f"seed_{uuid.uuid4().hex}", SEED_HANDLER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation, in the seed's code
        spec.loader.exec_module(module)
        model = module.model_fn(str(artifacts.seed_dir))
        body = json.dumps(seed_request)
        result, _ = module.output_fn(
            module.predict_fn(module.input_fn(body, "application/json"), model), "application/json"
        )
    return [entry["prediction"] for entry in json.loads(result)]

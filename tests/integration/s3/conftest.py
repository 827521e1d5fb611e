"""A real embedded S3 server on 127.0.0.1:0, and unchanged clients pointed at it.

The server is moorage's own HTTP server running `build_s3_app` on its own event loop in a thread, as
`moorage serve` hosts it; the clients are boto3, the aws CLI (a subprocess) and the SageMaker SDK.
No developer AWS configuration leaks in: config, credentials and HOME point into the test's tmp dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from moorage.s3 import build_s3_app
from support.background import serve_in_thread

REGION = "us-east-1"
AWS_CLI = Path(sys.executable).parent / "aws"

ClientFactory = Callable[..., Any]
AwsCli = Callable[..., "subprocess.CompletedProcess[bytes]"]


@pytest.fixture
def isolated_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials"))
    return home


@pytest.fixture
def s3_root(tmp_path: Path) -> Path:
    return tmp_path / "s3-root"


@pytest.fixture
def s3_url(s3_root: Path, isolated_aws: Path) -> Iterator[str]:
    with serve_in_thread(build_s3_app(s3_root, region=REGION)) as url:
        yield url


@pytest.fixture
def s3_client(isolated_aws: Path) -> ClientFactory:
    """boto3's S3 client for a server URL, exactly as a user builds it (retries off: one request each)."""

    def make(url: str, **config: Any) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="x",
            aws_secret_access_key="y",
            config=Config(retries={"max_attempts": 1}, **config),
        )

    return make


@pytest.fixture
def s3(s3_url: str, s3_client: ClientFactory) -> Any:
    return s3_client(s3_url)


@pytest.fixture
def aws(isolated_aws: Path) -> AwsCli:
    """Run the aws CLI against a server URL, configured only through the environment (spec §5)."""

    def run(url: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[bytes]:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(isolated_aws),
            "AWS_CONFIG_FILE": str(isolated_aws / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(isolated_aws / "aws-credentials"),
            "AWS_ENDPOINT_URL_S3": url,
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "y",
            "AWS_DEFAULT_REGION": REGION,
        }
        return subprocess.run(
            [str(AWS_CLI), *args], env=env, capture_output=True, timeout=timeout, check=False
        )

    return run

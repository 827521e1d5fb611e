"""The AWS environment in-process boto3 clients of a test see: nothing of the developer's leaks in."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def offline_credentials(empty_dir: Path) -> Iterator[None]:
    """Dummy credentials, no config files and no instance-metadata lookups, so nothing leaves loopback.

    A context manager rather than a fixture so that module-scoped fixtures can use it (monkeypatch is
    function-scoped).
    """
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_CONFIG_FILE", str(empty_dir / "config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty_dir / "credentials"))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


def point_sdk_at(patch: pytest.MonkeyPatch, server_url: str, s3_url: str, home: Path) -> None:
    """The environment docs/sagemaker-sdk.md gives the unchanged SageMaker SDK, for an in-process run."""
    for variable in ("SAGEMAKER", "SAGEMAKER_RUNTIME", "IAM", "LOGS"):
        patch.setenv(f"AWS_ENDPOINT_URL_{variable}", server_url)
    patch.setenv("AWS_ENDPOINT_URL_S3", s3_url)
    patch.setenv("AWS_ACCESS_KEY_ID", "testing")
    patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    patch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    patch.setenv("HOME", str(home))

"""Pure rules of the SDK: where the server URL comes from, SageMaker's generated names, roles."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from boto3.exceptions import S3UploadFailedError

from moorage.sdk.connection import DEFAULT_URL, Connection, _reachable_from_here, resolve_url
from moorage.sdk.errors import InvalidArgument, ServiceError
from moorage.sdk.model import PyTorchModel, _is_role_arn, name_from_base


@pytest.mark.parametrize(
    ("argument", "environ", "expected"),
    [
        ("http://h:1/", {"MOORAGE_URL": "http://m:2"}, ("http://h:1", "the endpoint_url argument")),
        (
            None,
            {"MOORAGE_URL": "http://m:2", "AWS_ENDPOINT_URL_SAGEMAKER": "http://s:3"},
            ("http://m:2", "MOORAGE_URL"),
        ),
        (None, {"AWS_ENDPOINT_URL_SAGEMAKER": "http://s:3"}, ("http://s:3", "AWS_ENDPOINT_URL_SAGEMAKER")),
        (None, {"MOORAGE_URL": "  "}, (DEFAULT_URL, "the default; set MOORAGE_URL to change it")),
        (None, {}, (DEFAULT_URL, "the default; set MOORAGE_URL to change it")),
    ],
)
def test_server_url(argument: str | None, environ: dict[str, str], expected: tuple[str, str]) -> None:
    assert resolve_url(argument, environ) == expected


@pytest.mark.parametrize("url", ["localhost:8080", "ftp://h/", "127.0.0.1"])
def test_server_url_needs_a_scheme(url: str) -> None:
    with pytest.raises(InvalidArgument, match="must start with http:// or https://"):
        resolve_url(None, {"MOORAGE_URL": url})


def test_dummy_credentials_only_when_boto3_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    with_keys = boto3.Session(
        aws_access_key_id="AKID", aws_secret_access_key="secret", region_name="eu-west-1"
    )
    connection = Connection("http://127.0.0.1:1", with_keys, environ={})
    credentials = connection.session.get_credentials()
    assert credentials is not None and credentials.access_key == "AKID"
    assert connection.region == "eu-west-1"

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bare = Connection("http://127.0.0.1:1", boto3.Session(region_name="us-west-2"), environ={})
    credentials = bare.session.get_credentials()
    assert credentials is not None and credentials.access_key == "moorage"
    assert bare.region == "us-west-2"


def test_names_follow_sagemakers_pattern() -> None:
    moment = datetime(2020, 3, 22, 10, 26, 35, 123456, tzinfo=UTC)
    assert name_from_base("pytorch-inference", moment) == "pytorch-inference-2020-03-22-10-26-35-123"
    long = name_from_base("x" * 80, moment)
    assert len(long) == 63 and long.endswith("-2020-03-22-10-26-35-123")


@pytest.mark.parametrize(
    ("role", "is_arn"),
    [
        ("arn:aws:iam::123456789012:role/SageMakerRole", True),
        ("arn:aws-cn:iam::123456789012:role/path/Role", True),
        ("CustomSageMakerRoleName", False),
        ("arn:aws:iam::123456789012:user/alice", False),
        ("arn:aws:s3:::bucket/role/x", False),
    ],
)
def test_role_arns(role: str, is_arn: bool) -> None:
    assert _is_role_arn(role) is is_arn


def test_the_constructor_makes_no_call() -> None:
    # Nothing listens on port 1: any call would fail. SageMaker's constructor is offline too.
    model = PyTorchModel(
        "s3://bucket/model.tar.gz", "Role", "inference.py", "1.3.1", "py3", endpoint_url="http://127.0.0.1:1"
    )
    assert (model.model_data, model.role, model.entry_point, model.framework_version, model.py_version) == (
        "s3://bucket/model.tar.gz",
        "Role",
        "inference.py",
        "1.3.1",
        "py3",
    )


@pytest.mark.parametrize(
    ("s3_url", "server_url", "expected"),
    [
        ("http://127.0.0.1:9000", "http://127.0.0.1:8080", "http://127.0.0.1:9000"),
        ("http://0.0.0.0:9000", "http://gpu-box.lan:8080", "http://gpu-box.lan:9000"),
        ("http://[::]:9000", "http://[fd00::5]:8080", "http://[fd00::5]:9000"),
        ("http://minio.lan:9000", "http://gpu-box.lan:8080", "http://minio.lan:9000"),
    ],
)
def test_a_store_on_every_interface_is_reached_by_the_servers_host(
    s3_url: str, server_url: str, expected: str
) -> None:
    assert _reachable_from_here(s3_url, server_url) == expected


def test_a_failed_upload_becomes_a_service_error() -> None:
    """boto3's upload_file raises S3UploadFailedError, not a ClientError; the SDK must still translate it."""
    session = boto3.Session(aws_access_key_id="AKID", aws_secret_access_key="secret", region_name="us-east-1")
    connection = Connection("http://127.0.0.1:1", session, environ={})
    refused = "Failed to upload model.tar.gz to b/k: An error occurred (AccessDenied) when calling PutObject"
    where = "Could not upload s3://b/k to http://s3"
    with pytest.raises(ServiceError) as caught, connection.translated("http://s3", where):
        raise S3UploadFailedError(refused)
    assert caught.value.error_code == "S3UploadFailed"
    assert str(caught.value) == f"{where}: {refused}"

"""Names from requests never reach outside the logs directory: validation, ARNs, symbolic links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moorage.logs import OPERATIONS, LogsLayout
from moorage.logs.errors import InvalidParameterException, ResourceNotFoundException
from moorage.logs.layout import endpoint_of_group, resolve_group
from support.logfiles import BASE_MS, GROUP, context, logged, write_stream


@pytest.mark.parametrize(
    "name",
    [
        "/aws/sagemaker/Endpoints/",
        "/aws/sagemaker/Endpoints/..",
        "/aws/sagemaker/Endpoints/../../etc",
        "/aws/sagemaker/Endpoints/a/b",
        "/aws/sagemaker/Endpoints/.hidden",
        "/aws/sagemaker/Endpoints/-leading",
        "/aws/sagemaker/Endpoints/trailing-",
        "/aws/sagemaker/Endpoints/" + "a" * 64,
        "/aws/sagemaker/endpoints/lowercase-prefix",
        "/aws/lambda/ep",
        "ep",
    ],
)
def test_group_names_outside_the_pattern_do_not_exist(name: str) -> None:
    with pytest.raises(ResourceNotFoundException):
        endpoint_of_group(name)


def test_group_names_map_to_endpoints() -> None:
    assert endpoint_of_group("/aws/sagemaker/Endpoints/my-ep--2") == "my-ep--2"
    assert endpoint_of_group("/aws/sagemaker/Endpoints/" + "a" * 63) == "a" * 63


def test_group_by_name_or_arn() -> None:
    arn = "arn:aws:logs:us-east-1:000000000000:log-group:/aws/sagemaker/Endpoints/ep"
    assert resolve_group(None, arn) == "/aws/sagemaker/Endpoints/ep"
    assert resolve_group(None, arn + ":*") == "/aws/sagemaker/Endpoints/ep"
    assert resolve_group("/aws/sagemaker/Endpoints/ep", None) == "/aws/sagemaker/Endpoints/ep"
    for bad in ("arn:aws:s3:::bucket", "arn:aws:logs:us-east-1:0:destination:x", ""):
        with pytest.raises(InvalidParameterException):
            resolve_group(None, bad)
    with pytest.raises(InvalidParameterException):
        resolve_group("a", "b")
    with pytest.raises(InvalidParameterException):
        resolve_group(None, None)


@pytest.mark.parametrize(
    "stream",
    [
        "AllTraffic",
        "AllTraffic/",
        "AllTraffic/..",
        "AllTraffic/../../secret",
        "../AllTraffic/i-1",
        "AllTraffic/i-1/extra",
        "AllTraffic/i-1.log",
        "AllTraffic/.i-1",
        "/AllTraffic/i-1",
    ],
)
def test_stream_names_outside_the_pattern_do_not_exist(tmp_path: Path, stream: str) -> None:
    write_stream(tmp_path, "AllTraffic/i-1", logged(BASE_MS, "x"))
    with pytest.raises(ResourceNotFoundException):
        LogsLayout(tmp_path / "logs").snapshot("ep", stream)
    with pytest.raises(ResourceNotFoundException):
        LogsLayout(tmp_path).snapshot("ep", stream)


def test_symbolic_links_are_never_followed(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    write_stream(logs, "AllTraffic/i-1", logged(BASE_MS, "mine"))
    secret = tmp_path / "secret.log"
    secret.write_text(logged(BASE_MS, "secret"))
    os.symlink(secret, logs / "ep" / "AllTraffic" / "i-2.log")
    os.symlink(logs / "ep", logs / "linked")
    os.symlink(tmp_path, logs / "ep" / "Outside")
    layout = LogsLayout(logs)
    assert layout.endpoints() == ["ep"]
    assert layout.streams("ep") == ["AllTraffic/i-1"]
    for endpoint, stream in [
        ("ep", "AllTraffic/i-2"),
        ("linked", "AllTraffic/i-1"),
        ("ep", "Outside/secret"),
    ]:
        with pytest.raises(ResourceNotFoundException):
            layout.snapshot(endpoint, stream)
    found = OPERATIONS["FilterLogEvents"](context(logs), {"logGroupName": GROUP, "filterPattern": "secret"})
    assert found["events"] == []


def test_a_deleted_endpoints_files_are_still_a_group(tmp_path: Path) -> None:
    write_stream(tmp_path, "AllTraffic/i-1", logged(BASE_MS, "bye"), endpoint="gone")
    layout = LogsLayout(tmp_path)
    assert layout.endpoints() == ["gone"]
    assert layout.streams("gone") == ["AllTraffic/i-1"]
    assert LogsLayout(tmp_path / "absent").endpoints() == []

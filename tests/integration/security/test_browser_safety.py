"""Browser safety on every port (security probe 2, rows 61 and 62; reproductions B4 and W1).

A web page can send "simple" cross-site requests (POST, text/plain, no custom header) to 127.0.0.1
without a preflight, and DNS rebinding makes a page's own name point at 127.0.0.1. So a default
(no-auth) server refuses requests that carry another origin's `Origin` or `Sec-Fetch-Site:
cross-site`, and every server refuses a `Host` that is not one of its names, each in its API's
error shape. Unchanged boto3 sends neither header and keeps working, by 127.0.0.1 and by localhost.
"""

from __future__ import annotations

import http.client
import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from support.hosting import deploy
from support.servers import (
    RunningServer,
    launch_model_server,
    start_server,
    wait_for_url,
    wait_until_gone,
)
from support.signed import Key, create_key

pytestmark = pytest.mark.slow

EVIL = "http://evil.example"
DELETE_BODY = b"<Delete><Object><Key>victim.tar.gz</Key></Object></Delete>"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def s3_error(self) -> tuple[str, str]:
        root = ET.fromstring(self.body)
        return root.findtext("Code") or "", root.findtext("Message") or ""

    def json_error(self) -> tuple[str, str]:
        payload = json.loads(self.body)
        return str(payload.get("__type") or payload.get("type")), str(
            payload.get("Message") or payload.get("message")
        )


def send(base_url: str, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> Answer:
    """One raw request, with exactly the Host, Origin and Content-Type a browser (or attacker) sends."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request(method, target, body=body, headers={"Host": parts.netloc, **headers})
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def simple_post(base_url: str, target: str, body: bytes, **headers: str) -> Answer:
    """What `fetch(url, {method: "POST", mode: "no-cors", body})` sends from a page."""
    return send(base_url, "POST", target, {"Content-Type": "text/plain;charset=UTF-8", **headers}, body)


def own_origin(base_url: str) -> str:
    return base_url.rstrip("/")


@dataclass
class Open:
    server: RunningServer
    endpoint: str


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory, artifacts: Any) -> Iterator[Open]:
    """`moorage serve` with its defaults: no authentication, loopback, both ports."""
    server = start_server(tmp_path_factory.mktemp("browser-open") / "data")
    try:
        endpoint = deploy(server.client("sagemaker"), artifacts.fault_tar)
        yield Open(server, endpoint)
    finally:
        server.stop()
        assert not wait_until_gone(server.tag), server.log()[-3000:]


@pytest.fixture
def victim(open_server: Open) -> tuple[Any, str]:
    """A bucket holding `victim.tar.gz`, put there with boto3 (no Origin, so allowed)."""
    s3 = open_server.server.client("s3")
    bucket = f"victim-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="victim.tar.gz", Body=b"model bytes")
    return s3, bucket


def still_there(s3: Any, bucket: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key="victim.tar.gz")["Body"].read())


def test_a_cross_site_delete_objects_is_refused_and_the_object_survives(
    open_server: Open, victim: tuple[Any, str]
) -> None:
    s3, bucket = victim
    s3_url = open_server.server.s3_url or ""
    answer = simple_post(s3_url, f"/{bucket}?delete", DELETE_BODY, Origin=EVIL)
    assert answer.status == 403
    assert answer.headers["content-type"] == "application/xml"
    code, message = answer.s3_error()
    assert code == "AccessDenied"
    assert f"Origin: {EVIL}" in message and "--auth sigv4" in message
    assert still_there(s3, bucket) == b"model bytes"


def test_sec_fetch_site_cross_site_is_refused_without_an_origin(
    open_server: Open, victim: tuple[Any, str]
) -> None:
    s3, bucket = victim
    s3_url = open_server.server.s3_url or ""
    answer = simple_post(s3_url, f"/{bucket}?delete", DELETE_BODY, **{"Sec-Fetch-Site": "cross-site"})
    assert answer.status == 403
    assert answer.s3_error()[0] == "AccessDenied"
    assert "Sec-Fetch-Site: cross-site" in answer.s3_error()[1]
    assert still_there(s3, bucket) == b"model bytes"


def test_a_cross_site_multipart_upload_is_refused(open_server: Open, victim: tuple[Any, str]) -> None:
    s3, bucket = victim
    s3_url = open_server.server.s3_url or ""
    answer = simple_post(s3_url, f"/{bucket}/planted.tar.gz?uploads", b"", Origin=EVIL)
    assert (answer.status, answer.s3_error()[0]) == (403, "AccessDenied")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_cross_site_invocation_is_refused_in_the_runtime_error_shape(open_server: Open) -> None:
    server, endpoint = open_server.server, open_server.endpoint
    answer = simple_post(server.url, f"/endpoints/{endpoint}/invocations", b"hello", Origin=EVIL)
    assert answer.status == 403
    assert answer.headers["x-amzn-errortype"] == "AccessDeniedException"
    assert answer.json_error()[0] == "AccessDeniedException"
    assert f"Origin: {EVIL}" in answer.json_error()[1]
    # An unchanged client sees AWS's error, with the message, through botocore.
    runtime = server.client("sagemaker-runtime")
    runtime.meta.events.register("before-send.*", _add_header("Origin", EVIL))
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName=endpoint, Body=b"hello", ContentType="text/plain")
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def _add_header(name: str, value: str) -> Any:
    def hook(request: Any, **_: Any) -> None:
        request.headers[name] = value

    return hook


def test_the_same_origin_and_no_origin_keep_working(open_server: Open, victim: tuple[Any, str]) -> None:
    server, endpoint = open_server.server, open_server.endpoint
    answer = simple_post(
        server.url, f"/endpoints/{endpoint}/invocations", b"hello", Origin=own_origin(server.url)
    )
    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["echo"] == {
        "action": "seen",
        "content_type": "text/plain;charset=UTF-8",
        "body_type": "bytes",
        "length": 5,
    }
    same_site = send(server.url, "GET", "/ping", {"Sec-Fetch-Site": "same-origin"})
    assert same_site.status == 200
    s3, bucket = victim
    s3_url = server.s3_url or ""
    deleted = simple_post(
        s3_url,
        f"/{bucket}?delete",
        DELETE_BODY,
        Origin=own_origin(s3_url),
        **{"Sec-Fetch-Site": "same-origin"},
    )
    assert deleted.status == 200, deleted.body
    assert b"<Deleted><Key>victim.tar.gz</Key>" in deleted.body
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


@pytest.mark.parametrize("port", ["main", "s3"])
def test_a_rebound_host_name_is_refused_on_both_ports(open_server: Open, port: str) -> None:
    server = open_server.server
    base = server.url if port == "main" else server.s3_url or ""
    bound_port = urlsplit(base).port
    rebound = {"Host": f"attacker.example:{bound_port}", "Origin": f"http://attacker.example:{bound_port}"}
    if port == "main":
        answer = send(
            base,
            "POST",
            "/",
            {
                **rebound,
                "X-Amz-Target": "SageMaker.ListModels",
                "Content-Type": "application/x-amz-json-1.1",
            },
            b"{}",
        )
        assert answer.headers["x-amzn-errortype"] == "AccessDeniedException"
        code, message = answer.json_error()
    else:
        answer = send(base, "GET", "/", rebound)
        code, message = answer.s3_error()
    assert answer.status == 403
    assert code in ("AccessDeniedException", "AccessDenied")
    assert message == (
        "Host header 'attacker.example' is not one of this server's names (127.0.0.1, localhost, [::1]); "
        "if clients reach this server by that name, add it to MOORAGE_SERVER_NAMES."
    )


def test_boto3_by_localhost_keeps_working_on_both_ports(open_server: Open) -> None:
    server = open_server.server
    by_name = RunningServer(
        server.process,
        server.data_dir,
        server.log_path,
        server.tag,
        url=server.url.replace("127.0.0.1", "localhost"),
        s3_url=(server.s3_url or "").replace("127.0.0.1", "localhost"),
    )
    assert open_server.endpoint in [
        e["EndpointName"] for e in by_name.client("sagemaker").list_endpoints()["Endpoints"]
    ]
    assert "Buckets" in by_name.client("s3").list_buckets()


# With --auth sigv4 ------------------------------------------------------------------------------------
@dataclass
class Signed:
    server: RunningServer
    admin: Key


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    data = tmp_path_factory.mktemp("browser-signed") / "data"
    admin = create_key(data)
    server = start_server(data, args=["--auth", "sigv4"], env={"MOORAGE_SERVER_NAMES": "moorage.internal"})
    try:
        yield Signed(server, admin)
    finally:
        server.stop()
        assert not wait_until_gone(server.tag), server.log()[-3000:]


def test_with_auth_a_foreign_host_is_refused_before_authentication(signed_server: Signed) -> None:
    server = signed_server.server
    for base in (server.url, server.s3_url or ""):
        rebound = send(base, "GET", "/", {"Host": f"attacker.example:{urlsplit(base).port}"})
        assert rebound.status == 403
        assert b"MOORAGE_SERVER_NAMES" in rebound.body and b"attacker.example" in rebound.body
        # A name the operator listed passes the Host check and meets authentication.
        listed = send(base, "GET", "/", {"Host": f"moorage.internal:{urlsplit(base).port}"})
        assert listed.status == 403
        assert b"MOORAGE_SERVER_NAMES" not in listed.body
        assert b"MissingAuthenticationToken" in listed.body or b"AccessDenied" in listed.body


def test_with_auth_signed_requests_carrying_an_origin_are_served(signed_server: Signed) -> None:
    """With --auth sigv4 a page cannot sign, so the Origin rule is off; signed requests work as before."""
    sm = signed_server.server.client("sagemaker", credentials=signed_server.admin)
    sm.meta.events.register("before-send.*", _add_header("Origin", EVIL))
    assert sm.list_models()["Models"] == []
    s3 = signed_server.server.client("s3", credentials=signed_server.admin)
    s3.meta.events.register("before-send.*", _add_header("Sec-Fetch-Site", "cross-site"))
    assert s3.list_buckets()["Buckets"] == []


# moorage serve-model --------------------------------------------------------------------------------
def test_serve_model_refuses_foreign_hosts_and_cross_site_requests(tmp_path: Path, artifacts: Any) -> None:
    server = launch_model_server(artifacts.fault_tar, tmp_path / "data")
    try:
        wait_for_url(server)
        port = urlsplit(server.url).port
        rebound = send(server.url, "GET", "/ping", {"Host": f"attacker.example:{port}"})
        assert rebound.status == 403
        assert json.loads(rebound.body)["code"] == 403
        assert rebound.json_error()[0] == "AccessDeniedException"
        assert "attacker.example" in rebound.json_error()[1]
        cross = simple_post(server.url, "/invocations", b"hello", Origin=EVIL)
        assert (cross.status, cross.json_error()[0]) == (403, "AccessDeniedException")
        # Local clients, by address or by localhost, still reach /ping (200 once loaded, 500 before).
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            assert send(server.url, "GET", "/ping", {"Host": host}).status in (200, 500)
    finally:
        server.stop()
        assert not wait_until_gone(server.tag), server.log()[-3000:]

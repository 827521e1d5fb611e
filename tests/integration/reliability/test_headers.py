"""Matrix row 6: odd, missing and malformed content types and headers, from boto3 and from raw sockets.

What must hold: a Content-Type the server does not know is not the server's business (input_fn gets
it unchanged and decides, as SageMaker's container does); a header value that botocore's model does
not allow is a 400 ValidationError; bytes that are not HTTP are a 400 and a closed connection; a
handler answering with a header value HTTP forbids is a 424, never a split response or a 500. After
each, the server keeps serving.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from integration.reliability.rig import delete_endpoint, deploy, error_of, invoke
from support.servers import RunningServer, start_server, wait_until_gone

pytestmark = pytest.mark.slow

ASCII_PATTERN = "Member must satisfy regular expression pattern: \\p{ASCII}*"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("headers") / "data")
    yield running
    running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


@pytest.fixture(scope="module")
def endpoint(server: RunningServer, artifacts: Any) -> Iterator[str]:
    sm = server.client("sagemaker")
    name = deploy(sm, f"file://{artifacts.fault_tar}")
    yield name
    delete_endpoint(sm, name)


def still_serving(server: RunningServer, endpoint: str) -> None:
    assert invoke(server.client("sagemaker-runtime"), endpoint, action="echo")["echo"] == {"action": "echo"}


def seen(server: RunningServer, endpoint: str, body: bytes, **headers: str) -> dict[str, Any]:
    response = server.client("sagemaker-runtime").invoke_endpoint(EndpointName=endpoint, Body=body, **headers)
    echo: dict[str, Any] = json.loads(response["Body"].read())["echo"]
    return echo


@pytest.mark.parametrize(
    "content_type",
    ["application/x-weird", "text/plain; charset=latin-1", "image/jpeg", "APPLICATION/JSON", "*/*", ""],
)
def test_an_unknown_content_type_reaches_input_fn_unchanged(
    server: RunningServer, endpoint: str, content_type: str
) -> None:
    echo = seen(server, endpoint, b"\xff\x00binary", ContentType=content_type)
    assert echo == {"action": "seen", "content_type": content_type, "body_type": "bytes", "length": 8}


def test_a_missing_content_type_reaches_input_fn_as_none(server: RunningServer, endpoint: str) -> None:
    echo = seen(server, endpoint, b"abc")
    assert echo == {"action": "seen", "content_type": None, "body_type": "bytes", "length": 3}


def test_duplicate_content_types_reach_input_fn_joined(server: RunningServer, endpoint: str) -> None:
    answer = raw_exchange(
        server,
        f"POST /endpoints/{endpoint}/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-a\r\nContent-Type: application/x-b\r\n"
        "Content-Length: 2\r\n\r\n{}".encode(),
    )
    status, _, body = split_response(answer)
    assert status == 200
    assert json.loads(body)["echo"]["content_type"] == "application/x-a, application/x-b"


def test_input_fn_refusing_a_content_type_is_a_model_error_with_its_status(
    server: RunningServer, endpoint: str
) -> None:
    with pytest.raises(ClientError) as caught:
        seen(server, endpoint, b"{}", ContentType="application/x-refused")
    assert error_of(caught.value) == (424, "ModelError")
    assert caught.value.response["OriginalStatusCode"] == 415
    assert caught.value.response["OriginalMessage"] == "input_fn does not take application/x-refused"
    still_serving(server, endpoint)


@pytest.mark.parametrize(
    ("header", "value", "member", "constraint"),
    [
        ("CustomAttributes", "café", "customAttributes", ASCII_PATTERN),
        ("CustomAttributes", "tab\there", "customAttributes", ASCII_PATTERN),
        (
            "CustomAttributes",
            "x" * 1025,
            "customAttributes",
            "Member must have length less than or equal to 1024",
        ),
        ("ContentType", "applicätion/json", "contentType", ASCII_PATTERN),
        (
            "ContentType",
            "a/" + "b" * 1023,
            "contentType",
            "Member must have length less than or equal to 1024",
        ),
        ("Accept", "x" * 1025, "accept", "Member must have length less than or equal to 1024"),
    ],
)
def test_header_values_outside_botocores_model_are_validation_errors(
    server: RunningServer, endpoint: str, header: str, value: str, member: str, constraint: str
) -> None:
    with pytest.raises(ClientError) as caught:
        seen(server, endpoint, b"{}", **{header: value})
    assert error_of(caught.value) == (400, "ValidationError")
    assert caught.value.response["Error"]["Message"] == (
        f"1 validation error detected: Value at '{member}' failed to satisfy constraint: {constraint}"
    )
    still_serving(server, endpoint)


def test_the_longest_allowed_custom_attributes_pass(server: RunningServer, endpoint: str) -> None:
    response = server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint,
        Body=b'{"action": "echo"}',
        ContentType="application/json",
        CustomAttributes="~" * 1024,
    )
    assert json.loads(response["Body"].read())["echo"] == {"action": "echo"}


def raw_exchange(server: RunningServer, request: bytes) -> bytes:
    """Send raw bytes; return the one response that comes back (read to its length, or to the close)."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            head, found, body = received.partition(b"\r\n\r\n")
            if found and len(body) >= int(split_response(head + found)[1].get("content-length", -1)):
                break
    return received


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize(
    ("what", "header_line", "message"),
    [
        (
            "a CR inside a value",
            b"X-Amzn-SageMaker-Custom-Attributes: a\rb",
            "Missing expected LF after header value",
        ),
        (
            "a bare LF",
            b"X-Amzn-SageMaker-Custom-Attributes: a\nX-Injected: 1",
            "Missing expected CR after header value",
        ),
        ("a NUL inside a value", b"X-Amzn-SageMaker-Custom-Attributes: a\x00b", "Invalid header value char"),
        ("a DEL inside a value", b"X-Amzn-SageMaker-Custom-Attributes: del\x7f", "Invalid header value char"),
        (
            "an obsolete folded line",
            b"Content-Type: application/x-a\r\n  folded",
            "Unexpected whitespace after header value",
        ),
        ("a space in a name", b"Content Type: application/x-a", "Invalid header token"),
        ("two Content-Lengths", b"Content-Length: 2", "Duplicate Content-Length"),
        (
            "Content-Length with chunked",
            b"Transfer-Encoding: chunked",
            "Content-Length can't be present with Transfer-Encoding",
        ),
    ],
)
def test_malformed_header_bytes_are_a_400_and_a_closed_connection(
    server: RunningServer, endpoint: str, what: str, header_line: bytes, message: str
) -> None:
    request = (
        f"POST /endpoints/{endpoint}/invocations HTTP/1.1\r\nHost: x\r\n".encode()
        + header_line
        + b"\r\nContent-Length: 2\r\n\r\n{}"
    )
    status, headers, body = split_response(raw_exchange(server, request))
    assert status == 400, what
    assert headers["connection"] == "close"
    assert json.loads(body) == {"__type": "ValidationError", "Message": f"Malformed HTTP request: {message}"}
    still_serving(server, endpoint)


@pytest.mark.parametrize(
    ("header", "value", "member"),
    [
        ("X-Amzn-SageMaker-Custom-Attributes", b"caf\xc3\xa9", "customAttributes"),  # UTF-8
        ("Content-Type", b"a\xffb", "contentType"),
        ("Accept", b"\xe2\x98\x83", "accept"),
    ],
)
def test_non_ascii_header_bytes_are_a_validation_error_and_the_connection_stays(
    server: RunningServer, endpoint: str, header: str, value: bytes, member: str
) -> None:
    request = (
        f"POST /endpoints/{endpoint}/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}: ".encode()
        + value
        + b"\r\nContent-Length: 2\r\n\r\n{}"
    )
    status, headers, body = split_response(raw_exchange(server, request))
    assert (status, headers["x-amzn-errortype"]) == (400, "ValidationError")
    assert json.loads(body)["Message"] == (
        f"1 validation error detected: Value at '{member}' failed to satisfy constraint: {ASCII_PATTERN}"
    )
    assert "connection" not in headers  # a well-formed request: keep-alive is kept


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain\r\nX-Evil: 1",
        "text/plain\nX-Evil: 1",
        "text/plain\x00",
        "text/plain\x7f",
        "text/\x1bplain",
    ],
)
def test_a_handler_answering_a_forbidden_header_value_is_a_model_error(
    server: RunningServer, endpoint: str, content_type: str
) -> None:
    runtime = server.client("sagemaker-runtime")
    with pytest.raises(ClientError) as caught:
        invoke(runtime, endpoint, action="content_type", value=content_type)
    response = caught.value.response
    assert error_of(caught.value) == (424, "ModelError")
    assert response["OriginalStatusCode"] == 500
    assert response["OriginalMessage"] == (
        "The handler returned a header value with CR, LF or another control character, which HTTP "
        f"forbids: {content_type!r}"
    )
    assert "x-evil" not in response["ResponseMetadata"]["HTTPHeaders"]
    still_serving(server, endpoint)


@pytest.mark.parametrize("content_type", ["text/plain; charset=utf-8", "a b", "application/vnd.x+json\ttab"])
def test_a_handler_content_type_that_http_allows_is_sent_as_given(
    server: RunningServer, endpoint: str, content_type: str
) -> None:
    response = server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint,
        Body=json.dumps({"action": "content_type", "value": content_type}),
        ContentType="application/json",
    )
    assert response["ContentType"] == content_type

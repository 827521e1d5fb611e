"""Fuzzing the header rules: Content-Type and Accept as the toolkit reads them, and InvokeEndpoint's checks.

Content types are passed on as strings, never parsed into something that could fail (spec §2.7, §2.8);
InvokeEndpoint's header checks (CustomAttributes, Content-Type, Accept, TargetVariant, InferenceId)
answer every value with either a pass or SageMaker's 400 ValidationError, exactly as botocore's model
draws the line, and never with anything else.
"""

from __future__ import annotations

import asyncio
import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moorage.api.runtime import RuntimeApi
from moorage.handler.content_types import UTF8_TYPES, accept_entries, input_body, resolve_accept
from moorage.httpd import Request, Response
from moorage.httpd.messages import BodyReader, Headers
from moorage.runtime.metrics import Metrics
from moorage.runtime.router import Router

FAST = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
ACCOUNT = "000000000000"
# Header values as the HTTP parser hands them over: latin-1 decoded bytes.
latin1 = st.text(st.characters(max_codepoint=255), max_size=1100)
media = st.sampled_from(["application/json", "text/csv", "*/*", "", "application/x-npy", "text/csv;q=0.9"])
content_types = st.none() | media | latin1


@FAST
@given(st.none() | media | latin1, st.sampled_from(["application/json", "text/csv"]))
def test_accept_is_the_default_only_when_missing_empty_or_any(accept: str | None, default: str) -> None:
    resolved = resolve_accept(accept, default)
    assert resolved == (default if accept in (None, "", "*/*") else accept)


@FAST
@given(latin1)
def test_accept_entries_split_on_commas_and_keep_everything_else(accept: str) -> None:
    entries = accept_entries(accept)
    assert all("," not in entry and " " not in entry for entry in entries)
    assert ",".join(entries) == accept.replace(" ", "")


@FAST
@given(st.binary(max_size=64), content_types)
def test_input_body_decodes_only_the_two_text_types(body: bytes, content_type: str | None) -> None:
    try:
        decoded = input_body(body, content_type)
    except UnicodeDecodeError:
        assert content_type in UTF8_TYPES
        return
    if content_type in UTF8_TYPES:
        assert decoded == body.decode("utf-8")
    else:
        assert decoded is body


HEADERS = {
    "X-Amzn-SageMaker-Custom-Attributes": "customAttributes",
    "Content-Type": "contentType",
    "Accept": "accept",
    "X-Amzn-SageMaker-Target-Variant": "targetVariant",
    "X-Amzn-SageMaker-Inference-Id": "inferenceId",
}
_VARIANT = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")


def allowed(header: str, value: str) -> bool:
    """botocore's sagemaker-runtime model, as InvokeEndpoint must enforce it."""
    if header == "X-Amzn-SageMaker-Custom-Attributes":
        return len(value) <= 1024 and all(32 <= ord(c) < 127 for c in value)
    if header in ("Content-Type", "Accept"):
        return len(value) <= 1024 and value.isascii()
    if header == "X-Amzn-SageMaker-Target-Variant":
        return len(value) <= 63 and _VARIANT.fullmatch(value) is not None
    return 1 <= len(value) <= 64


def request(headers: list[tuple[str, str]]) -> Request:
    reader = BodyReader(pause=lambda: None, resume=lambda: None, expect_continue=None)
    reader.feed(b"{}")
    reader.feed_eof()
    path = "/endpoints/fuzzed/invocations"
    return Request("POST", path, path, "", Headers(headers), ("127.0.0.1", 1), reader, 2)


@settings(FAST, max_examples=100)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(HEADERS)), latin1 | st.from_regex(_VARIANT, fullmatch=True)),
        max_size=4,
    )
)
def test_invoke_endpoint_headers_pass_or_are_a_validation_error(headers: list[tuple[str, str]]) -> None:
    api = RuntimeApi(Router(ACCOUNT), Metrics(), "us-east-1", ACCOUNT)
    # Repeated headers reach the checks joined with ", ", as RFC 9110 allows.
    joined: dict[str, str] = {}
    for name, value in headers:
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    refused = [HEADERS[name] for name, value in joined.items() if not allowed(name, value)]

    response = asyncio.run(api.invoke_endpoint(request(headers), "fuzzed"))
    assert isinstance(response, Response)  # a refusal is whole, never streamed

    assert response.status == 400
    assert dict(response.headers)["x-amzn-ErrorType"] == "ValidationError"
    message = json.loads(response.body)["Message"]
    if refused:
        count = len(refused)
        assert message.startswith(f"{count} validation error{'s' if count > 1 else ''} detected: "), message
        for member in refused:
            assert f"Value at '{member}' failed to satisfy constraint" in message
    else:  # the headers are fine; the endpoint simply does not exist here
        assert message == f"Endpoint fuzzed of account {ACCOUNT} not found."

"""Fuzzing the control plane with requests generated from botocore's own SageMaker shapes.

Every operation gets inputs built from its input shape (mostly well-typed, with names drawn from a
small pool so that requests meet each other's resources, and now and then a member of the wrong
type), run against a real store. Each either succeeds with a JSON-serialisable answer or fails with
a ControlPlaneError (ValidationException and friends, a 400); never anything else, which the HTTP
edge would turn into a 500. Raw bodies sent through the edge itself get 200 or 400, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.model import ListShape, MapShape, Shape, StructureShape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moorage.api.control import OPERATIONS, ControlPlane
from moorage.control.arns import ControlContext
from moorage.control.store import Store
from moorage.control.validation import _compiled, operation_model
from moorage.errors import ControlPlaneError
from moorage.httpd import Request
from moorage.httpd.messages import BodyReader, Headers

FAST = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
NAMES = ["a", "b", "m-1", "A"]  # valid, and few, so that requests meet each other's resources
BAD_NAMES = ["x" * 70, "bad name", ""]
URLS = ["s3://bucket/model.tar.gz", "file:///tmp/model.tar.gz", "/tmp/model.tar.gz", "s3://other/prefix/"]
BAD_URLS = ["https://10.0.0.1/model.tar.gz", "http://169.254.169.254/latest", "ftp://host/m.tar.gz", "s3://"]
ARNS = [
    "arn:aws:sagemaker:us-east-1:000000000000:model/a",
    "arn:aws:sagemaker:us-east-1:000000000000:endpoint/a",
    "arn:aws:sagemaker:us-east-1:000000000000:endpoint-config/b",
    "arn:aws:sagemaker:eu-west-1:111111111111:endpoint-config/a",
]
BAD_ARNS = ["arn:aws:s3:::bucket", "not an arn"]
WRONG = st.sampled_from([None, 0, -1, 1.5, True, "", "x", [], {}, [1], {"k": "v"}])


def for_member(name: str, shape: Shape, depth: int, noisy: bool) -> st.SearchStrategy[Any]:
    """Values for one member: by its name where that matters, else by its shape.

    `noisy`: now and then a value of the wrong type or outside the model's constraints.
    """
    string = shape.type_name == "string"
    if string and name.endswith("Name") and name != "VariantName":
        base: st.SearchStrategy[Any] = st.sampled_from(NAMES + BAD_NAMES if noisy else NAMES)
    elif name in ("ModelDataUrl", "S3Uri"):
        base = st.sampled_from(URLS + BAD_URLS if noisy else URLS)
    elif string and name.endswith("Arn"):
        base = st.sampled_from(ARNS + BAD_ARNS if noisy else ARNS)
    elif name == "InstanceType":
        base = st.sampled_from(["ml.m5.large", "local", "ml.nope"] if noisy else ["ml.m5.large", "local"])
    else:
        base = for_shape(shape, depth, noisy)
    return st.one_of(base, base, base, base, WRONG) if noisy else base


def _within(meta: dict[str, Any], low: int, high: int) -> tuple[int, int]:
    return max(low, int(meta.get("min", low))), min(high, int(meta.get("max", high)))


def for_shape(shape: Shape, depth: int, noisy: bool) -> st.SearchStrategy[Any]:
    meta = shape.metadata
    if isinstance(shape, StructureShape):
        if depth > 3:
            return st.just({})
        members = shape.members
        required = {m: for_member(m, members[m], depth + 1, noisy) for m in shape.required_members}
        optional = {m: for_member(m, s, depth + 1, noisy) for m, s in members.items() if m not in required}
        return st.fixed_dictionaries(required, optional=optional)
    if isinstance(shape, ListShape):
        low, high = _within(meta, 0, 3)
        member = for_member(shape.member.name, shape.member, depth + 1, noisy)
        return st.lists(member, min_size=0 if noisy else low, max_size=max(low, high))
    if isinstance(shape, MapShape):
        low, high = _within(meta, 0, 3)
        keys = for_shape(shape.key, depth + 1, noisy)
        return st.dictionaries(
            keys, for_shape(shape.value, depth + 1, noisy), min_size=low, max_size=max(low, high)
        )
    kind = shape.type_name
    if kind == "string":
        return _strings(shape, noisy)
    if kind in ("integer", "long"):
        low, high = _within(meta, -(2**31), 2**31)
        return st.integers(low, high) | (st.integers() if noisy else st.nothing())
    if kind in ("float", "double"):
        low, high = _within(meta, -1000, 1000)
        return st.floats(low, high, allow_nan=False) | (st.floats(allow_nan=False) if noisy else st.nothing())
    if kind == "boolean":
        return st.booleans()
    if kind == "timestamp":
        return st.floats(0, 4e9) | st.sampled_from(
            ["2026-01-01T00:00:00Z"] + (["yesterday"] if noisy else [])
        )
    return st.text(max_size=8)


def _strings(shape: Shape, noisy: bool) -> st.SearchStrategy[str]:
    low, high = _within(shape.metadata, 0, 40)
    enum = getattr(shape, "enum", None)
    pattern = shape.metadata.get("pattern")
    if enum:
        valid: st.SearchStrategy[str] = st.sampled_from(enum)
    elif pattern:
        valid = st.from_regex(_compiled(pattern), fullmatch=True).filter(lambda v: low <= len(v) <= high)
    else:
        valid = st.text(min_size=low, max_size=max(low, high))
    return valid | st.text(max_size=high + 2) if noisy else valid


CONTEXT = ControlContext("us-east-1", "000000000000")


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    """A store that already holds model "a", config "a" and endpoint "a", for requests to meet."""
    with tempfile.TemporaryDirectory() as temp:
        opened = Store(Path(temp) / "state.sqlite3")
        container = {"ModelDataUrl": "s3://bucket/model.tar.gz"}
        OPERATIONS["CreateModel"](opened, CONTEXT, {"ModelName": "a", "PrimaryContainer": container})
        variant = {"VariantName": "v", "ModelName": "a", "InstanceType": "local", "InitialInstanceCount": 1}
        OPERATIONS["CreateEndpointConfig"](
            opened, CONTEXT, {"EndpointConfigName": "a", "ProductionVariants": [variant]}
        )
        OPERATIONS["CreateEndpoint"](opened, CONTEXT, {"EndpointName": "a", "EndpointConfigName": "a"})
        yield opened
        opened.close()


def run_operation(store: Store, name: str, params: Any) -> None:
    try:
        result = OPERATIONS[name](store, CONTEXT, params)
    except ControlPlaneError:
        return
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_requests_from_the_shapes_succeed_or_are_a_client_error(store: Store, operation: str) -> None:
    shape = operation_model(operation).input_shape
    assert shape is not None

    @FAST
    @given(for_shape(shape, 0, noisy=False) | for_shape(shape, 0, noisy=True))
    def one(params: Any) -> None:
        run_operation(store, operation, params)

    one()


# Through the HTTP edge: raw bodies ------------------------------------------------------------------
class _Hooks:
    def endpoint_changed(self, name: str) -> None:
        pass


def edge_request(target: str, body: bytes) -> Request:
    reader = BodyReader(pause=lambda: None, resume=lambda: None, expect_continue=None)
    reader.feed(body)
    reader.feed_eof()
    headers = Headers([("X-Amz-Target", target), ("Content-Type", "application/x-amz-json-1.1")])
    return Request("POST", "/", "/", "", headers, ("127.0.0.1", 1), reader, len(body))


json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["ModelName", "Tags", "x"]), inner)
    ),
    max_leaves=8,
).map(lambda value: json.dumps(value).encode())


@FAST
@given(
    st.sampled_from([f"SageMaker.{name}" for name in sorted(OPERATIONS)] + ["SageMaker.Nope", "Other.X", ""]),
    json_bodies | st.binary(max_size=64) | st.sampled_from([b"NaN", b"[1e999]", b'{"a": Infinity}', b"\xff"]),
)
def test_raw_bodies_through_the_edge_are_never_a_500(store: Store, target: str, body: bytes) -> None:
    with ThreadPoolExecutor(1) as executor:
        plane = ControlPlane(store, CONTEXT, _Hooks(), executor)
        response = asyncio.run(plane.handle(edge_request(target, body)))
    assert response.status in (200, 400), (response.status, response.body)
    if response.status == 400:
        assert json.loads(response.body)["__type"] in (
            "ValidationException",
            "SerializationException",
            "UnknownOperationException",
        )

"""One request through Handler.transform: Accept, body types, results, errors, context (spec §2.7–§2.10)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import numpy as np
import pytest
import torch

from moorage.handler.pipeline import Handler, HandlerRequest

WriteModule = Callable[..., str]
LoadHandler = Callable[..., Handler]
MakeRequest = Callable[..., HandlerRequest]

ROW = [[float(i) / 10 for i in range(16)]]


def expected_output(reference: torch.nn.Linear, rows: list[list[float]] = ROW) -> list[list[float]]:
    result: list[list[float]] = reference(torch.tensor(rows)).detach().numpy().tolist()
    return result


# --- default handlers end to end ------------------------------------------------------------------


def test_json_in_json_out(
    load_handler: LoadHandler, make_request: MakeRequest, reference: torch.nn.Linear
) -> None:
    response = load_handler().transform(make_request(json.dumps(ROW)))
    assert response.status == 200
    assert response.content_type == "application/json"
    assert response.body == json.dumps(expected_output(reference)).encode()
    assert (response.reason, response.log, response.headers) == (None, None, ())


@pytest.mark.parametrize("accept", [None, "", "*/*"])
def test_missing_or_any_accept_uses_the_default_accept(
    load_handler: LoadHandler, make_request: MakeRequest, accept: str | None
) -> None:
    handler = load_handler(default_accept="text/csv")  # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT
    response = handler.transform(make_request(json.dumps(ROW), accept=accept))
    assert response.content_type == "text/csv"
    assert response.body.count(b",") == 3
    assert response.body.endswith(b"\n")


def test_an_accept_list_is_passed_raw_and_becomes_the_content_type(
    load_handler: LoadHandler, make_request: MakeRequest, reference: torch.nn.Linear
) -> None:
    response = load_handler().transform(make_request(json.dumps(ROW), accept="application/json, text/csv"))
    assert response.content_type == "application/json, text/csv"
    assert response.body == json.dumps(expected_output(reference)).encode()


def test_npy_request_with_float64_is_cast_for_a_float32_model(
    load_handler: LoadHandler, make_request: MakeRequest, reference: torch.nn.Linear
) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array(ROW, dtype=np.float64))  # what the SDK's NumpySerializer sends
    response = load_handler().transform(
        make_request(buffer.getvalue(), content_type="application/x-npy", accept="application/x-npy")
    )
    assert response.status == 200
    assert response.content_type == "application/x-npy"
    np.testing.assert_allclose(np.load(io.BytesIO(response.body)), expected_output(reference), rtol=1e-6)


def test_pickled_npy_is_refused_with_the_setting_named(
    load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object))
    response = load_handler().transform(make_request(buffer.getvalue(), content_type="application/x-npy"))
    assert response.status == 500
    assert b"MOORAGE_NPY_ALLOW_PICKLE" in response.body


def test_json_with_charset_is_bytes_and_fails_in_the_default_decoder(
    load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    response = load_handler().transform(
        make_request(json.dumps(ROW), content_type="application/json; charset=utf-8")
    )
    message = (
        "Content type application/json; charset=utf-8 is not supported by this framework.\n\n"
        "            Please implement input_fn to to deserialize the request data or an output_fn to\n"
        "            serialize the response. For more information, see the SageMaker Python SDK README."
    )
    assert response.status == 500
    assert response.body == message.encode()
    assert response.reason == message.replace("\n", " ")
    assert response.content_type is None
    assert response.log is not None and "UnsupportedFormatError" in response.log


def test_unsupported_accept_is_500_not_415(load_handler: LoadHandler, make_request: MakeRequest) -> None:
    response = load_handler().transform(make_request(json.dumps(ROW), accept="image/png"))
    assert response.status == 500
    assert response.body.startswith(b"Content type image/png is not supported by this framework.")


# --- what input_fn receives -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body_type"),
    [
        ("application/json", "str"),
        ("text/csv", "str"),
        ("application/json; charset=utf-8", "bytes"),
        ("text/csv; header=present", "bytes"),
        ("application/x-npy", "bytes"),
        ("text/plain", "bytes"),
        (None, "bytes"),
    ],
)
def test_body_is_str_only_for_the_two_exact_text_types(
    write_module: WriteModule,
    load_handler: LoadHandler,
    make_request: MakeRequest,
    content_type: str | None,
    body_type: str,
) -> None:
    program = write_module(
        """
        def input_fn(data, content_type):
            return [type(data).__name__, content_type]
        def predict_fn(data, model):
            return data
        def output_fn(prediction, accept):
            return prediction
        """
    )
    response = load_handler(program).transform(make_request(b"1", content_type=content_type))
    assert json.loads(response.body) == [body_type, content_type]


# --- results --------------------------------------------------------------------------------------

RESULT_MODULE = """
import torch
def transform_fn(model, data, content_type, accept):
    kind = data
    if kind == "tuple":
        return "<p>hi</p>", "text/html"
    if kind == "short-tuple":
        return ("only the body",)
    if kind == "dict":
        return {"a": [1, 2]}
    if kind == "tensor":
        return torch.tensor([1.0, 2.0])
    if kind == "bytes":
        return b"\\x00\\x01"
    if kind == "bytearray":
        return bytearray(b"ab")
    if kind == "str":
        return "h\\u00e9"
    return object()
"""


@pytest.mark.parametrize(
    ("kind", "status", "content_type", "body"),
    [
        ("tuple", 200, "text/html", b"<p>hi</p>"),
        ("dict", 200, "application/json", b'{\n  "a": [\n    1,\n    2\n  ]\n}'),
        ("bytes", 200, "application/json", b"\x00\x01"),
        ("bytearray", 200, "application/json", b"ab"),
        ("str", 200, "application/json", "hé".encode()),
        ("object", 503, None, b"Unsupported model output data type."),
        ("short-tuple", 500, None, b"tuple index out of range"),
    ],
)
def test_result_to_body_and_content_type(
    write_module: WriteModule,
    load_handler: LoadHandler,
    make_request: MakeRequest,
    kind: str,
    status: int,
    content_type: str | None,
    body: bytes,
) -> None:
    handler = load_handler(write_module(RESULT_MODULE))
    response = handler.transform(make_request(kind, content_type="text/csv"))
    assert (response.status, response.content_type, response.body) == (status, content_type, body)


def test_a_tensor_result_is_sent_as_torch_save_bytes(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    response = load_handler(write_module(RESULT_MODULE)).transform(
        make_request("tensor", content_type="text/csv")
    )
    restored = torch.load(io.BytesIO(response.body))
    torch.testing.assert_close(restored, torch.tensor([1.0, 2.0]))


def test_transform_fn_receives_model_body_content_type_and_accept(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    program = write_module(
        """
        def transform_fn(model, data, content_type, accept):
            return repr((type(model).__name__, data, content_type, accept))
        """
    )
    response = load_handler(program).transform(make_request('{"x": 1}', accept="*/*"))
    assert (
        response.body
        == repr(("RecursiveScriptModule", '{"x": 1}', "application/json", "application/json")).encode()
    )


# --- errors ---------------------------------------------------------------------------------------

ERROR_MODULE = """
from sagemaker_inference import errors
def input_fn(data, content_type):
    if data == "toolkit":
        raise errors.BaseInferenceToolkitError(400, "payload has no 'url'", "Bad\\r\\nRequest")
    if data == "generic":
        raise errors.GenericInferenceToolkitError(404)
    raise ValueError("boom\\nsecond line")
"""


def test_a_user_toolkit_error_sets_status_message_and_phrase(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    response = load_handler(write_module(ERROR_MODULE)).transform(make_request("toolkit", "text/csv"))
    assert (response.status, response.body, response.reason, response.content_type) == (
        400,
        b"payload has no 'url'",
        "Bad  Request",
        None,
    )


def test_a_generic_toolkit_error_defaults_to_invalid_request(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    response = load_handler(write_module(ERROR_MODULE)).transform(make_request("generic", "text/csv"))
    assert (response.status, response.body, response.reason) == (404, b"Invalid Request", "Invalid Request")


def test_other_errors_are_500_with_the_traceback_in_the_log_only(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    response = load_handler(write_module(ERROR_MODULE)).transform(make_request("other", "text/csv"))
    assert (response.status, response.body, response.reason) == (
        500,
        b"boom\nsecond line",
        "boom second line",
    )
    assert response.log is not None
    assert response.log.startswith("Traceback (most recent call last):")
    assert response.log.rstrip().endswith("ValueError: boom\nsecond line")


def test_tracebacks_in_errors_puts_the_toolkit_body_on_the_wire(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    handler = load_handler(write_module(ERROR_MODULE), tracebacks_in_errors=True)
    response = handler.transform(make_request("other", "text/csv"))
    assert response.body.startswith(b"boom\nsecond line\nTraceback (most recent call last):")
    assert response.log is not None
    assert response.body.decode() == "boom\nsecond line\n" + response.log


# --- context --------------------------------------------------------------------------------------

CONTEXT_MODULE = """
def input_fn(data, content_type, context):
    return {
        "id": context.get_request_id(0),
        "attributes": context.get_request_header(0, "X-Amzn-SageMaker-Custom-Attributes"),
        "lowercase": context.get_request_header(0, "x-amzn-sagemaker-custom-attributes"),
        "body": context.get_all_request_header(0)["body"],
        "props": sorted(context.system_properties),
        "server": context.system_properties["server_name"],
        "batch_size": context.system_properties["batch_size"],
        "gpu_id": context.system_properties["gpu_id"],
    }
def predict_fn(data, model, context):
    return data
def output_fn(prediction, accept, context):
    context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", "seen=" + prediction["attributes"])
    context.set_response_content_type(0, "text/ignored")
    context.set_response_status(201, "Created")
    prediction["status_read_back"] = list(context.get_response_status(0))
    return prediction
"""


def test_context_reads_request_headers_and_sets_response_status_and_headers(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    handler = load_handler(write_module(CONTEXT_MODULE), gpu_id=1, batch_size=1)
    response = handler.transform(
        make_request(
            "1",
            headers=(("X-Amzn-SageMaker-Custom-Attributes", "trace=abc"),),
            request_id="r-42",
        )
    )
    assert response.status == 201
    assert response.reason == "Created"
    assert response.headers == (("X-Amzn-SageMaker-Custom-Attributes", "seen=trace=abc"),)
    assert response.content_type == "application/json"  # the toolkit sets it after output_fn
    seen = json.loads(response.body)
    assert seen == {
        "id": "r-42",
        "attributes": "trace=abc",
        "lowercase": "trace=abc",
        "body": {"content-type": "application/json"},
        "props": [
            "batch_size",
            "gpu_id",
            "limit_max_image_pixels",
            "model_dir",
            "server_name",
            "server_version",
        ],
        "server": "moorage",
        "batch_size": 1,
        "gpu_id": 1,
        "status_read_back": [201, "Created"],
    }


def test_each_request_starts_with_a_fresh_status(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    program = write_module(
        """
        def transform_fn(model, data, content_type, accept, context):
            if data == "created":
                context.set_response_status(201, "Created")
            return data
        """
    )
    handler = load_handler(program)
    assert handler.transform(make_request("created", "text/csv")).status == 201
    second = handler.transform(make_request("plain", "text/csv"))
    assert (second.status, second.reason) == (200, None)

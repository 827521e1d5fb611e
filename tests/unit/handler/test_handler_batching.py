"""Handler.transform_batch: one predict_fn call on stacked inputs, one outcome per request."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from moorage.handler.pipeline import Handler, HandlerRequest

WriteModule = Callable[..., str]
LoadHandler = Callable[..., Handler]
MakeRequest = Callable[..., HandlerRequest]


def rows(value: float, count: int = 1) -> str:
    return json.dumps([[value] * 16] * count)


RECORDING_PREDICT = """
CALLS = []
def predict_fn(data, model):
    CALLS.append(tuple(data.shape) if hasattr(data, "shape") else ("list", len(data)))
    if isinstance(data, list):
        return [model(item) for item in data]
    return model(data)
"""


def calls(program: str) -> list[Any]:
    recorded: list[Any] = sys.modules[program].CALLS
    return recorded


def test_inputs_are_stacked_and_predicted_once(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    program = write_module(RECORDING_PREDICT)
    handler = load_handler(program, batch_size=3)
    requests = [make_request(rows(v), request_id=f"r{i}") for i, v in enumerate((0.1, 0.2, 0.3))]
    batched = handler.transform_batch(requests)
    assert calls(program) == [(3, 1, 16)]
    singles = [handler.transform(request) for request in requests]
    assert [r.status for r in batched] == [200, 200, 200]
    for batch_response, single_response in zip(batched, singles, strict=True):
        np.testing.assert_allclose(
            json.loads(batch_response.body), json.loads(single_response.body), rtol=1e-5, atol=1e-6
        )
        assert batch_response.content_type == "application/json"


def test_a_batch_of_one_still_gets_the_batch_dimension(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    program = write_module(RECORDING_PREDICT)
    [response] = load_handler(program).transform_batch([make_request(rows(0.5))])
    assert calls(program) == [(1, 1, 16)]
    assert len(json.loads(response.body)[0]) == 4


def test_inputs_of_different_shapes_arrive_as_a_list(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    program = write_module(RECORDING_PREDICT)
    responses = load_handler(program).transform_batch([make_request(rows(1.0)), make_request(rows(1.0, 2))])
    assert calls(program) == [("list", 2)]
    assert [len(json.loads(r.body)) for r in responses] == [1, 2]


def test_numpy_inputs_are_stacked_with_numpy(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    program = write_module(
        """
        import json
        import numpy as np
        SEEN = []
        def input_fn(data, content_type):
            return np.array(json.loads(data))
        def predict_fn(data, model):
            SEEN.append((type(data).__name__, data.shape))
            return data.sum(axis=-1)
        def output_fn(prediction, accept):
            return json.dumps(prediction.tolist())
        """
    )
    responses = load_handler(program).transform_batch(
        [make_request("[1, 2]"), make_request("[3, 4]"), make_request("[5, 6]")]
    )
    assert sys.modules[program].SEEN == [("ndarray", (3, 2))]
    assert [r.body for r in responses] == [b"3", b"7", b"11"]


def test_a_failing_input_fn_fails_only_its_request(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    program = write_module(RECORDING_PREDICT)
    responses = load_handler(program).transform_batch(
        [make_request(rows(0.1)), make_request("not json"), make_request(rows(0.3))]
    )
    assert [r.status for r in responses] == [200, 500, 200]
    assert responses[1].body.startswith(b"Expecting value")
    assert responses[1].content_type is None
    assert calls(program) == [(2, 1, 16)]


def test_a_predict_fn_that_rejects_the_batch_is_called_per_item(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    program = write_module(
        """
        CALLS = []
        def predict_fn(data, model):
            CALLS.append(tuple(data.shape))
            if data.dim() != 2:
                raise RuntimeError("expects one request")
            if data[0, 0] < 0:
                raise ValueError("negative input")
            return model(data)
        """
    )
    handler = load_handler(program)
    responses = handler.transform_batch(
        [make_request(rows(0.1)), make_request(rows(-1.0)), make_request(rows(0.3))]
    )
    assert calls(program) == [(3, 1, 16), (1, 16), (1, 16), (1, 16)]
    assert [r.status for r in responses] == [200, 500, 200]
    assert responses[1].body == b"negative input"
    expected = handler.transform(make_request(rows(0.3)))
    assert responses[2].body == expected.body


def test_a_result_that_cannot_be_split_falls_back_per_item(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    program = write_module(
        """
        CALLS = []
        def predict_fn(data, model):
            CALLS.append(tuple(data.shape))
            return data.sum()
        def output_fn(prediction, accept):
            return str(round(prediction.item(), 3))
        """
    )
    responses = load_handler(program).transform_batch([make_request(rows(0.5)), make_request(rows(0.25))])
    assert calls(program) == [(2, 1, 16), (1, 16), (1, 16)]
    assert [r.body for r in responses] == [b"8.0", b"4.0"]


def test_a_list_result_with_one_entry_per_request_is_split(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    program = write_module(
        """
        def predict_fn(data, model):
            return [{"n": int(row.sum().item())} for row in data]
        def output_fn(prediction, accept):
            return prediction, "application/vnd.test"
        """
    )
    responses = load_handler(program).transform_batch([make_request(rows(1.0)), make_request(rows(2.0))])
    assert [(r.body, r.content_type) for r in responses] == [
        (b'{\n  "n": 16\n}', "application/vnd.test"),
        (b'{\n  "n": 32\n}', "application/vnd.test"),
    ]


def test_each_request_keeps_its_own_accept_and_headers(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    program = write_module(
        """
        import json
        import torch
        BATCH_IDS = []
        def input_fn(data, content_type, context):
            return torch.tensor(json.loads(data))
        def predict_fn(data, model, context):
            BATCH_IDS.append([context.get_request_id(i) for i in range(len(context.request_processor))])
            return model(data.to(next(model.parameters()).device))
        def output_fn(prediction, accept, context):
            tag = context.get_request_header(0, "X-Amzn-SageMaker-Custom-Attributes")
            context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", tag)
            return accept
        """
    )
    requests = [
        make_request(rows(0.1), accept="text/csv", headers=(("X-Amzn-SageMaker-Custom-Attributes", "a"),)),
        make_request(rows(0.2), accept=None, headers=(("X-Amzn-SageMaker-Custom-Attributes", "b"),)),
    ]
    requests = [
        HandlerRequest(r.body, r.content_type, r.accept, r.headers, request_id=f"id-{i}")
        for i, r in enumerate(requests)
    ]
    responses = load_handler(program, default_accept="application/x-npy").transform_batch(requests)
    assert [(r.body, r.content_type) for r in responses] == [
        (b"text/csv", "text/csv"),
        (b"application/x-npy", "application/x-npy"),
    ]
    assert [r.headers for r in responses] == [
        (("X-Amzn-SageMaker-Custom-Attributes", "a"),),
        (("X-Amzn-SageMaker-Custom-Attributes", "b"),),
    ]
    assert sys.modules[program].BATCH_IDS == [["id-0", "id-1"]]


def test_transform_fn_is_called_once_per_request(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    program = write_module(
        """
        CALLS = []
        def transform_fn(model, data, content_type, accept):
            CALLS.append(data)
            if data == "bad":
                raise ValueError("bad item")
            return data.upper()
        """
    )
    responses = load_handler(program).transform_batch(
        [make_request("a", "text/csv"), make_request("bad", "text/csv"), make_request("c", "text/csv")]
    )
    assert calls(program) == ["a", "bad", "c"]
    assert [(r.status, r.body) for r in responses] == [(200, b"A"), (500, b"bad item"), (200, b"C")]


def test_default_handlers_batch_and_match_single_requests(
    load_handler: LoadHandler, make_request: MakeRequest, reference: torch.nn.Linear
) -> None:
    handler = load_handler(batch_size=4)
    values = (0.1, 0.2, 0.3, 0.4)
    responses = handler.transform_batch([make_request(rows(v)) for v in values])
    for value, response in zip(values, responses, strict=True):
        expected = reference(torch.full((1, 16), value)).detach().tolist()
        np.testing.assert_allclose(json.loads(response.body), expected, rtol=1e-5, atol=1e-6)


def test_an_empty_batch_is_an_empty_list(load_handler: LoadHandler) -> None:
    assert load_handler().transform_batch([]) == []

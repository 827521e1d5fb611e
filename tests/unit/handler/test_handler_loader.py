"""Finding the user module, the override rules and the context-by-parameter-count rule (spec §2.5, §2.6)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from moorage.handler.pipeline import Handler, HandlerRequest

WriteModule = Callable[..., str]
LoadHandler = Callable[..., Handler]
MakeRequest = Callable[..., HandlerRequest]

ROW = json.dumps([[1.0] * 16])


def test_a_missing_module_means_all_defaults(load_handler: LoadHandler, make_request: MakeRequest) -> None:
    handler = load_handler()
    assert handler.user_module is None
    response = handler.transform(make_request(ROW))
    assert response.status == 200
    assert len(json.loads(response.body)[0]) == 4


def test_the_program_module_overrides_only_what_it_defines(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    program = write_module(
        """
        def output_fn(prediction, accept):
            return "rows=%d accept=%s" % (prediction.shape[0], accept)
        """
    )
    handler = load_handler(program)
    assert handler.user_module == "inference"
    response = handler.transform(make_request(ROW, accept="text/plain"))
    assert (response.status, response.body, response.content_type) == (
        200,
        b"rows=1 accept=text/plain",
        "text/plain",
    )


def test_imported_names_count_as_overrides(
    write_module: WriteModule, load_handler: LoadHandler, make_request: MakeRequest
) -> None:
    write_module("def output_fn(prediction, accept):\n    return 'from helper'\n", name="helpers")
    program = write_module("from helpers import output_fn\n", name="entry")
    assert load_handler(program).transform(make_request(ROW)).body == b"from helper"


def test_transform_fn_with_another_function_is_the_exact_value_error(
    write_module: WriteModule, load_handler: LoadHandler
) -> None:
    program = write_module(
        """
        def transform_fn(model, data, content_type, accept):
            return data
        def predict_fn(data, model):
            return data
        """
    )
    with pytest.raises(ValueError) as caught:
        load_handler(program)
    assert str(caught.value) == (
        "Cannot use transform_fn implementation in conjunction with input_fn, predict_fn, "
        "and/or output_fn implementation"
    )


def test_load_order_and_arguments(
    write_module: WriteModule, load_handler: LoadHandler, model_dir: Path
) -> None:
    program = write_module(
        """
        CALLS = []
        def pre_model_fn(model_dir):
            CALLS.append(("pre_model_fn", model_dir))
        def model_fn(model_dir, context):
            CALLS.append(("model_fn", model_dir, context.model_name, context.system_properties["model_dir"]))
            return "the model"
        def model_warmup_fn(model_dir, model):
            CALLS.append(("model_warmup_fn", model_dir, model))
        """
    )
    load_handler(program)
    directory = str(model_dir)
    assert [
        ("pre_model_fn", directory),
        ("model_fn", directory, "model", directory),
        ("model_warmup_fn", directory, "the model"),
    ] == sys.modules[program].CALLS


def test_import_errors_propagate(write_module: WriteModule, load_handler: LoadHandler) -> None:
    program = write_module("import moorage_test_missing_dependency\n")
    with pytest.raises(ModuleNotFoundError, match="moorage_test_missing_dependency"):
        load_handler(program)


@pytest.mark.parametrize(
    ("signature", "gets_context"),
    [
        ("data, model", False),
        ("data, model, context", True),
        ("data, model, context=None", True),  # a defaulted parameter still counts
    ],
)
def test_context_is_passed_by_parameter_count(
    write_module: WriteModule,
    load_handler: LoadHandler,
    make_request: MakeRequest,
    signature: str,
    gets_context: bool,
) -> None:
    program = write_module(
        f"""
        def predict_fn({signature}):
            extra = locals().get("context")
            return {{"context": type(extra).__name__}}
        def output_fn(prediction, accept):
            return prediction["context"]
        """
    )
    body = load_handler(program).transform(make_request(ROW)).body
    assert body == (b"Context" if gets_context else b"NoneType")


@pytest.mark.parametrize(
    ("signature", "count"),
    [("*args", 1), ("a, b, c, d", 4), ("a, b, *rest, **options", 4), ("data", 1)],
)
def test_other_parameter_counts_fail_each_request_with_the_exact_type_error(
    write_module: WriteModule,
    load_handler: LoadHandler,
    make_request: MakeRequest,
    signature: str,
    count: int,
) -> None:
    program = write_module(f"def input_fn({signature}):\n    return None\n")
    handler = load_handler(program)  # the load itself succeeds, as in the toolkit
    response = handler.transform(make_request(ROW))
    assert response.status == 500
    assert response.body == f"input_fn takes {count} arguments but 2 were given.".encode()
    assert response.reason == f"input_fn takes {count} arguments but 2 were given."


def test_a_bad_model_fn_signature_fails_the_load(
    write_module: WriteModule, load_handler: LoadHandler
) -> None:
    program = write_module("def model_fn():\n    return 1\n")
    with pytest.raises(TypeError) as caught:
        load_handler(program)
    assert str(caught.value) == "model_fn takes 0 arguments but 1 were given."

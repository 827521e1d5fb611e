"""Find the user's handler module and decide which function serves each step (spec §2.5, §2.6).

The module is `SAGEMAKER_PROGRAM` without `.py`, imported from sys.path (the worker puts
`model_dir/code` and `model_dir` there). No such module means every default, silently, exactly as
the toolkit does. Functions are plain module attributes, so imported names count too. Each one is
called by the toolkit's parameter-count rule: as many parameters as arguments → called without
context; one more → the context is appended positionally; anything else → the toolkit's TypeError,
raised when the function is called (a bad input_fn fails each request, not the load).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from moorage.handler.context import Context
from moorage.handler.defaults import DefaultHandlers

__all__ = ["HandlerFunction", "HandlerFunctions", "load_functions"]


@dataclass(frozen=True)
class HandlerFunction:
    """One handler function and its parameter count, read once at load."""

    fn: Callable[..., Any]
    name: str
    parameter_count: int | None  # None: no signature could be read (the call then raises why)

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> HandlerFunction:
        try:
            count: int | None = len(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            count = None
        return cls(fn=fn, name=getattr(fn, "__name__", type(fn).__name__), parameter_count=count)

    def __call__(self, context: Context, *args: Any) -> Any:
        """Call with or without the context, by the toolkit's rule (spec §2.6)."""
        count = self.parameter_count
        if count is None:
            count = len(inspect.signature(self.fn).parameters)  # raises the reason it has none
        if count == len(args):
            return self.fn(*args)
        if count == len(args) + 1:
            return self.fn(*args, context)
        raise TypeError(f"{self.name} takes {count} arguments but {len(args)} were given.")


@dataclass(frozen=True)
class HandlerFunctions:
    """The functions serving each step, user-defined or default."""

    model_fn: HandlerFunction
    input_fn: HandlerFunction
    predict_fn: HandlerFunction
    output_fn: HandlerFunction
    transform_fn: HandlerFunction | None  # the user's; None means input_fn → predict_fn → output_fn
    pre_model_fn: HandlerFunction | None
    model_warmup_fn: HandlerFunction | None
    module_name: str | None  # the user module that was imported; None when there is none


def load_functions(program: str, defaults: DefaultHandlers) -> HandlerFunctions:
    """Import `program` if it exists and pick each function; the conflict check is the toolkit's."""
    if importlib.util.find_spec(program) is None:
        return HandlerFunctions(
            model_fn=HandlerFunction.of(defaults.model_fn),
            input_fn=HandlerFunction.of(defaults.input_fn),
            predict_fn=HandlerFunction.of(defaults.predict_fn),
            output_fn=HandlerFunction.of(defaults.output_fn),
            transform_fn=None,
            pre_model_fn=None,
            model_warmup_fn=None,
            module_name=None,
        )
    module = importlib.import_module(program)
    transform_fn = _attribute(module, "transform_fn")
    input_fn = _attribute(module, "input_fn")
    predict_fn = _attribute(module, "predict_fn")
    output_fn = _attribute(module, "output_fn")
    if transform_fn is not None and any(fn is not None for fn in (input_fn, predict_fn, output_fn)):
        raise ValueError(
            "Cannot use transform_fn implementation in conjunction with "
            "input_fn, predict_fn, and/or output_fn implementation"
        )
    return HandlerFunctions(
        model_fn=_attribute(module, "model_fn") or HandlerFunction.of(defaults.model_fn),
        input_fn=input_fn or HandlerFunction.of(defaults.input_fn),
        predict_fn=predict_fn or HandlerFunction.of(defaults.predict_fn),
        output_fn=output_fn or HandlerFunction.of(defaults.output_fn),
        transform_fn=transform_fn,
        pre_model_fn=_attribute(module, "pre_model_fn"),
        model_warmup_fn=_attribute(module, "model_warmup_fn"),
        module_name=module.__name__,
    )


def _attribute(module: ModuleType, name: str) -> HandlerFunction | None:
    value = getattr(module, name, None)
    return None if value is None else HandlerFunction.of(value)

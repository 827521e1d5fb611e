"""The request path inside a worker: one request in, one response out, as SageMaker's toolkit does it.

One request (`Handler.transform`, spec §2.7): the Accept is defaulted, the body becomes str or bytes,
then `transform_fn(model, body, content_type, accept)` runs, by default
`input_fn → predict_fn → output_fn`. A tuple result is `(body, content_type)`; otherwise the
response Content-Type is the Accept string. The body is sent as TorchServe sends it. Any exception
becomes the toolkit's error response (spec §2.10): status 500 or the toolkit error's own, reason
`str(e)` on one line, body `str(e)`. Deviation (STYLE.md): the traceback goes to `log`, and into the
body only with `tracebacks_in_errors`.

A result that is an iterator or generator streams (moorage's extension, docs/streaming.md): its first
item becomes the body and the rest ride in `HandlerResponse.parts` (moorage.streaming.parts); with the
default output_fn, predict_fn's generator is passed through as it is.

Batches (`Handler.transform_batch`, SAGEMAKER_TS_BATCH_SIZE > 1) are moorage's own contract.
SageMaker never hands user code a batch; it loops, reads request 0's headers for every item and
fails the whole batch when one item fails (spec §2.11). Here:

- input_fn runs once per request, with that request's own body, Content-Type and Accept. A request
  whose input_fn fails gets its own error response; the others go on.
- The decoded inputs are stacked along a new dimension 0: `torch.stack` when all are tensors of one
  shape, dtype and device; `numpy.stack` when all are arrays of one shape and dtype; otherwise the
  list itself. predict_fn is called ONCE with that stack, even for a batch of one, so it always sees
  the batch dimension. A batched predict_fn must therefore accept a leading batch dimension (or a
  list) and return a tensor or array whose dimension 0 has one entry per request, or a list or tuple
  with one entry per request, in request order (so a tuple of n outputs for n requests is read as
  one entry per request). Entry i should be what request i alone would have produced; the default
  handlers give exactly that for any model that maps leading dimensions through (e.g. Linear).
- Entry i goes to output_fn with request i's Accept, without the batch dimension.
- If predict_fn raises on the batch, or its result cannot be split into one entry per request,
  predict_fn is called once per request on that request's own, unstacked input, and output_fn gets
  its result as is. A handler written for one request at a time therefore still works when its
  predict_fn rejects the batch, and one bad request fails only itself (TorchServe fails the whole
  batch with 503). Handlers that do not honour the contract but whose predict_fn accepts the stack
  anyway break: the tutorial's `input.view(1, 3, 224, 224)` accepts a batch of one, and its
  output_fn then gets a row without the batch dimension and fails. Such handlers must keep
  SAGEMAKER_TS_BATCH_SIZE at 1 (under SageMaker the setting never reaches user code).
- A user transform_fn cannot be split: it is called once per request, as without batching.
- The context: while a per-request function runs, index 0 is that request (so single-request code
  reads its own headers); while the batched predict_fn runs, index i is the i-th stacked request.
"""

from __future__ import annotations

import io
import json
import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moorage.handler.content_types import input_body, resolve_accept
from moorage.handler.context import Context, RequestProcessor
from moorage.handler.defaults import DefaultHandlers
from moorage.handler.loader import HandlerFunctions, load_functions
from moorage.handler.toolkit_errors import describe_failure
from moorage.streaming.parts import PartIterator, is_stream

__all__ = ["Handler", "HandlerOptions", "HandlerRequest", "HandlerResponse"]

logger = logging.getLogger(__name__)

# TorchServe's answer when a handler returns a body it cannot serialise (spec §2.7 step 8).
UNSUPPORTED_OUTPUT = "Unsupported model output data type."


@dataclass(frozen=True)
class HandlerRequest:
    body: bytes
    content_type: str | None  # Content-Type header verbatim (None when the client sent none)
    accept: str | None  # Accept header verbatim (None when absent)
    headers: tuple[tuple[str, str], ...]  # the forwarded request headers, for context.get_request_header
    request_id: str


@dataclass(frozen=True)
class HandlerResponse:
    status: int  # 200 on success (or what user code set through the context), else the error status
    body: bytes
    content_type: str | None  # None on errors (TorchServe sets no Content-Type on errors)
    headers: tuple[tuple[str, str], ...]  # response headers user code set through the context
    reason: str | None  # reason phrase: the error's, CR/LF replaced by spaces, or what user code set
    log: str | None  # full traceback / detail for the worker's log when it failed
    # A streaming handler's parts after the first (which is `body`); None when it answered in one piece.
    parts: PartIterator | None = None


@dataclass(frozen=True)
class HandlerOptions:
    default_accept: str = "application/json"  # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT
    npy_allow_pickle: bool = False  # MOORAGE_NPY_ALLOW_PICKLE
    tracebacks_in_errors: bool = False  # MOORAGE_TRACEBACKS_IN_ERRORS
    gpu_id: int | None = None  # for context.system_properties
    batch_size: int = 1


@dataclass(frozen=True)
class _Decoded:
    """A batch item whose input_fn succeeded."""

    index: int
    accept: str
    data: Any


@dataclass(frozen=True)
class _Failed:
    """A batch item whose predict_fn failed on the per-item fallback."""

    error: Exception


class Handler:
    """A loaded model and the functions that serve it, for one worker process."""

    def __init__(
        self, *, functions: HandlerFunctions, model: Any, context: Context, options: HandlerOptions
    ) -> None:
        self._functions = functions
        self._model = model
        self._context = context
        self._options = options
        self._warned_unbatchable = False
        # predict_fn's iterator streams through the default output_fn untouched (moorage.streaming).
        self._default_output = isinstance(getattr(functions.output_fn.fn, "__self__", None), DefaultHandlers)

    @classmethod
    def load(cls, *, model_dir: Path, program: str, options: HandlerOptions) -> Handler:
        """Import the user module, then pre_model_fn, model_fn, model_warmup_fn (spec §2.1 step 10).

        `program` must already be importable (the worker puts model_dir/code and model_dir on
        sys.path and chdirs into model_dir). Exceptions propagate: the worker reports them.
        """
        context = Context(model_dir=str(model_dir), gpu_id=options.gpu_id, batch_size=options.batch_size)
        functions = load_functions(program, DefaultHandlers(npy_allow_pickle=options.npy_allow_pickle))
        if functions.pre_model_fn is not None:
            functions.pre_model_fn(context, str(model_dir))
        model = functions.model_fn(context, str(model_dir))
        if functions.model_warmup_fn is not None:
            functions.model_warmup_fn(context, str(model_dir), model)
        return cls(functions=functions, model=model, context=context, options=options)

    @property
    def user_module(self) -> str | None:
        """The user module that was imported, or None when every default is in use."""
        return self._functions.module_name

    def transform(self, request: HandlerRequest) -> HandlerResponse:
        """Serve one request. Never raises: failures come back as error responses."""
        processor = self._bind_one(request)
        try:
            accept = resolve_accept(request.accept, self._options.default_accept)
            body = input_body(request.body, request.content_type)
            fns, ctx = self._functions, self._context
            if fns.transform_fn is not None:
                result = fns.transform_fn(ctx, self._model, body, request.content_type, accept)
            else:
                data = fns.input_fn(ctx, body, request.content_type)
                prediction = fns.predict_fn(ctx, data, self._model)
                if self._default_output and is_stream(prediction):
                    result = prediction
                else:
                    result = fns.output_fn(ctx, prediction, accept)
            return self._reply(result, accept, processor)
        except Exception as exc:
            return self._failure(exc, processor)

    def transform_batch(self, requests: Sequence[HandlerRequest]) -> list[HandlerResponse]:
        """Serve a batch with one predict_fn call; one response per request, in order. Never raises."""
        if self._functions.transform_fn is not None:
            return [self.transform(request) for request in requests]
        processors = [_processor(request) for request in requests]
        responses: dict[int, HandlerResponse] = {}
        decoded: list[_Decoded] = []
        for index, request in enumerate(requests):
            self._context.bind([processors[index]])
            try:
                accept = resolve_accept(request.accept, self._options.default_accept)
                body = input_body(request.body, request.content_type)
                data = self._functions.input_fn(self._context, body, request.content_type)
                decoded.append(_Decoded(index, accept, data))
            except Exception as exc:
                responses[index] = self._failure(exc, processors[index])
        predictions = self._predict_batch(decoded, processors) if decoded else []
        for item, prediction in zip(decoded, predictions, strict=True):
            processor = processors[item.index]
            self._context.bind([processor])
            try:
                if isinstance(prediction, _Failed):
                    raise prediction.error
                if self._default_output and is_stream(prediction):
                    result = prediction
                else:
                    result = self._functions.output_fn(self._context, prediction, item.accept)
                responses[item.index] = self._reply(result, item.accept, processor)
            except Exception as exc:
                responses[item.index] = self._failure(exc, processor)
        return [responses[index] for index in range(len(requests))]

    def _predict_batch(self, decoded: list[_Decoded], processors: list[RequestProcessor]) -> list[Any]:
        """predict_fn once on the stacked inputs, else once per item (see the module docstring)."""
        self._context.bind([processors[item.index] for item in decoded])
        try:
            batch = _stack([item.data for item in decoded])
            entries = _split(self._functions.predict_fn(self._context, batch, self._model), len(decoded))
            if entries is not None:
                return entries
            reason = "its result has no entry per request along dimension 0"
        except Exception as exc:
            reason = f"it raised {type(exc).__name__}: {exc}"
        self._warn_unbatchable(reason)
        results: list[Any] = []
        for item in decoded:
            self._context.bind([processors[item.index]])
            try:
                results.append(self._functions.predict_fn(self._context, item.data, self._model))
            except Exception as exc:
                results.append(_Failed(exc))
        return results

    def _warn_unbatchable(self, reason: str) -> None:
        log = logger.debug if self._warned_unbatchable else logger.warning
        self._warned_unbatchable = True
        log("predict_fn did not take the batch (%s); calling it once per request instead", reason)

    def _bind_one(self, request: HandlerRequest) -> RequestProcessor:
        processor = _processor(request)
        self._context.bind([processor])
        return processor

    def _reply(self, result: Any, accept: str, processor: RequestProcessor) -> HandlerResponse:
        """The success response: body and Content-Type from a tuple, or the body and the Accept."""
        body, content_type = (result[0], result[1]) if isinstance(result, tuple) else (result, accept)
        parts = None
        if is_stream(body):
            # The first item is taken here, so a handler that fails before it answers an ordinary error.
            parts = PartIterator(body)
            body = next(parts, b"")
        try:
            payload = _body_bytes(body)
        except (TypeError, ValueError):
            detail = traceback.format_exc()
            return HandlerResponse(
                status=503,
                body=UNSUPPORTED_OUTPUT.encode("utf-8"),
                content_type=None,
                headers=_response_headers(processor),
                reason=UNSUPPORTED_OUTPUT,
                log=detail,
            )
        status = processor.get_response_status_code()
        if not (isinstance(status, int) and 100 <= status <= 599):
            raise ValueError(f"context.set_response_status was given an invalid HTTP status: {status!r}")
        return HandlerResponse(
            status=status,
            body=payload,
            content_type=None if content_type is None else str(content_type),
            headers=_response_headers(processor),
            reason=processor.get_response_status_phrase() or None,
            log=None,
            parts=parts,
        )

    def _failure(self, exc: Exception, processor: RequestProcessor) -> HandlerResponse:
        """The toolkit's error response (spec §2.10); the traceback always goes to `log`."""
        failure = describe_failure(exc)
        trace = "".join(traceback.format_exception(exc))
        processor.report_status(failure.status, reason_phrase=failure.phrase)
        body = f"{failure.message}\n{trace}" if self._options.tracebacks_in_errors else failure.message
        try:
            headers = _response_headers(processor)
        except Exception:
            headers = ()
        return HandlerResponse(
            status=failure.status,
            body=body.encode("utf-8", errors="replace"),
            content_type=None,
            headers=headers,
            reason=failure.phrase,
            log=trace,
        )


def _processor(request: HandlerRequest) -> RequestProcessor:
    return RequestProcessor.for_request(request.request_id, request.headers, request.content_type)


def _response_headers(processor: RequestProcessor) -> tuple[tuple[str, str], ...]:
    """Headers user code set through the context; Content-Type travels in its own field."""
    return tuple(
        (str(key), str(value))
        for key, value in processor.get_response_headers().items()
        if str(key).lower() != "content-type"
    )


def _body_bytes(body: Any) -> bytes:
    """TorchServe's serialisation of a handler's result (spec §2.7 step 8)."""
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, torch.Tensor):
        buffer = io.BytesIO()
        torch.save(body, buffer)
        return buffer.getvalue()
    return json.dumps(body, indent=2).encode("utf-8")


def _stack(items: list[Any]) -> Any:
    """Stack along a new dimension 0 when the items allow it, else hand the list over as it is."""
    first = items[0]
    if isinstance(first, torch.Tensor) and all(
        isinstance(item, torch.Tensor)
        and item.shape == first.shape
        and item.dtype == first.dtype
        and item.device == first.device
        for item in items
    ):
        return torch.stack(items)
    if isinstance(first, np.ndarray) and all(
        isinstance(item, np.ndarray) and item.shape == first.shape and item.dtype == first.dtype
        for item in items
    ):
        return np.stack(items)
    return list(items)


def _split(result: Any, count: int) -> list[Any] | None:
    """One entry per request along dimension 0, or None when the result does not have exactly that."""
    if isinstance(result, torch.Tensor) and result.dim() >= 1 and result.shape[0] == count:
        return list(result.unbind(0))
    if isinstance(result, np.ndarray) and result.ndim >= 1 and result.shape[0] == count:
        return list(result)
    if isinstance(result, list | tuple) and len(result) == count:
        return list(result)
    return None

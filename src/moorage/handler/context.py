"""The `context` object handed to handler functions that ask for one (spec §2.6).

Under SageMaker it is TorchServe's `ts.context.Context`; user code reads request headers from it and
sets response headers and status through it (custom attributes, for instance). This is the same
surface with the same method names and argument orders, so such code runs unchanged. One Context
lives as long as the handler (TorchServe also reuses one), and the pipeline re-binds its
`request_processor` list before every call into user code, one RequestProcessor per request.

`metrics` (TorchServe's metrics cache) is not provided: nothing here could make its values real.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import moorage

__all__ = ["MODEL_NAME", "Context", "RequestProcessor"]

# TorchServe registers SageMaker's single model under this name (spec §2.1 step 6).
MODEL_NAME = "model"


class RequestProcessor:
    """One request: its headers in, its response status and headers out (TorchServe's class)."""

    def __init__(self, request_id: str, request_properties: dict[str, Any]) -> None:
        self.request_id = request_id
        self._request_header = request_properties
        self._status_code = 200
        self._reason_phrase: str | None = None
        self._response_header: dict[str, Any] = {}

    @classmethod
    def for_request(
        cls, request_id: str, headers: Sequence[tuple[str, str]], content_type: str | None
    ) -> RequestProcessor:
        """TorchServe's request properties: a `body` entry naming the body's content type, then headers."""
        properties: dict[str, Any] = {"body": {"content-type": content_type or ""}}
        for name, value in headers:
            properties[name] = value
        return cls(request_id, properties)

    def get_request_property(self, key: str) -> Any:
        """A request header by name; exact spelling first, then ignoring case (HTTP names have none)."""
        if key in self._request_header:
            return self._request_header[key]
        folded = key.lower()
        for name, value in self._request_header.items():
            if name.lower() == folded:
                return value
        return None

    def get_request_properties(self) -> dict[str, Any]:
        return self._request_header

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self._status_code = code
        self._reason_phrase = reason_phrase

    def get_response_status_code(self) -> int:
        return self._status_code

    def get_response_status_phrase(self) -> str | None:
        return self._reason_phrase

    def add_response_property(self, key: str, value: Any) -> None:
        self._response_header[key] = value

    def get_response_headers(self) -> dict[str, Any]:
        return self._response_header

    def get_response_header(self, key: str) -> Any:
        return self._response_header.get(key)


class Context:
    """TorchServe's Context as SageMaker handlers see it: model facts plus the current requests."""

    def __init__(self, *, model_dir: str, gpu_id: int | None, batch_size: int) -> None:
        self.model_name = MODEL_NAME
        self.manifest: dict[str, Any] = {
            "runtime": "python",
            "model": {"modelName": MODEL_NAME, "modelVersion": "1.0"},
        }
        self._system_properties: dict[str, Any] = {
            "model_dir": model_dir,
            "gpu_id": gpu_id,
            "batch_size": batch_size,
            "server_name": "moorage",
            "server_version": moorage.__version__,
            "limit_max_image_pixels": True,
        }
        self.request_ids: dict[int, str] | None = None
        self.request_processor: list[RequestProcessor] | None = None

    @property
    def system_properties(self) -> dict[str, Any]:
        return self._system_properties

    def bind(self, processors: Sequence[RequestProcessor]) -> None:
        """Point the context at these requests; index i of every method below means processors[i]."""
        self.request_processor = list(processors)
        self.request_ids = {idx: processor.request_id for idx, processor in enumerate(processors)}

    def get_request_id(self, idx: int = 0) -> str | None:
        if self.request_ids is None:
            return None
        return self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> Any:
        return self._processor(idx).get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, Any]:
        return self._processor(idx).get_request_properties()

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> Any:
        return self.get_response_headers(idx).get("content-type")

    def get_response_status(self, idx: int) -> tuple[int, str | None]:
        processor = self._processor(idx)
        return processor.get_response_status_code(), processor.get_response_status_phrase()

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        if self.request_processor:
            self._processor(idx).report_status(code, reason_phrase=phrase)

    def set_all_response_status(self, code: int = 200, phrase: str = "") -> None:
        for processor in self.request_processor or ():
            processor.report_status(code, reason_phrase=phrase)

    def get_response_headers(self, idx: int) -> dict[str, Any]:
        return self._processor(idx).get_response_headers()

    def set_response_header(self, idx: int, key: str, value: Any) -> None:
        self._processor(idx).add_response_property(key, value)

    def _processor(self, idx: int) -> RequestProcessor:
        if self.request_processor is None:
            raise IndexError("no request is being handled (the context is bound during requests only)")
        return self.request_processor[idx]

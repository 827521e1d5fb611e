"""What a streaming handler's result becomes: an iterator of byte strings, one per item it yields.

A result streams when it is an iterator or a generator, sync or async (a list, a str, bytes or a tensor
does not: those are one body). Items must be bytes (or bytearray, memoryview) or str, sent as UTF-8.
An async generator is driven on a private event loop of the worker, one item per step, so the worker
stays the plain blocking loop it is. Closing the iterator closes the handler's generator: its
`finally` runs.

When the caller wants one body (plain InvokeEndpoint, async inference, batch transform, a batch), the
parts are joined here, within the response cap.
"""

from __future__ import annotations

import asyncio
import collections.abc
import dataclasses
import traceback
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from moorage.handler.toolkit_errors import describe_failure

if TYPE_CHECKING:
    from moorage.handler.pipeline import HandlerResponse

__all__ = ["PartIterator", "is_stream", "joined", "part_bytes"]


def is_stream(result: Any) -> bool:
    """Whether a handler's result is meant to stream (an iterator or generator, sync or async)."""
    return isinstance(result, collections.abc.Iterator | collections.abc.AsyncIterator)


def part_bytes(item: Any) -> bytes:
    """One yielded item as the bytes sent for it."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, bytearray | memoryview):
        return bytes(item)
    raise TypeError(
        f"a streaming handler yielded a {type(item).__name__}; yield bytes or str (str is sent as UTF-8)"
    )


class PartIterator:
    """The handler's iterator as byte strings; `close()` closes the handler's generator."""

    def __init__(self, result: Iterator[Any] | AsyncIterator[Any]) -> None:
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterator[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if isinstance(result, collections.abc.AsyncIterator):
            self._async = result
            self._loop = asyncio.new_event_loop()
        else:
            self._sync = result
        self.closed = False

    def __iter__(self) -> PartIterator:
        return self

    def __next__(self) -> bytes:
        if self.closed:
            raise StopIteration
        try:
            if self._sync is not None:
                return part_bytes(next(self._sync))
            assert self._async is not None and self._loop is not None
            try:
                item = self._loop.run_until_complete(anext(self._async))
            except StopAsyncIteration:
                raise StopIteration from None
            return part_bytes(item)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the handler's generator (its `finally` runs) and the private loop; idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            if self._sync is not None:
                close = getattr(self._sync, "close", None)
                if close is not None:
                    close()
            elif self._async is not None and self._loop is not None:
                aclose = getattr(self._async, "aclose", None)
                if aclose is not None:
                    self._loop.run_until_complete(aclose())
        finally:
            if self._loop is not None:
                self._loop.close()


def joined(response: HandlerResponse, cap: int) -> HandlerResponse:
    """The response with every part in its body, for a caller that wants one body; or the toolkit's
    error response when the handler raised on the way. The body stops growing just past `cap` (the
    worker then refuses it as too large, as any oversized answer). The generator is closed either way."""
    rest = response.parts
    if rest is None:
        return response
    pieces = [response.body]
    size = len(response.body)
    try:
        for part in rest:
            pieces.append(part)
            size += len(part)
            if size > cap:
                break
    except Exception as exc:
        failure = describe_failure(exc)
        return dataclasses.replace(
            response,
            status=failure.status,
            body=failure.message.encode("utf-8", "replace"),
            content_type=None,
            reason=failure.phrase,
            log="".join(traceback.format_exception(exc)),
            parts=None,
        )
    finally:
        rest.close()
    return dataclasses.replace(response, body=b"".join(pieces), parts=None)

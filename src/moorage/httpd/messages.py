"""The request and response types that the HTTP server hands to an application and takes back.

An application is `async def app(request: Request) -> Response | StreamingResponse`. The request body
is not read until the application asks for it, so a route can refuse an oversized or unauthenticated
request from its headers alone, before a byte of the body is buffered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from moorage.errors import PayloadTooLarge

__all__ = ["App", "BodyReader", "Headers", "Request", "Response", "StreamingResponse"]


class Headers:
    """Request headers in arrival order; lookups ignore case, as HTTP requires."""

    __slots__ = ("_index", "raw")

    def __init__(self, raw: list[tuple[str, str]]) -> None:
        self.raw = raw  # (name as sent, value)
        self._index: dict[str, str] | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        if self._index is None:
            index: dict[str, str] = {}
            for key, value in self.raw:
                lowered = key.lower()
                # Repeated headers are joined, as RFC 9110 allows for list-valued fields.
                index[lowered] = f"{index[lowered]}, {value}" if lowered in index else value
            self._index = index
        return self._index.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def items(self) -> Iterable[tuple[str, str]]:
        return iter(self.raw)


class BodyReader:
    """The body of one request as it arrives, with flow control back to the connection.

    The connection feeds chunks; the application reads them. When more than `high_water` bytes wait
    unread, the connection stops reading from the socket until the application catches up.
    """

    __slots__ = (
        "_chunks",
        "_eof",
        "_error",
        "_expect_continue",
        "_pause",
        "_resume",
        "_waiter",
        "buffered",
        "high_water",
        "received",
        "started",
    )

    def __init__(
        self,
        *,
        pause: Callable[[], None],
        resume: Callable[[], None],
        expect_continue: Callable[[], None] | None,
        high_water: int = 1 << 20,
    ) -> None:
        self._chunks: list[bytes] = []
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._pause = pause
        self._resume = resume
        self._expect_continue = expect_continue
        self.high_water = high_water
        self.buffered = 0
        self.received = 0
        self.started = False  # the application has asked for the body

    # Connection side -----------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self.buffered += len(data)
        self.received += len(data)
        if self.buffered > self.high_water:
            self._pause()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._wake()

    @property
    def complete(self) -> bool:
        return self._eof

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # Application side ----------------------------------------------------------------------------
    async def read_chunk(self) -> bytes:
        """The next chunk, or b"" at the end of the body."""
        if not self.started:
            self.started = True
            if self._expect_continue is not None:
                self._expect_continue()
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.pop(0)
        self.buffered -= len(chunk)
        if self.buffered <= self.high_water // 2:
            self._resume()
        return chunk

    async def read_all(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        while chunk := await self.read_chunk():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"HTTP content length exceeded {limit} bytes.")
            parts.append(chunk)
        return b"".join(parts)


@dataclass(eq=False)
class Request:
    method: str
    path: str  # percent-decoded path, without the query string
    raw_path: str  # as sent (what SigV4 signed)
    query_string: str
    headers: Headers
    client: tuple[str, int]
    reader: BodyReader
    content_length: int | None  # None for chunked bodies
    _body: bytes | None = field(default=None, repr=False)

    @classmethod
    def parse_target(cls, target: str) -> tuple[str, str, str]:
        raw_path, _, query = target.partition("?")
        return unquote(raw_path), raw_path, query

    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query_string, keep_blank_values=True)

    async def body(self, limit: int) -> bytes:
        """The whole body; PayloadTooLarge as soon as it is known to exceed `limit` bytes."""
        if self._body is None:
            if self.content_length is not None and self.content_length > limit:
                raise PayloadTooLarge(f"HTTP content length exceeded {limit} bytes.")
            self._body = await self.reader.read_all(limit)
        return self._body

    async def stream(self) -> AsyncIterator[bytes]:
        while chunk := await self.reader.read_chunk():
            yield chunk


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    reason: str | None = None  # a reason phrase other than the standard one (container errors use str(e))
    close: bool = False  # close the connection after this response


@dataclass
class StreamingResponse:
    """A body produced piece by piece; sent chunked unless `content_length` is known."""

    status: int
    chunks: AsyncIterator[bytes]
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_length: int | None = None
    reason: str | None = None
    close: bool = False


App = Callable[[Request], Awaitable[Response | StreamingResponse]]

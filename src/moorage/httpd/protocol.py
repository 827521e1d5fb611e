"""One HTTP/1.1 connection: parse with httptools, enforce the limits, run the app, write responses.

Why our own protocol and not uvicorn: uvicorn has no request-body cap and no deadline for receiving a
request (verified in shared/spec/reliability.md §0.6), and every microsecond here is per-request
overhead on top of the model. What this class guarantees:

- a new connection that has not sent a whole request line within `request_line_timeout_s` is closed
  (408 if it sent part of one), so idle sockets cannot hold the connection slots (probe 2, row 53);
- a request whose headers take longer than `header_timeout_s` from its first byte is cut off (408);
- a body that stalls for `body_idle_timeout_s`, or arrives slower than `body_min_rate_bps`, is cut off;
- a declared body over the route's cap is refused from its headers (413), before it is read;
- pipelined requests are answered in order, one at a time, with reading paused meanwhile;
- a header value with CR or LF is never written (no response splitting), whatever the app returns.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, cast

import httptools

from moorage.httpd.messages import App, BodyReader, Headers, Request, Response, StreamingResponse
from moorage.settings import HttpLimits

if TYPE_CHECKING:
    from moorage.httpd.server import ConnectionRegistry

__all__ = ["HttpProtocol"]

log = logging.getLogger("moorage.httpd")

_REASONS = {status.value: status.phrase for status in HTTPStatus}
_REASONS[424] = "Failed Dependency"

_date_cache: tuple[int, bytes] = (0, b"")
_LINGER_S = 2.0  # how long a refused body may keep arriving after the answer
_LINGER_BYTES = 16 * 1024 * 1024  # and how much of it is read (and dropped) at most
_REFUSED_LINGER_S = 0.5  # the same for a connection over the cap: short, as a flood of them is likely


def _date_header() -> bytes:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True).encode("latin-1"))
    return _date_cache[1]


def _clean_reason(reason: str) -> bytes:
    # Netty, and so SageMaker's stack, refuses CR/LF in a reason phrase; the toolkit replaces them.
    return reason.replace("\r", " ").replace("\n", " ").encode("latin-1", "replace")[:512]


def _encode_header(name: str, value: str) -> bytes:
    if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
        raise ValueError(f"refusing to write header {name!r}: it contains CR, LF or ':'")
    return f"{name}: {value}\r\n".encode("latin-1")


class HttpProtocol(asyncio.Protocol):
    def __init__(self, app: App, limits: HttpLimits, registry: ConnectionRegistry) -> None:
        self.app = app
        self.limits = limits
        self.registry = registry
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] = ("", 0)
        self.budget = ""  # the per-client budget this connection counts against (set by the registry)
        # The request being parsed, and the queue of parsed requests waiting their turn.
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._header_bytes = 0
        self._parsing: Request | None = None
        self._pipeline: list[tuple[Request, bool]] = []  # (request, keep_alive)
        self._cycle: asyncio.Task[None] | None = None
        self._closing = False
        # Flow control.
        self._reading_paused_by_body = False
        self._reading_paused_by_pipeline = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._streaming = False  # writing a StreamingResponse: a client that leaves cancels it
        # Deadlines: one timer, re-armed as the connection moves between phases.
        self._deadline = math.inf
        self._phase = "idle"  # idle | headers | body | busy
        self._body_deadline = 0.0
        self._headers_started = 0.0
        self._last_data = 0.0
        self._continue_pending = False
        self._line_deadline = math.inf  # until the first request line is complete (new connections)
        self._lingering = False  # answered and half-closed; discarding the rest of a refused body
        self._discarded = 0

    # asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = (str(peer[0]), int(peer[1]))
        refused = self.registry.add(self, self.client[0])
        if refused is not None:
            # Over a connection cap: say so once and hang up; no request is parsed. The client has
            # usually sent its request already, so close the way a refused body is closed (half-close,
            # drop what arrives), or the kernel's reset could destroy the 503 before it is read.
            body = json.dumps({"__type": "ServiceUnavailable", "Message": refused}, separators=(",", ":"))
            self.transport.write(self._status_only(503, body.encode()))
            self._close_after_response(lingering=True, linger_s=_REFUSED_LINGER_S)
            return
        wait = min(self.limits.request_line_timeout_s, self.limits.keepalive_timeout_s)
        self._arm("idle", wait)
        self._line_deadline = self._deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.discard(self)
        self._closing = True
        self._cancel_timer()
        if self._parsing is not None and not self._parsing.reader.complete:
            self._parsing.reader.fail(ConnectionResetError("client closed the connection"))
        for request, _ in self._pipeline:
            if not request.reader.complete:
                request.reader.fail(ConnectionResetError("client closed the connection"))
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionResetError("client closed the connection"))
        elif self._streaming and self._cycle is not None:
            self._cycle.cancel()  # the body's producer stops now, not at its next chunk (moorage.streaming)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            if self._lingering:
                self._discarded += len(data)
                if self._discarded > _LINGER_BYTES and self.transport is not None:
                    self.transport.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "Protocol upgrades are not supported.")
        except httptools.HttpParserError as exc:
            self._reject(400, f"Malformed HTTP request: {exc}")
        if self._line_deadline != math.inf and b"\n" in data:
            self._request_line_done()  # httptools reports no end of the URL; the line ends at its LF

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # httptools callbacks -----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        if self._phase == "idle":
            self._arm("headers", self.limits.header_timeout_s)
            self._deadline = min(self._deadline, self._line_deadline)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self.limits.max_header_bytes:
            self._reject(414, "Request line too long.")

    def _request_line_done(self) -> None:
        """The first request line is complete: from now on the header deadline alone applies."""
        if self._line_deadline != math.inf:
            self._line_deadline = math.inf
            if self._phase == "headers":
                self._deadline = self._headers_started + self.limits.header_timeout_s

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.limits.max_header_bytes:
            self._reject(431, "Request headers too large.")
            return
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self._closing:
            return
        headers = Headers(self._headers)
        length_header = headers.get("content-length")
        content_length: int | None
        if headers.get("transfer-encoding") is not None:
            content_length = None
        else:
            try:
                content_length = int(length_header) if length_header is not None else 0
            except ValueError:
                self._reject(400, "Invalid Content-Length.")
                return
        expects_continue = (headers.get("expect") or "").lower() == "100-continue"
        self._continue_pending = expects_continue
        reader = BodyReader(
            pause=self._pause_for_body,
            resume=self._resume_for_body,
            expect_continue=self._send_continue if expects_continue else None,
        )
        path, raw_path, query = Request.parse_target(self._url.decode("latin-1"))
        request = Request(
            method=self.parser.get_method().decode("ascii"),
            path=path,
            raw_path=raw_path,
            query_string=query,
            headers=headers,
            client=self.client,
            reader=reader,
            content_length=content_length,
        )
        self._parsing = request
        keep_alive = bool(self.parser.should_keep_alive())
        if content_length == 0:
            reader.feed_eof()
        else:
            now = self.loop.time()
            self._last_data = now
            expected = content_length or 0
            self._body_deadline = (
                now + self.limits.body_idle_timeout_s + expected / self.limits.body_min_rate_bps
            )
        self._pipeline.append((request, keep_alive))
        if self._cycle is None:
            self._start_next()
        elif self._phase == "headers":
            self._cancel_timer()

    def on_body(self, body: bytes) -> None:
        request = self._parsing
        if request is None:
            return
        self._last_data = self.loop.time()
        if request.content_length is None:
            # Chunked: the allowance grows with what has arrived, at the minimum rate.
            self._body_deadline = max(
                self._body_deadline,
                self._last_data + self.limits.body_idle_timeout_s,
            )
        request.reader.feed(body)

    def on_message_complete(self) -> None:
        request = self._parsing
        self._parsing = None
        if request is not None:
            request.reader.feed_eof()
        if self._cycle is not None and self._pipeline:
            # Another request is queued behind the one being answered: stop reading until it is done.
            self._pause_reading("pipeline")
        if self._phase == "body":
            self._phase = "busy"
            self._cancel_timer()

    # Request cycles ----------------------------------------------------------------------------
    def _start_next(self) -> None:
        request, keep_alive = self._pipeline.pop(0)
        self._resume_reading("pipeline")
        if request.reader.complete or self._continue_pending:
            self._phase = "busy"
            self._cancel_timer()
        else:
            self._phase = "body"
            self._arm_body_timer()
        self._cycle = self.loop.create_task(self._run_cycle(request, keep_alive))

    async def _run_cycle(self, request: Request, keep_alive: bool) -> None:
        try:
            try:
                response = await self.app(request)
            except ConnectionError:
                raise  # the client left while the app read its body: nobody to answer, nothing to log
            except Exception:
                log.exception("unhandled error answering %s %s", request.method, request.path)
                response = Response(
                    500,
                    b'{"__type":"InternalFailure","Message":"An internal error occurred."}',
                    [("Content-Type", "application/x-amz-json-1.1")],
                )
            if self._closing:
                return
            # A body left unread (the app answered from the headers) would desynchronise the parser.
            body_unread = not request.reader.complete
            close = response.close or not keep_alive or body_unread or self.registry.draining
            if isinstance(response, StreamingResponse):
                await self._write_streaming(request, response, close)
            else:
                self._write_response(request, response, close)
            if close:
                self._close_after_response(lingering=body_unread)
                return
        except (ConnectionError, asyncio.CancelledError):
            self._closing = True
            if self.transport is not None:
                self.transport.abort()
            return
        finally:
            self._cycle = None
            self.registry.cycle_done()
        if self._pipeline:
            self._start_next()
        else:
            self._arm("idle", self.limits.keepalive_timeout_s)

    def _head(
        self, status: int, reason: str | None, headers: list[tuple[str, str]], length: int | None, close: bool
    ) -> bytearray:
        phrase = _clean_reason(reason) if reason else _REASONS.get(status, "Unknown").encode()
        out = bytearray(b"HTTP/1.1 %d %s\r\n" % (status, phrase))
        out += b"date: " + _date_header() + b"\r\nserver: moorage\r\n"
        has_length = False
        for name, value in headers:
            if name.lower() == "content-length":
                has_length = True
            out += _encode_header(name, value)
        if length is None:
            out += b"transfer-encoding: chunked\r\n"
        elif not has_length:
            out += b"content-length: %d\r\n" % length
        if close:
            out += b"connection: close\r\n"
        out += b"\r\n"
        return out

    def _write_response(self, request: Request, response: Response, close: bool) -> None:
        assert self.transport is not None
        try:
            head = self._head(response.status, response.reason, response.headers, len(response.body), close)
        except ValueError:
            log.exception("response to %s %s had an unsafe header", request.method, request.path)
            head = self._head(500, None, [], 0, True)
            self.transport.write(bytes(head))
            return
        if request.method == "HEAD" or not response.body:
            self.transport.write(bytes(head))
        else:
            self.transport.writelines([bytes(head), response.body])

    async def _write_streaming(self, request: Request, response: StreamingResponse, close: bool) -> None:
        assert self.transport is not None
        head = self._head(response.status, response.reason, response.headers, response.content_length, close)
        self.transport.write(bytes(head))
        if request.method == "HEAD":
            return
        chunked = response.content_length is None
        self._streaming = True
        try:
            async for chunk in response.chunks:
                if not chunk:
                    continue
                if chunked:
                    self.transport.writelines([b"%x\r\n" % len(chunk), chunk, b"\r\n"])
                else:
                    self.transport.write(chunk)
                if self._write_paused:
                    await self._drain()
        finally:
            self._streaming = False
            aclose = getattr(response.chunks, "aclose", None)
            if aclose is not None:  # an async generator left at a yield runs its `finally` now
                await aclose()
        if chunked:
            self.transport.write(b"0\r\n\r\n")

    async def _drain(self) -> None:
        self._drain_waiter = self.loop.create_future()
        try:
            # A client that stops reading may hold the response only so long.
            await asyncio.wait_for(self._drain_waiter, self.limits.keepalive_timeout_s * 3)
        finally:
            self._drain_waiter = None

    # Flow control and deadlines ----------------------------------------------------------------
    def _send_continue(self) -> None:
        if self._continue_pending and self.transport is not None and not self._closing:
            self._continue_pending = False
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._last_data = self.loop.time()
            if self._phase == "busy" and self._parsing is not None:
                self._phase = "body"
                self._arm_body_timer()

    def _pause_for_body(self) -> None:
        self._pause_reading("body")

    def _resume_for_body(self) -> None:
        self._resume_reading("body")

    def _pause_reading(self, why: str) -> None:
        if why == "body":
            self._reading_paused_by_body = True
        else:
            self._reading_paused_by_pipeline = True
        if self.transport is not None and not self._closing:
            self.transport.pause_reading()

    def _resume_reading(self, why: str) -> None:
        if why == "body":
            self._reading_paused_by_body = False
        else:
            self._reading_paused_by_pipeline = False
        if self._reading_paused_by_body or self._reading_paused_by_pipeline:
            return
        if self.transport is not None and not self._closing:
            self.transport.resume_reading()
            # The client was not at fault while we held it back.
            self._last_data = self.loop.time()

    # Deadlines are plain numbers checked by the server's sweeper (server.py) a few times a second,
    # so a request costs no timer of its own.
    def _arm(self, phase: str, delay: float) -> None:
        now = self.loop.time()
        self._phase = phase
        self._deadline = now + delay
        if phase == "headers":
            self._headers_started = now

    def _arm_body_timer(self) -> None:
        self._deadline = 0.0  # in the body phase the deadline follows the body's own clocks

    def _cancel_timer(self) -> None:
        self._deadline = math.inf

    def check_deadline(self, now: float) -> None:
        """Enforce the current phase's deadline; called by the sweeper."""
        if self._closing or self.transport is None or self._deadline == math.inf:
            return
        if self._phase == "idle":
            if now >= self._deadline:
                self._closing = True
                self.transport.close()
        elif self._phase == "headers":
            if now >= self._deadline:
                if self._line_deadline != math.inf:
                    self._reject(408, "Request line was not received in time.")
                else:
                    self._reject(408, "Request headers were not received in time.")
        elif self._phase == "body":
            if self._reading_paused_by_body or self._reading_paused_by_pipeline or self._continue_pending:
                return  # we are the ones holding the client back
            if now - self._last_data >= self.limits.body_idle_timeout_s or now >= self._body_deadline:
                if self._parsing is not None:
                    self._parsing.reader.fail(TimeoutError("request body was not received in time"))
                self._reject(408, "Request body was not received in time.")

    def _close_after_response(self, *, lingering: bool, linger_s: float = _LINGER_S) -> None:
        """Close once the response is written. If the client may still be sending a body we refused,
        half-close and discard what arrives for a moment first: closing a socket with unread data makes
        the kernel send a reset, and the client would lose our answer (a 413, say) before reading it."""
        assert self.transport is not None
        self._closing = True
        self._cancel_timer()
        if not lingering or not self.transport.can_write_eof():
            self.transport.close()
            return
        self._lingering = True
        self.transport.write_eof()
        self.transport.resume_reading()
        self.loop.call_later(linger_s, self.transport.close)

    def _reject(self, status: int, message: str) -> None:
        """Answer an unparseable or too-slow request and hang up; no app code runs for it."""
        if self._closing or self.transport is None:
            return
        self._closing = True
        self._cancel_timer()
        if self._cycle is None:
            body = json.dumps({"__type": "ValidationError", "Message": message}).encode()
            self.transport.write(self._status_only(status, body))
        self.transport.close()

    def _status_only(self, status: int, body: bytes) -> bytes:
        head = self._head(status, None, [("Content-Type", "application/json")], len(body), True)
        return bytes(head) + body

    # Shutdown ------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._cycle is not None

    def close_if_idle(self) -> None:
        if self._cycle is None and not self._closing and self.transport is not None:
            self._closing = True
            self._cancel_timer()
            self.transport.close()

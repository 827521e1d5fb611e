"""Chunk signatures of S3 `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]` uploads, checked as the body passes.

With a streamed upload the header signature (the "seed") covers the headers only; each aws-chunked
chunk then carries a signature chained from the previous one over the SHA-256 of its data, and the
trailer (if any) one more over the trailing headers. `ChunkChecker` follows the framing on its own,
hashing data as it goes (nothing is held but one header line), and raises SignatureError(MISMATCH) at
the first chunk whose signature does not match. `CheckedBodyReader` puts it between the connection and
the S3 store: the store decodes the same bytes itself and commits an object only after the body's
end, which the reader reports only once every signature, the final one included, has matched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from moorage.api.sigv4 import EMPTY_SHA256, Problem, SignatureError, sign, signatures_match
from moorage.httpd.messages import BodyReader

__all__ = ["STREAMING_SIGNED", "CheckedBodyReader", "ChunkChecker"]

STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
_MAX_LINE = 4096
_MAX_TRAILER_BYTES = 16 * 1024
_TRAILER_SIGNATURE = "x-amz-trailer-signature"


def _malformed(detail: str) -> SignatureError:
    return SignatureError(Problem.MISMATCH, f"The signed aws-chunked body is malformed: {detail}.")


class ChunkChecker:
    def __init__(self, key: bytes, timestamp: str, scope: str, seed_signature: str, *, trailer: bool) -> None:
        self._key = key
        self._prefix = f"{timestamp}\n{scope}\n"
        self._previous = seed_signature
        self._trailer = trailer
        self._state = "size"  # size | data | data-end | trailer | end | done
        self._line = bytearray()
        self._remaining = 0
        self._claimed = ""
        self._hash = hashlib.sha256()
        self._trailers: list[str] = []
        self._trailer_signature: str | None = None
        self._trailer_bytes = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            if self._state == "data":
                take = min(self._remaining, end - pos)
                self._hash.update(view[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._check_chunk(self._hash.hexdigest())
                    self._state = "data-end"
                continue
            if self._state == "done":
                raise _malformed("there are bytes after its end")
            newline = data.find(b"\n", pos)
            stop = end if newline < 0 else newline + 1
            self._line += view[pos:stop]
            pos = stop
            if len(self._line) > _MAX_LINE:
                raise _malformed("a line is too long")
            if newline < 0:
                return
            line = bytes(self._line)
            self._line.clear()
            if not line.endswith(b"\r\n"):
                raise _malformed("lines must end with CRLF")
            self._take_line(line[:-2].decode("latin-1"))

    def finish(self) -> None:
        if self._state != "done":
            raise SignatureError(
                Problem.MISMATCH, "The signed aws-chunked body ended before its final signed chunk."
            )

    def _take_line(self, line: str) -> None:
        if self._state == "size":
            size_text, _, extension = line.partition(";")
            name, _, claimed = extension.partition("=")
            if name.strip() != "chunk-signature" or len(claimed.strip()) != 64:
                raise _malformed("every chunk needs a chunk-signature")
            try:
                size = int(size_text.strip(), 16)
            except ValueError:
                raise _malformed(f"bad chunk size {size_text[:32]!r}") from None
            self._claimed = claimed.strip().lower()
            if size < 0:
                raise _malformed("negative chunk size")
            if size == 0:
                self._check_chunk(EMPTY_SHA256)
                self._state = "trailer" if self._trailer else "end"
            else:
                self._remaining, self._hash, self._state = size, hashlib.sha256(), "data"
        elif self._state == "data-end":
            if line:
                raise _malformed("a chunk is longer than its declared size")
            self._state = "size"
        elif self._state == "end":
            if line:
                raise _malformed("trailing headers need a -TRAILER payload type")
            self._state = "done"
        elif self._state == "trailer":
            if not line:
                self._check_trailer()
                self._state = "done"
                return
            self._trailer_bytes += len(line)
            if self._trailer_bytes > _MAX_TRAILER_BYTES:
                raise _malformed("the trailers are too large")
            name, colon, value = line.partition(":")
            if not colon:
                raise _malformed("a trailer line has no ':'")
            if name.strip().lower() == _TRAILER_SIGNATURE:
                self._trailer_signature = value.strip().lower()
            else:
                self._trailers.append(f"{name.strip().lower()}:{value.strip()}\n")

    def _check_chunk(self, data_hash: str) -> None:
        string = f"AWS4-HMAC-SHA256-PAYLOAD\n{self._prefix}{self._previous}\n{EMPTY_SHA256}\n{data_hash}"
        expected = sign(self._key, string)
        if not signatures_match(expected, self._claimed):
            raise SignatureError(
                Problem.MISMATCH,
                "The chunk signature we calculated does not match the one the chunk carries.",
            )
        self._previous = expected

    def _check_trailer(self) -> None:
        if self._trailer_signature is None or len(self._trailer_signature) != 64:
            raise _malformed("the trailer has no x-amz-trailer-signature")
        trailer_hash = hashlib.sha256("".join(self._trailers).encode("latin-1")).hexdigest()
        string = f"AWS4-HMAC-SHA256-TRAILER\n{self._prefix}{self._previous}\n{trailer_hash}"
        if not signatures_match(sign(self._key, string), self._trailer_signature):
            raise SignatureError(
                Problem.MISMATCH,
                "The trailer signature we calculated does not match the one the body carries.",
            )


def _nothing() -> None:
    pass


class CheckedBodyReader(BodyReader):
    """A request's body reader, relaying the connection's bytes through a ChunkChecker.

    It stands in for the original reader on the Request (the connection feeds whatever reader the
    request holds), forwards feeding to it, and checks what the application reads. A failed check
    raises `error(SignatureError)` from `read_chunk`, before the end of the body is ever reported.
    """

    __slots__ = ("_checker", "_inner", "_to_error")

    def __init__(
        self, inner: BodyReader, checker: ChunkChecker, error: Callable[[SignatureError], Exception]
    ) -> None:
        super().__init__(pause=_nothing, resume=_nothing, expect_continue=None)
        self._inner = inner
        self._checker = checker
        self._to_error = error

    def feed(self, data: bytes) -> None:
        self._inner.feed(data)

    def feed_eof(self) -> None:
        self._inner.feed_eof()

    def fail(self, error: BaseException) -> None:
        self._inner.fail(error)

    @property
    def complete(self) -> bool:
        return self._inner.complete

    async def read_chunk(self) -> bytes:
        self.started = True
        chunk = await self._inner.read_chunk()
        try:
            if chunk:
                self._checker.feed(chunk)
            else:
                self._checker.finish()
        except SignatureError as exc:
            raise self._to_error(exc) from None
        return chunk

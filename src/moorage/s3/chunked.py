"""Decoding of `Content-Encoding: aws-chunked` bodies, with their trailing headers.

botocore sends aws-chunked (x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER) when it puts a
checksum in a trailer, which it does over https only; other SDKs also use the signed form
(STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]). The framing is

    <hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n ... 0[;chunk-signature=<sig>]\\r\\n
    [<trailer name>:<value>\\r\\n ...]\\r\\n

Chunk signatures are not checked here (authentication is the SigV4 layer's job); sizes, framing and
the declared decoded length are. The decoder is incremental and never holds more than one line.
"""

from __future__ import annotations

__all__ = ["AwsChunkedDecoder", "ChunkedFormatError", "is_aws_chunked"]

_MAX_LINE = 4096  # a chunk header is a hex size and an optional 64-hex-digit signature
_MAX_TRAILER_BYTES = 16 * 1024


class ChunkedFormatError(ValueError):
    """The body is not valid aws-chunked framing (truncated, malformed, or trailing garbage)."""


def is_aws_chunked(content_encoding: str | None, content_sha256: str | None) -> bool:
    encodings = [part.strip().lower() for part in (content_encoding or "").split(",")]
    return "aws-chunked" in encodings or (content_sha256 or "").startswith("STREAMING-")


class AwsChunkedDecoder:
    def __init__(self) -> None:
        self._state = "size"  # size | data | data-end | trailer | done
        self._line = bytearray()
        self._remaining = 0
        self._trailer_bytes = 0
        self.trailers: dict[str, str] = {}
        self.decoded = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> list[bytes]:
        """The payload bytes found in `data` (possibly none), in order."""
        out: list[bytes] = []
        view = memoryview(data)
        pos = 0
        end = len(view)
        while pos < end:
            if self._state == "data":
                take = min(self._remaining, end - pos)
                out.append(bytes(view[pos : pos + take]))
                pos += take
                self._remaining -= take
                self.decoded += take
                if self._remaining == 0:
                    self._state = "data-end"
                continue
            if self._state == "done":
                raise ChunkedFormatError("data after the end of the aws-chunked body")
            newline = data.find(b"\n", pos)
            stop = end if newline < 0 else newline + 1
            self._line += view[pos:stop]
            pos = stop
            if len(self._line) > _MAX_LINE:
                raise ChunkedFormatError("aws-chunked line too long")
            if newline < 0:
                break
            line = bytes(self._line)
            self._line.clear()
            if not line.endswith(b"\r\n"):
                raise ChunkedFormatError("aws-chunked lines must end with CRLF")
            self._take_line(line[:-2])
        return out

    def _take_line(self, line: bytes) -> None:
        if self._state == "data-end":
            if line:
                raise ChunkedFormatError("chunk data longer than its declared size")
            self._state = "size"
        elif self._state == "size":
            size_text, _, _extension = line.partition(b";")
            try:
                size = int(size_text.strip(), 16)
            except ValueError:
                raise ChunkedFormatError(f"bad chunk size {size_text[:32]!r}") from None
            if size < 0:
                raise ChunkedFormatError("negative chunk size")
            if size == 0:
                self._state = "trailer"
            else:
                self._remaining = size
                self._state = "data"
        elif self._state == "trailer":
            if not line:
                self._state = "done"
                return
            self._trailer_bytes += len(line)
            if self._trailer_bytes > _MAX_TRAILER_BYTES:
                raise ChunkedFormatError("aws-chunked trailers too large")
            name, sep, value = line.partition(b":")
            if not sep:
                raise ChunkedFormatError("malformed aws-chunked trailer")
            self.trailers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()

    def finish(self) -> dict[str, str]:
        """The trailers, once the body has ended; ChunkedFormatError if it ended early."""
        if self._state != "done":
            raise ChunkedFormatError("the aws-chunked body ended before its final chunk")
        return self.trailers

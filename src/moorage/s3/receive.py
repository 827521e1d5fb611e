"""Receiving an object or part body: streamed to a temp file, hashed on the way, verified at the end.

A body is never held in memory: chunks are gathered into ~1 MiB batches and each batch is hashed and
written on an executor thread while the next one arrives. What is checked, when the client sent it:

- Content-MD5 → BadDigest (InvalidDigest if it is not a base64 MD5);
- x-amz-content-sha256 as a hex digest → XAmzContentSHA256Mismatch;
- x-amz-checksum-<algorithm>, as a header or as an aws-chunked trailer → BadDigest;
- Content-Length / x-amz-decoded-content-length against what arrived → IncompleteBody.

botocore 1.44 sends x-amz-checksum-crc32 as a header over plain http (it moves checksums into an
aws-chunked trailer only over https), and the aws CLI does the same; both forms are accepted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from moorage.httpd import Request
from moorage.s3.checksums import ALGORITHMS, b64, new_hasher
from moorage.s3.chunked import AwsChunkedDecoder, ChunkedFormatError, is_aws_chunked
from moorage.s3.errors import (
    BadDigest,
    EntityTooLarge,
    IncompleteBody,
    InvalidArgument,
    InvalidDigest,
    InvalidRequest,
    XAmzContentSHA256Mismatch,
)
from moorage.s3.files import FileSink, offload

__all__ = ["BATCH_BYTES", "Received", "receive_body", "requested_checksum", "verify_small_body"]

BATCH_BYTES = 1024 * 1024
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Received:
    path: Path
    size: int
    md5_hex: str
    md5: bytes
    checksums: dict[str, bytes]  # algorithm → digest, for every algorithm computed
    checksum_algorithm: str | None  # the one the client named (header, trailer or sdk algorithm)


@dataclass(frozen=True)
class _Expectations:
    aws_chunked: bool
    size: int | None
    md5: bytes | None
    sha256: str | None
    checksum_algorithm: str | None
    checksum_value: str | None  # None: not known yet (a trailer) or not sent
    trailer: str | None  # the trailer that will carry the checksum


def _algorithm_from_header_name(name: str) -> str | None:
    lowered = name.strip().lower()
    for algorithm in ALGORITHMS:
        if lowered == f"x-amz-checksum-{algorithm.lower()}":
            return algorithm
    return None


def requested_checksum(request: Request) -> tuple[str | None, str | None]:
    """(algorithm, base64 value) named by the request's x-amz-checksum-* header, if any."""
    found = [
        (algorithm, value)
        for algorithm in ALGORITHMS
        if (value := request.headers.get(f"x-amz-checksum-{algorithm.lower()}")) is not None
    ]
    if len(found) > 1:
        raise InvalidRequest(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    if found:
        return found[0]
    return None, None


def _expectations(request: Request) -> _Expectations:
    headers = request.headers
    chunked = is_aws_chunked(headers.get("content-encoding"), headers.get("x-amz-content-sha256"))
    size: int | None = request.content_length
    if chunked:
        decoded = headers.get("x-amz-decoded-content-length")
        try:
            size = int(decoded) if decoded is not None else None
        except ValueError:
            raise InvalidArgument(f"x-amz-decoded-content-length {decoded!r} is not a number") from None
    md5: bytes | None = None
    if (content_md5 := headers.get("content-md5")) is not None:
        try:
            md5 = base64.b64decode(content_md5, validate=True)
        except (binascii.Error, ValueError):
            md5 = None
        if md5 is None or len(md5) != 16:
            raise InvalidDigest("The Content-MD5 you specified was invalid.")
    sha = headers.get("x-amz-content-sha256")
    algorithm, value = requested_checksum(request)
    trailer = headers.get("x-amz-trailer")
    if trailer is not None:
        if not chunked:
            raise InvalidRequest("x-amz-trailer requires an aws-chunked body")
        trailer_algorithm = _algorithm_from_header_name(trailer)
        if trailer_algorithm is None:
            raise InvalidRequest(f"Unsupported trailer {trailer!r}")
        if algorithm is not None and algorithm != trailer_algorithm:
            raise InvalidRequest(
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
            )
        algorithm = trailer_algorithm
    if algorithm is None and (sdk := headers.get("x-amz-sdk-checksum-algorithm")) is not None:
        algorithm = sdk.strip().upper()
        if algorithm not in ALGORITHMS:
            raise InvalidRequest(f"Checksum algorithm {sdk!r} is not supported.")
    return _Expectations(
        aws_chunked=chunked,
        size=size,
        md5=md5,
        sha256=sha.lower() if sha is not None and _HEX_SHA256.fullmatch(sha) else None,
        checksum_algorithm=algorithm,
        checksum_value=value,
        trailer=trailer.strip().lower() if trailer is not None else None,
    )


async def _decoded(request: Request, decoder: AwsChunkedDecoder) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        try:
            pieces = decoder.feed(chunk)
        except ChunkedFormatError as error:
            raise IncompleteBody(f"Malformed aws-chunked body: {error}") from None
        for piece in pieces:
            yield piece


async def receive_body(
    request: Request, temp: Path, *, max_size: int, also_compute: Iterable[str | None] = ()
) -> Received:
    """Stream the request body into `temp` (fsynced), verify it, and say what arrived.

    `also_compute` names checksum algorithms to compute whatever the client sent (a multipart
    upload's algorithm, for its parts). On any error the temp file is removed.
    """
    expect = _expectations(request)
    if expect.size is not None and expect.size > max_size:
        raise EntityTooLarge(
            "Your proposed upload exceeds the maximum allowed size",
            fields=(("ProposedSize", str(expect.size)), ("MaxSizeAllowed", str(max_size))),
        )
    algorithms = {name for name in also_compute if name is not None}
    if expect.checksum_algorithm is not None:
        algorithms.add(expect.checksum_algorithm)
    decoder = AwsChunkedDecoder() if expect.aws_chunked else None
    source = request.stream() if decoder is None else _decoded(request, decoder)
    sink = await offload(FileSink, temp, algorithms=frozenset(algorithms), sha256=expect.sha256 is not None)
    pending: asyncio.Future[None] | None = None
    try:
        batch: list[bytes] = []
        batch_bytes = 0
        total = 0
        async for piece in source:
            total += len(piece)
            if total > max_size:
                raise EntityTooLarge(
                    "Your proposed upload exceeds the maximum allowed size",
                    fields=(("MaxSizeAllowed", str(max_size)),),
                )
            batch.append(piece)
            batch_bytes += len(piece)
            if batch_bytes >= BATCH_BYTES:
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(offload(sink.write_chunks, batch))
                batch, batch_bytes = [], 0
        if pending is not None:
            await pending
            pending = None
        if batch:
            await offload(sink.write_chunks, batch)
        await offload(sink.finish)
        trailers = _finish_decoding(decoder)
        _verify(expect, sink, trailers)
    except BaseException:
        if pending is not None:
            await asyncio.wait([pending])  # let the writer thread finish before the file goes
            if not pending.cancelled():
                pending.exception()  # the error being raised is the one to report; this one is seen
        sink.close()
        temp.unlink(missing_ok=True)
        raise
    return Received(
        path=temp,
        size=sink.size,
        md5_hex=sink.md5.hexdigest(),
        md5=sink.md5.digest(),
        checksums=sink.digests(),
        checksum_algorithm=expect.checksum_algorithm,
    )


def _finish_decoding(decoder: AwsChunkedDecoder | None) -> dict[str, str]:
    if decoder is None:
        return {}
    try:
        return decoder.finish()
    except ChunkedFormatError as error:
        raise IncompleteBody(f"Malformed aws-chunked body: {error}") from None


def _verify(expect: _Expectations, sink: FileSink, trailers: dict[str, str]) -> None:
    if expect.size is not None and sink.size != expect.size:
        raise IncompleteBody(
            "You did not provide the number of bytes specified by the Content-Length HTTP header"
        )
    if expect.md5 is not None and sink.md5.digest() != expect.md5:
        raise BadDigest("The Content-MD5 you specified did not match what we received.")
    if expect.sha256 is not None and sink.sha256 is not None and sink.sha256.hexdigest() != expect.sha256:
        raise XAmzContentSHA256Mismatch(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    claimed = expect.checksum_value
    if expect.trailer is not None:
        claimed = trailers.get(expect.trailer)
        if claimed is None:
            raise IncompleteBody(f"The trailer {expect.trailer} was declared but not sent.")
    if claimed is not None and expect.checksum_algorithm is not None:
        computed = sink.checksums[expect.checksum_algorithm].digest()
        if b64(computed) != claimed.strip():
            raise BadDigest(
                f"The {expect.checksum_algorithm} you specified did not match the calculated checksum."
            )


def verify_small_body(request: Request, body: bytes) -> None:
    """The same integrity checks for a small XML body that was read into memory."""
    expect = _expectations(request)
    if expect.md5 is not None and hashlib.md5(body, usedforsecurity=False).digest() != expect.md5:
        raise BadDigest("The Content-MD5 you specified did not match what we received.")
    if expect.sha256 is not None and hashlib.sha256(body).hexdigest() != expect.sha256:
        raise XAmzContentSHA256Mismatch(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    if expect.checksum_algorithm is not None and expect.checksum_value is not None:
        hasher = new_hasher(expect.checksum_algorithm)
        hasher.update(body)
        if b64(hasher.digest()) != expect.checksum_value.strip():
            raise BadDigest(
                f"The {expect.checksum_algorithm} you specified did not match the calculated checksum."
            )

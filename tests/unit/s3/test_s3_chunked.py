"""aws-chunked decoding: botocore's own framing, signed chunks, arbitrary splits, and every way to fail."""

from __future__ import annotations

import io
import zlib

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.s3.checksums import b64
from moorage.s3.chunked import AwsChunkedDecoder, ChunkedFormatError, is_aws_chunked


def _decode(framed: bytes, cuts: list[int]) -> tuple[bytes, dict[str, str]]:
    decoder = AwsChunkedDecoder()
    out: list[bytes] = []
    start = 0
    for cut in [*sorted(min(cut, len(framed)) for cut in cuts), len(framed)]:
        out += decoder.feed(framed[start:cut])
        start = cut
    return b"".join(out), decoder.finish()


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=5000),
    chunk=st.integers(1, 2048),
    cuts=st.lists(st.integers(0, 6000), max_size=8),
)
def test_botocore_framing_decodes_under_any_split(data: bytes, chunk: int, cuts: list[int]) -> None:
    wrapper = AwsChunkedWrapper(io.BytesIO(data), Crc32Checksum, "x-amz-checksum-crc32", chunk_size=chunk)
    framed = b"".join(wrapper)
    decoded, trailers = _decode(framed, cuts)
    assert decoded == data
    assert trailers == {"x-amz-checksum-crc32": b64(zlib.crc32(data).to_bytes(4, "big"))}


def test_signed_chunks_without_trailers() -> None:
    sig = b"a" * 64
    framed = b"5;chunk-signature=" + sig + b"\r\nhello\r\n0;chunk-signature=" + sig + b"\r\n\r\n"
    assert _decode(framed, [3, 20, 21]) == (b"hello", {})


@pytest.mark.parametrize(
    "framed",
    [
        b"5\r\nhel",  # body ends inside a chunk
        b"5\r\nhello\r\n",  # no final chunk
        b"5\r\nhello\r\n0\r\n",  # no blank line after the final chunk
    ],
)
def test_truncated_bodies_fail_at_finish(framed: bytes) -> None:
    decoder = AwsChunkedDecoder()
    decoder.feed(framed)
    with pytest.raises(ChunkedFormatError):
        decoder.finish()


@pytest.mark.parametrize(
    "framed",
    [
        b"zz\r\nhello\r\n",  # not a hex size
        b"3\r\nhello\r\n",  # data longer than declared
        b"5\nhello\r\n",  # bare LF
        b"0\r\nno-colon\r\n\r\n",  # malformed trailer
        b"0\r\n\r\nextra",  # bytes after the end
        b"1" * 5000,  # an endless size line
    ],
)
def test_malformed_framing_fails_as_it_arrives(framed: bytes) -> None:
    with pytest.raises(ChunkedFormatError):
        AwsChunkedDecoder().feed(framed)


def test_detection() -> None:
    assert is_aws_chunked("aws-chunked", None)
    assert is_aws_chunked("gzip, aws-chunked", "UNSIGNED-PAYLOAD")
    assert is_aws_chunked(None, "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    assert not is_aws_chunked("gzip", "UNSIGNED-PAYLOAD")
    assert not is_aws_chunked(None, None)

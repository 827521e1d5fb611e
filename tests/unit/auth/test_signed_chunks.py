"""Chunk signatures of streamed S3 uploads, checked against AWS's published examples
(sigv4-streaming.html and sigv4-streaming-trailers.html: 65,536 + 1,024 bytes of "a")."""

from __future__ import annotations

import asyncio

import pytest

from moorage.api.signed_chunks import CheckedBodyReader, ChunkChecker
from moorage.api.sigv4 import (
    Problem,
    SignatureError,
    canonical_headers,
    canonical_request,
    sign,
    signing_key,
    string_to_sign,
)
from moorage.httpd.messages import BodyReader

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TIMESTAMP = "20130524T000000Z"
SCOPE = "20130524/us-east-1/s3/aws4_request"
KEY = signing_key(SECRET, "20130524", "us-east-1", "s3")
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNKS = (
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
)
TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
TRAILER_CHUNKS = (
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
)
TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"


def body(signatures: tuple[str, ...], trailer: str = "") -> bytes:
    parts = [
        f"10000;chunk-signature={signatures[0]}\r\n".encode() + b"a" * 65536 + b"\r\n",
        f"400;chunk-signature={signatures[1]}\r\n".encode() + b"a" * 1024 + b"\r\n",
        f"0;chunk-signature={signatures[2]}\r\n".encode(),
        trailer.encode(),
        b"\r\n",
    ]
    return b"".join(parts)


PLAIN = body(CHUNKS)
WITH_TRAILER = body(
    TRAILER_CHUNKS, f"x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:{TRAILER_SIGNATURE}\r\n"
)


def checker(*, trailer: bool = False) -> ChunkChecker:
    return ChunkChecker(KEY, TIMESTAMP, SCOPE, TRAILER_SEED if trailer else SEED, trailer=trailer)


def feed_in_pieces(check: ChunkChecker, data: bytes, size: int) -> None:
    for start in range(0, len(data), size):
        check.feed(data[start : start + size])
    check.finish()


@pytest.mark.parametrize("trailer", [False, True])
def test_the_documented_seed_signatures_come_out_of_the_headers(trailer: bool) -> None:
    payload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else "")
    headers = [
        ("Host", "s3.amazonaws.com"),
        ("x-amz-date", TIMESTAMP),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("x-amz-content-sha256", payload),
        ("Content-Encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("x-amz-trailer", "x-amz-checksum-crc32c") if trailer else ("Content-Length", "66824"),
    ]
    signed = tuple(sorted(name.lower() for name, _ in headers))
    canonical = canonical_request(
        "PUT", "/examplebucket/chunkObject.txt", "", canonical_headers(headers, signed), signed, payload
    )
    assert sign(KEY, string_to_sign(TIMESTAMP, SCOPE, canonical)) == (TRAILER_SEED if trailer else SEED)
    assert len(PLAIN) == 66824  # the documented Content-Length


@pytest.mark.parametrize("piece", [1 << 20, 1000, 7, 1])
def test_the_documented_bodies_verify_however_they_are_split(piece: int) -> None:
    feed_in_pieces(checker(), PLAIN, piece)
    feed_in_pieces(checker(trailer=True), WITH_TRAILER, piece)


def _refused(check: ChunkChecker, data: bytes) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        feed_in_pieces(check, data, 4096)
    assert caught.value.problem is Problem.MISMATCH
    return caught.value


def test_a_changed_data_byte_is_caught_at_the_end_of_its_chunk() -> None:
    tampered = bytearray(PLAIN)
    tampered[30_000] ^= 1  # inside the first chunk's data
    check = checker()
    check.feed(bytes(tampered[:40_000]))  # the chunk is not complete yet: nothing to say
    with pytest.raises(SignatureError) as caught:
        check.feed(bytes(tampered[40_000:]))
    assert "chunk signature" in caught.value.message


def test_every_kind_of_tampering_is_refused() -> None:
    wrong_sig = body((CHUNKS[0], CHUNKS[0], CHUNKS[2]))
    swapped = body((CHUNKS[1], CHUNKS[0], CHUNKS[2]))
    no_final = PLAIN[: PLAIN.index(b"0;chunk-signature")]
    unsigned_chunk = PLAIN.replace(f"400;chunk-signature={CHUNKS[1]}".encode(), b"400")
    extra_after_end = PLAIN + b"5\r\nhello\r\n"
    longer_chunk = PLAIN.replace(b"a\r\n0;", b"aa\r\n0;")
    for data in (wrong_sig, swapped, no_final, unsigned_chunk, extra_after_end, longer_chunk):
        _refused(checker(), data)
    # The trailer is signed too: a changed checksum, a missing or wrong trailer signature all fail.
    changed = WITH_TRAILER.replace(b"sOO8/Q==", b"AAAAAA==")
    unsigned = WITH_TRAILER.replace(f"x-amz-trailer-signature:{TRAILER_SIGNATURE}\r\n".encode(), b"")
    for data in (changed, unsigned):
        _refused(checker(trailer=True), data)
    # A body signed with another seed (another request's headers) does not verify.
    _refused(ChunkChecker(KEY, TIMESTAMP, SCOPE, TRAILER_SEED, trailer=False), PLAIN)


def test_a_huge_header_line_is_refused_without_being_held() -> None:
    _refused(checker(), b"1" * 10_000)


def test_the_checked_reader_reports_the_end_only_after_the_last_signature() -> None:
    async def read_all(data: bytes) -> bytes:
        inner = BodyReader(pause=lambda: None, resume=lambda: None, expect_continue=None)
        reader = CheckedBodyReader(inner, checker(), lambda exc: RuntimeError(exc.message))
        for start in range(0, len(data), 8192):
            reader.feed(data[start : start + 8192])  # the connection feeds whatever the request holds
        reader.feed_eof()
        assert reader.complete
        received = bytearray()
        while chunk := await reader.read_chunk():
            received += chunk
        assert reader.started
        return bytes(received)

    assert asyncio.run(read_all(PLAIN)) == PLAIN
    with pytest.raises(RuntimeError, match="ended before its final signed chunk"):
        asyncio.run(read_all(PLAIN[: PLAIN.index(b"0;chunk-signature")]))

"""S3's flexible checksums, including the numpy CRC32C / CRC64NVME, against references and known values."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.s3.checksums import ALGORITHMS, b64, composite_checksum, crc_register_update, new_hasher

_POLYS = {"CRC32C": (0x82F63B78, 32), "CRC64NVME": (0x9A6C9329AC4BC9B5, 64)}


def _reference(algorithm: str, data: bytes) -> bytes:
    """A plain bit-at-a-time reflected CRC: slow, obviously right."""
    poly, width = _POLYS[algorithm]
    mask = (1 << width) - 1
    crc = mask
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    return (crc ^ mask).to_bytes(width // 8, "big")


@pytest.mark.parametrize(
    ("algorithm", "check"),
    [
        # The catalogue "check" values: the CRC of b"123456789".
        ("CRC32", "cbf43926"),
        ("CRC32C", "e3069283"),
        ("CRC64NVME", "ae8b14860a799888"),
        ("SHA1", hashlib.sha1(b"123456789").hexdigest()),
        ("SHA256", hashlib.sha256(b"123456789").hexdigest()),
    ],
)
def test_check_values(algorithm: str, check: str) -> None:
    hasher = new_hasher(algorithm)
    hasher.update(b"123456789")
    assert hasher.digest().hex() == check


@pytest.mark.parametrize("algorithm", ["CRC32C", "CRC64NVME"])
@pytest.mark.parametrize("size", [0, 1, 255, 256, 4095, 4096, 4097, 70_001, 300_000])
def test_vectorised_crc_matches_the_reference(algorithm: str, size: int) -> None:
    data = os.urandom(size)
    hasher = new_hasher(algorithm)
    hasher.update(data)
    assert hasher.digest() == _reference(algorithm, data)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=20_000), cuts=st.lists(st.integers(0, 20_000), max_size=5))
def test_incremental_updates_equal_one_update(data: bytes, cuts: list[int]) -> None:
    for algorithm in ALGORITHMS:
        whole = new_hasher(algorithm)
        whole.update(data)
        pieces = new_hasher(algorithm)
        start = 0
        for cut in sorted(min(cut, len(data)) for cut in cuts):
            pieces.update(data[start:cut])
            start = cut
        pieces.update(data[start:])
        assert pieces.digest() == whole.digest(), algorithm


def test_register_update_carries_a_nonzero_register_across_the_vector_path() -> None:
    data = os.urandom(10_000)
    split = crc_register_update("CRC32C", crc_register_update("CRC32C", 0xFFFFFFFF, data[:3]), data[3:])
    assert (split ^ 0xFFFFFFFF).to_bytes(4, "big") == _reference("CRC32C", data)


def test_composite_checksum_is_the_checksum_of_part_checksums() -> None:
    parts = [zlib.crc32(b"first").to_bytes(4, "big"), zlib.crc32(b"second").to_bytes(4, "big")]
    expected = base64.b64encode(zlib.crc32(parts[0] + parts[1]).to_bytes(4, "big")).decode()
    assert composite_checksum("CRC32", parts) == f"{expected}-2"
    assert b64(b"\x00\x01") == "AAE="


def test_unknown_algorithm() -> None:
    with pytest.raises(KeyError):
        new_hasher("MD5")

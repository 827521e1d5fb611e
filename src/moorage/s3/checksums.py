"""S3's flexible checksums (x-amz-checksum-*): CRC32, CRC32C, CRC64NVME, SHA1, SHA256, incrementally.

CRC32 comes from zlib and the SHAs from hashlib. CRC32C and CRC64NVME have no implementation in the
standard library and botocore computes them only with the optional awscrt package, so they are computed
here with numpy (already a dependency): the data is cut into lanes whose CRCs advance in lock step, one
table lookup per byte column, and the lane results are folded together with the "append n zero bytes"
operator, which is linear over GF(2). That runs at a few hundred MB/s, where a byte loop in Python
manages about 6 MB/s.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALGORITHMS",
    "FULL_OBJECT_ALGORITHMS",
    "Hasher",
    "b64",
    "composite_checksum",
    "crc_register_update",
    "new_hasher",
]

ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
# Only the CRCs can be combined across parts, so only they support ChecksumType=FULL_OBJECT for
# multipart uploads; CRC64NVME supports nothing else.
FULL_OBJECT_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME")


class Hasher(Protocol):
    def update(self, data: bytes) -> None: ...

    def digest(self) -> bytes: ...


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def new_hasher(algorithm: str) -> Hasher:
    """A fresh checksum for one of `ALGORITHMS` (upper case); KeyError for anything else."""
    if algorithm == "CRC32":
        return _Crc32()
    if algorithm == "CRC32C":
        return _TableCrc(_CRC32C)
    if algorithm == "CRC64NVME":
        return _TableCrc(_CRC64NVME)
    if algorithm == "SHA1":
        return hashlib.sha1(usedforsecurity=False)
    if algorithm == "SHA256":
        return hashlib.sha256()
    raise KeyError(algorithm)


def composite_checksum(algorithm: str, part_digests: list[bytes]) -> str:
    """S3's checksum of a multipart object: the checksum of the parts' binary checksums, then "-<n>"."""
    hasher = new_hasher(algorithm)
    hasher.update(b"".join(part_digests))
    return f"{b64(hasher.digest())}-{len(part_digests)}"


class _Crc32:
    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


# Reflected CRCs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CrcSpec:
    width: int  # 32 or 64
    poly: int  # reflected polynomial

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1


_CRC32C = _CrcSpec(32, 0x82F63B78)
_CRC64NVME = _CrcSpec(64, 0x9A6C9329AC4BC9B5)
_LANE_BYTES = 256  # bytes per lane; lanes = len(data) // 256
_MIN_VECTOR_BYTES = 4096  # below this, the byte loop is faster than setting up the lanes


@dataclass
class _Tables:
    """Per-polynomial lookup tables, built on first use and kept for the process."""

    spec: _CrcSpec
    byte_table: list[int]
    np_table: npt.NDArray[np.uint64]
    dtype: type[np.unsignedinteger]
    # "advance the register over n zero bytes", as one 256-entry table per register byte.
    _zero_ops: dict[int, list[npt.NDArray[np.uint64]]] = field(default_factory=dict)
    _zero_cols: dict[int, list[int]] = field(default_factory=dict)

    def zero_columns(self, n: int) -> list[int]:
        """The linear map "feed n zero bytes" as its images of the register's unit vectors."""
        cached = self._zero_cols.get(n)
        if cached is not None:
            return cached
        if n == 1:
            table = self.byte_table
            cols = [table[(1 << bit) & 0xFF] ^ ((1 << bit) >> 8) for bit in range(self.spec.width)]
        elif n % 2 == 0:
            half = self.zero_columns(n // 2)
            cols = [_apply_columns(half, c) for c in half]
        else:
            one, rest = self.zero_columns(1), self.zero_columns(n - 1)
            cols = [_apply_columns(one, c) for c in rest]
        self._zero_cols[n] = cols
        return cols

    def zero_op(self, n: int) -> list[npt.NDArray[np.uint64]]:
        cached = self._zero_ops.get(n)
        if cached is not None:
            return cached
        cols = self.zero_columns(n)
        op = []
        for byte_index in range(self.spec.width // 8):
            entries = [_apply_columns(cols, value << (8 * byte_index)) for value in range(256)]
            op.append(np.array(entries, dtype=self.dtype))
        self._zero_ops[n] = op
        return op


def _apply_columns(cols: list[int], value: int) -> int:
    out = 0
    bit = 0
    while value:
        if value & 1:
            out ^= cols[bit]
        value >>= 1
        bit += 1
    return out


_TABLES: dict[_CrcSpec, _Tables] = {}


def _tables(spec: _CrcSpec) -> _Tables:
    found = _TABLES.get(spec)
    if found is None:
        table = []
        for i in range(256):
            crc = i
            for _ in range(8):
                crc = (crc >> 1) ^ spec.poly if crc & 1 else crc >> 1
            table.append(crc)
        dtype = np.uint32 if spec.width == 32 else np.uint64
        found = _Tables(spec, table, np.array(table, dtype=dtype), dtype)
        _TABLES[spec] = found
    return found


def crc_register_update(spec_name: str, register: int, data: bytes) -> int:
    """Advance a raw CRC register (no initial or final xor) over `data`; exposed for the tests."""
    spec = {"CRC32C": _CRC32C, "CRC64NVME": _CRC64NVME}[spec_name]
    return _advance(_tables(spec), register, data)


def _advance(tables: _Tables, register: int, data: bytes) -> int:
    lanes = len(data) // _LANE_BYTES
    if len(data) < _MIN_VECTOR_BYTES:
        return _advance_bytes(tables.byte_table, register, data)
    body = lanes * _LANE_BYTES
    # The register's own contribution, carried over the whole vectorised span of zero-equivalents ...
    carried = _apply_columns(tables.zero_columns(body), register) if register else 0
    # ... plus the span's CRC from a zero register, computed lane by lane and folded.
    register = carried ^ _lanes_crc(tables, memoryview(data)[:body], lanes)
    return _advance_bytes(tables.byte_table, register, memoryview(data)[body:])


def _advance_bytes(table: list[int], register: int, data: bytes | memoryview) -> int:
    for byte in data:
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


def _lanes_crc(tables: _Tables, data: memoryview, lanes: int) -> int:
    dtype = tables.dtype
    columns = np.frombuffer(data, dtype=np.uint8).reshape(lanes, _LANE_BYTES).T.astype(dtype)
    table = tables.np_table
    registers = np.zeros(lanes, dtype=dtype)
    low = dtype(0xFF)
    eight = dtype(8)
    for column in columns:
        registers = table[(registers ^ column) & low] ^ (registers >> eight)
    # Fold neighbours pairwise: crc(A || B) = zeros_|B|(crc(A)) ^ crc(B), for registers from zero.
    # Zero lanes in front change nothing, so pad the count up to a power of two first.
    padded = 1 << (lanes - 1).bit_length()
    if padded != lanes:
        registers = np.concatenate([np.zeros(padded - lanes, dtype=dtype), registers])
    span = _LANE_BYTES
    while len(registers) > 1:
        # `right` is the later lane: the earlier one is what gets shifted past it.
        left, right = registers[0::2], registers[1::2]
        shifted = np.zeros_like(left)
        for byte_index, op in enumerate(tables.zero_op(span)):
            shifted ^= op[(left >> dtype(8 * byte_index)) & low]
        registers = shifted ^ right
        span *= 2
    return int(registers[0])


class _TableCrc:
    __slots__ = ("_register", "_tables")

    def __init__(self, spec: _CrcSpec) -> None:
        self._tables = _tables(spec)
        self._register = spec.mask  # both CRCs start from all ones ...

    def update(self, data: bytes) -> None:
        self._register = _advance(self._tables, self._register, data)

    def digest(self) -> bytes:
        spec = self._tables.spec
        return (self._register ^ spec.mask).to_bytes(spec.width // 8, "big")  # ... and end inverted

"""Splitting, decompressing and packing records (transform/split.py), and the DataProcessing subset."""

from __future__ import annotations

import gzip
import random
import struct
from collections.abc import Iterator

import pytest

from moorage.transform.dataproc import DataProcessing, FilterError, JsonPath, split_answer
from moorage.transform.split import (
    RecordTooLarge,
    SplitError,
    decompressed,
    payloads,
    records,
    request_bodies,
)

NONE = DataProcessing(None, None, False, None)


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("size", [1, 3, 1000])
def test_lines_are_whole_records_whatever_the_chunking(size: int) -> None:
    data = b"a,1\n\nbb,2\r\nccc"
    found = [(r.body, r.offset) for r in records(_chunks(data, size), "Line", 100)]
    assert found == [(b"a,1", 0), (b"bb,2", 5), (b"ccc", 11)]


def test_a_line_longer_than_the_payload_fails_with_its_offset() -> None:
    with pytest.raises(RecordTooLarge, match="byte offset 3 is 11 bytes"):
        list(records(iter([b"ab\n0123456789\n"]), "Line", 8))


def _recordio(*items: bytes) -> bytes:
    out = b""
    for item in items:
        out += struct.pack("<II", 0xCED7230A, len(item)) + item + b"\0" * (-len(item) % 4)
    return out


def test_recordio_records_lose_their_framing_only_for_single_record() -> None:
    data = _recordio(b"abcde", b"xy")
    found = list(records(_chunks(data, 5), "RecordIO", 100))
    assert [r.body for r in found] == [b"abcde", b"xy"]
    assert [r.data for r in found] == [data[:16], data[16:]]
    single = [p.body for p in payloads(iter(found), multi=False, limit=100, processing=NONE)]
    multi = [p.body for p in payloads(iter(found), multi=True, limit=100, processing=NONE)]
    assert (single, multi) == ([b"abcde", b"xy"], [data])


def test_broken_recordio_and_truncated_tfrecord_are_refused() -> None:
    with pytest.raises(SplitError, match="magic"):
        list(records(iter([b"\0" * 8]), "RecordIO", 100))
    tf = struct.pack("<QI", 5, 0) + b"abcde" + b"\0\0\0\0"
    assert [r.body for r in records(iter([tf]), "TFRecord", 100)] == [b"abcde"]
    with pytest.raises(SplitError, match="ends inside a record"):
        list(records(iter([tf[:-1]]), "TFRecord", 100))


def test_gzip_members_are_decompressed_as_they_stream() -> None:
    data = gzip.compress(b"1\n2\n") + gzip.compress(b"3\n")
    assert b"".join(decompressed(_chunks(data, 7), "Gzip")) == b"1\n2\n3\n"
    with pytest.raises(SplitError, match="not valid gzip"):
        list(decompressed(iter([b"plain"]), "Gzip"))


def test_multi_record_packs_whole_records_up_to_the_limit() -> None:
    found = records(iter([b"aaa\nbbb\ncc\nd\n"]), "Line", 8)
    packed = [(p.body, p.count, p.first_index) for p in payloads(found, multi=True, limit=8, processing=NONE)]
    assert packed == [(b"aaa\nbbb\n", 2, 0), (b"cc\nd\n", 2, 2)]


@pytest.mark.parametrize(
    ("expression", "value", "selected"),
    [
        ("$", {"a": 1}, {"a": 1}),
        ("$.a.b", {"a": {"b": 2}}, 2),
        ("$['a','c']", {"a": 1, "b": 2, "c": 3}, {"a": 1, "c": 3}),
        ("$[1:]", [1, 2, 3], [2, 3]),
        ("$[0,2]", [1, 2, 3], [1, 3]),
        ("$[-1]", [1, 2, 3], 3),
        ("$[*]", [1, 2], [1, 2]),
    ],
)
def test_json_path_subset(expression: str, value: object, selected: object) -> None:
    assert JsonPath(expression).apply(value) == selected


@pytest.mark.parametrize("expression", ["a", "$..a", "$[?(@.a)]"])
def test_json_path_outside_the_subset_is_refused(expression: str) -> None:
    with pytest.raises(ValueError):
        JsonPath(expression)


def test_join_wraps_non_objects_and_filters_the_result() -> None:
    processing = DataProcessing.from_request({"JoinSource": "Input"}, "application/jsonlines")
    assert processing.output(b"[1,2]\n", b"3") == b'{"SageMakerInput":[1,2],"SageMakerOutput":3}'
    with pytest.raises(FilterError, match="no member 'z'"):
        JsonPath("$.z").apply({"a": 1})


def test_filters_need_csv_or_json() -> None:
    with pytest.raises(ValueError, match="ContentType"):
        DataProcessing.from_request({"InputFilter": "$[1]"}, "application/x-npy")


def test_an_answer_is_matched_to_its_records_by_lines_or_array_items() -> None:
    assert split_answer(b"1\n2\n", 2) == [b"1", b"2"]
    assert split_answer(b"[[1],[2]]", 2) == [b"[1]", b"[2]"]
    with pytest.raises(FilterError, match="one answer per record"):
        split_answer(b"1\n", 2)


@pytest.mark.parametrize("seed", range(20))
def test_the_multi_record_line_fast_path_sends_what_the_record_path_sends(seed: int) -> None:
    rng = random.Random(seed)
    lines = [b"x" * rng.randrange(0, 12) + rng.choice([b"\n", b"\r\n", b"\n\n"]) for _ in range(200)]
    data = b"".join(lines) + (b"tail" if seed % 2 else b"")
    limit = rng.randrange(16, 64)
    size = rng.randrange(1, 50)

    def bodies(fast: bool) -> list[tuple[bytes, int, int, int]]:
        chunks = _chunks(data, size)
        found = (
            request_bodies(chunks, "Line", multi=True, limit=limit, processing=NONE)
            if fast
            else payloads(records(chunks, "Line", limit), multi=True, limit=limit, processing=NONE)
        )
        return [(p.body, p.count, p.first_index, p.first_offset) for p in found]

    fast, slow = bodies(True), bodies(False)
    assert [b[1] for b in fast] and sum(b[1] for b in fast) == sum(b[1] for b in slow)
    assert b"".join(b[0] for b in fast) == b"".join(b[0] for b in slow)
    assert all(len(b[0]) <= limit for b in fast)


def test_the_fast_path_refuses_a_line_longer_than_the_payload() -> None:
    with pytest.raises(RecordTooLarge, match="byte offset 3"):
        list(
            request_bodies(iter([b"ab\n" + b"x" * 20 + b"\n"]), "Line", multi=True, limit=8, processing=NONE)
        )

"""What a handler's result becomes: items as bytes, async generators driven, `finally` run on close,
and the parts joined (or the handler's failure answered) when the caller wants one body."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from moorage.handler.pipeline import HandlerResponse
from moorage.streaming.parts import PartIterator, is_stream, joined


def test_iterators_and_generators_stream_other_results_do_not() -> None:
    async def agen() -> AsyncIterator[str]:
        yield "x"

    assert is_stream(iter([b"a"])) and is_stream(x for x in "ab") and is_stream(agen())
    assert not any(is_stream(value) for value in (b"ab", "ab", [b"a"], {"a": 1}, None))


def test_items_become_bytes_str_as_utf8_and_others_are_refused() -> None:
    assert list(PartIterator(iter(["é", b"\x00", bytearray(b"b"), memoryview(b"m")]))) == [
        "é".encode(),
        b"\x00",
        b"b",
        b"m",
    ]
    with pytest.raises(TypeError, match="yielded a int; yield bytes or str"):
        list(PartIterator(iter([1])))


def test_an_async_generator_is_driven_and_closing_runs_its_finally() -> None:
    closed: list[str] = []

    async def tokens() -> AsyncIterator[str]:
        try:
            yield "a"
            yield "b"
            yield "c"
        finally:
            closed.append("async finally")

    parts = PartIterator(tokens())
    assert next(parts) == b"a" and next(parts) == b"b"
    parts.close()
    assert closed == ["async finally"]
    assert list(parts) == []


def test_closing_a_sync_generator_runs_its_finally() -> None:
    closed: list[str] = []

    def tokens() -> Iterator[str]:
        try:
            while True:
                yield "tick"
        finally:
            closed.append("finally")

    parts = PartIterator(tokens())
    assert next(parts) == b"tick"
    parts.close()
    assert closed == ["finally"]


def response(first: bytes, rest: Iterator[object]) -> HandlerResponse:
    return HandlerResponse(200, first, "text/plain", (), None, None, PartIterator(rest))


def test_joined_gives_one_body_or_the_toolkits_error() -> None:
    whole = joined(response(b"a", iter(["b", "c"])), cap=100)
    assert (whole.status, whole.body, whole.parts) == (200, b"abc", None)

    def failing() -> Iterator[str]:
        yield "b"
        raise RuntimeError("late failure")

    failed = joined(response(b"a", failing()), cap=100)
    assert (failed.status, failed.body, failed.content_type, failed.parts) == (
        500,
        b"late failure",
        None,
        None,
    )
    assert failed.log is not None and "RuntimeError: late failure" in failed.log


def test_joined_stops_just_past_the_cap_and_closes_the_generator() -> None:
    produced: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:
            produced.append(1)
            yield b"x" * 10

    whole = joined(response(b"", endless()), cap=25)
    assert len(whole.body) == 30 and len(produced) == 3

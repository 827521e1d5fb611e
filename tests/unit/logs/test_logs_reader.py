"""Lines to events: time stamps, inherited stamps, unfinished lines, and seeking by time."""

from __future__ import annotations

import calendar
import os
from pathlib import Path

import pytest

from moorage.logs import LogsLayout
from moorage.logs.reader import MAX_LINE_BYTES, Budget, ForwardScan, TimeRange, parse_timestamp, seek_time
from support.logfiles import BASE_MS, logged, stamp, write_stream


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"2023-11-14T22:13:20.5Z done", calendar.timegm((2023, 11, 14, 22, 13, 20, 0, 0, 0)) * 1000 + 500),
        (b"2023-11-14T22:13:20,123456Z", calendar.timegm((2023, 11, 14, 22, 13, 20, 0, 0, 0)) * 1000 + 123),
        (b"2023-11-14T22:13:20+02:00 x", calendar.timegm((2023, 11, 14, 20, 13, 20, 0, 0, 0)) * 1000),
        (b"2023-11-14 22:13:20-0130 x", calendar.timegm((2023, 11, 14, 23, 43, 20, 0, 0, 0)) * 1000),
        (b"2023-13-14 22:13:20 bad month", None),
        (b"2023-11-14 25:13:20 bad hour", None),
        (b" 2023-11-14 22:13:20 not at the start", None),
        (b"Traceback (most recent call last):", None),
        (b"", None),
    ],
)
def test_parse_timestamp(line: bytes, expected: int | None) -> None:
    assert parse_timestamp(line) == expected


def test_naive_stamps_are_local_time_with_milliseconds() -> None:
    assert parse_timestamp(stamp(BASE_MS + 42).encode() + b" [worker 0] INFO x: hi") == BASE_MS + 42
    assert parse_timestamp(stamp(BASE_MS).encode()[:19] + b" preparing model") == BASE_MS


def _events(tmp_path: Path, text: str) -> list[tuple[int, str]]:
    write_stream(tmp_path, "AllTraffic/i-1", text)
    files = LogsLayout(tmp_path).snapshot("ep", "AllTraffic/i-1")
    scan, budget, found = ForwardScan(files, files.start, TimeRange()), Budget(1 << 20), []
    while (event := scan.next_event(budget)) is not None:
        found.append((event.timestamp, event.message))
    return found


def test_unstamped_lines_take_the_stamp_before_them(tmp_path: Path) -> None:
    text = logged(BASE_MS, "a") + "printed\n" + logged(BASE_MS + 5, "b") + "Traceback\n  line\n"
    assert _events(tmp_path, text) == [
        (BASE_MS, logged(BASE_MS, "a").rstrip("\n")),
        (BASE_MS, "printed"),
        (BASE_MS + 5, logged(BASE_MS + 5, "b").rstrip("\n")),
        (BASE_MS + 5, "Traceback"),
        (BASE_MS + 5, "  line"),
    ]


def test_leading_unstamped_lines_take_the_next_stamp(tmp_path: Path) -> None:
    text = "import noise\n" + logged(BASE_MS + 9, "a")
    assert [ts for ts, _ in _events(tmp_path, text)] == [BASE_MS + 9, BASE_MS + 9]


def test_a_file_without_stamps_uses_its_modification_time(tmp_path: Path) -> None:
    path = write_stream(tmp_path, "AllTraffic/i-1", "one\ntwo\n")
    os.utime(path, ns=(BASE_MS * 1_000_000, BASE_MS * 1_000_000))
    files = LogsLayout(tmp_path).snapshot("ep", "AllTraffic/i-1")
    event = ForwardScan(files, files.start, TimeRange()).next_event(Budget(1))
    assert event is not None and event.timestamp == BASE_MS


def test_an_unfinished_line_is_not_an_event_until_its_newline(tmp_path: Path) -> None:
    assert _events(tmp_path, logged(BASE_MS, "a") + "half a li") == [(BASE_MS, logged(BASE_MS, "a").rstrip())]
    assert [m for _, m in _events(tmp_path, logged(BASE_MS, "a") + "half a line\r\n")][1] == "half a line"


def test_undecodable_bytes_are_replaced(tmp_path: Path) -> None:
    write_stream(tmp_path, "AllTraffic/i-1", "")
    (tmp_path / "ep" / "AllTraffic" / "i-1.log").write_bytes(b"caf\xe9\n")
    files = LogsLayout(tmp_path).snapshot("ep", "AllTraffic/i-1")
    event = ForwardScan(files, 0, TimeRange()).next_event(Budget(1))
    assert event is not None and event.message == "caf\ufffd"


def test_seek_time_bisects_a_large_stream(tmp_path: Path) -> None:
    lines = [logged(BASE_MS + i * 10, f"event {i:05d} " + "x" * 40) for i in range(6000)]
    write_stream(tmp_path, "AllTraffic/i-1", "".join(lines))
    files = LogsLayout(tmp_path).snapshot("ep", "AllTraffic/i-1")
    assert files.end > 4 * 64 * 1024
    target = BASE_MS + 4321 * 10
    lower = seek_time(files, target)
    upper = seek_time(files, target, upper=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line.encode()))
    assert upper == offsets[4321]  # exactly the first line stamped at `target`
    assert lower in offsets and lower <= offsets[4321]
    assert offsets[4321] - lower <= 2 * 64 * 1024  # it did bisect, it did not start at the top
    assert seek_time(files, BASE_MS - 1) == 0
    assert seek_time(files, BASE_MS + 10**9, upper=True) == files.end


def test_an_overlong_line_is_cut_into_pieces(tmp_path: Path) -> None:
    bar = "\r".join(f"{i:07d}" for i in range(80_000))  # 640 KB of progress bar, no newline
    found = _events(tmp_path, logged(BASE_MS, "start") + bar + "\nnext\n" + "z" * (MAX_LINE_BYTES + 5))
    pieces = [message for _, message in found[1:-2]]
    assert [len(piece) for piece in pieces] == [MAX_LINE_BYTES, MAX_LINE_BYTES, len(bar) - 2 * MAX_LINE_BYTES]
    assert "".join(pieces) == bar
    assert found[-2] == (BASE_MS, "next")
    assert found[-1] == (BASE_MS, "z" * MAX_LINE_BYTES)  # the unfinished rest waits for its newline

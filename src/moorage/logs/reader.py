"""Reading a stream's files as CloudWatch log events: one event per line, with a time stamp.

A line's time stamp is the one it starts with (the workers log `%(asctime)s …`, the deployment log
`YYYY-MM-DD HH:MM:SS …`; ISO 8601 with a zone works too); a naive stamp is the server's local time,
which is the workers' too (they inherit its `TZ` and never call `tzset`). A line without one (a
`print`, a traceback) takes the stamp of the nearest stamped line before it, else after it (looking
at most `WINDOW` bytes either way), else the file's modification time. The stamp doubles as the
ingestion time.

Reads are bounded: they stop after a byte budget and report where they stopped, so one request never
scans more than a few MiB, and a time range is found by bisecting the (nearly sorted) stamps.
Only complete lines are events; a line still being written shows up once its newline arrives.
"""

from __future__ import annotations

import calendar
import functools
import os
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from moorage.logs.layout import StreamFiles

__all__ = [
    "SKEW_MS",
    "WINDOW",
    "Budget",
    "ForwardScan",
    "LogEvent",
    "TimeRange",
    "align",
    "parse_timestamp",
    "read_backward",
    "read_range",
    "seek_time",
]

WINDOW = 64 * 1024  # how far to look for a neighbouring time stamp, and the bisection's resolution
SKEW_MS = 2000  # workers of one instance share a file; their stamps may be this far out of order
MAX_LINE_BYTES = 256 * 1024  # CloudWatch's classic event size limit: a longer line becomes several events
_BLOCK = 256 * 1024

_STAMP = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?(?:(Z)|([+-])(\d\d):?(\d\d))?"
)


@dataclass(frozen=True)
class LogEvent:
    stream: str
    start: int  # stream position of the line
    end: int  # just after its newline
    timestamp: int  # ms since the epoch
    message: str

    @property
    def event_id(self) -> str:
        """Stable across requests: the stream and the line's position, as digits like CloudWatch's."""
        return f"{zlib.crc32(self.stream.encode()):010d}{self.start:020d}"

    @property
    def size(self) -> int:
        """What CloudWatch counts against a response's 1 MB: the UTF-8 message plus 26 bytes."""
        return len(self.message.encode()) + 26


@dataclass(frozen=True)
class TimeRange:
    """startTime (inclusive) and endTime (exclusive, as CloudWatch's GetLogEvents treats it), in ms."""

    start: int | None = None
    end: int | None = None

    def contains(self, timestamp: int) -> bool:
        return (self.start is None or timestamp >= self.start) and (self.end is None or timestamp < self.end)


class Budget:
    """Bytes one request may still scan; shared by every stream it reads."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self, count: int) -> None:
        self.left -= count

    @property
    def exhausted(self) -> bool:
        return self.left <= 0


@functools.lru_cache(maxsize=4096)
def _local_seconds(fields: tuple[int, int, int, int, int, int]) -> int | None:
    try:
        return int(time.mktime((*fields, 0, 0, -1)))
    except (OverflowError, ValueError):
        return None


def parse_timestamp(line: bytes) -> int | None:
    """The time stamp a line starts with, in ms since the epoch; None when it has none."""
    match = _STAMP.match(line)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    millis = int((match[7] or b"0")[:3].ljust(3, b"0"))
    fields = (year, month, day, hour, minute, second)
    if match[8] or match[9]:
        seconds = calendar.timegm((*fields, 0, 0, 0))
        if match[9]:
            offset = (int(match[10]) * 60 + int(match[11])) * 60
            seconds -= offset if match[9] == b"+" else -offset
        return seconds * 1000 + millis
    local = _local_seconds(fields)
    return None if local is None else local * 1000 + millis


def _open(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return open(fd, "rb")


def read_range(files: StreamFiles, lo: int, hi: int) -> bytes:
    """The stream's bytes in [lo, hi), contiguous from lo: shorter if a file shrank or vanished."""
    parts: list[bytes] = []
    for segment in files.segments:
        first, last = max(lo, segment.base), min(hi, segment.end)
        if first >= last:
            continue
        try:
            with _open(segment.path) as handle:
                handle.seek(first - segment.base)
                data = handle.read(last - first)
        except FileNotFoundError:
            break
        parts.append(data)
        if len(data) < last - first:
            break
    return b"".join(parts)


def _clamp(files: StreamFiles, position: int) -> int:
    return min(max(position, files.start), files.end)


def align(files: StreamFiles, position: int) -> int:
    """The first line start at or after `position` (itself when it already is one)."""
    position = _clamp(files, position)
    if position == files.start or read_range(files, position - 1, position) == b"\n":
        return position
    cursor = position
    while cursor < files.end:
        data = read_range(files, cursor, min(files.end, cursor + _BLOCK))
        if not data:
            break
        newline = data.find(b"\n")
        if newline >= 0:
            return cursor + newline + 1
        cursor += len(data)
    return position  # inside the last, unfinished line: it is read from here once it is complete


def _line_floor(files: StreamFiles, position: int) -> int:
    """The last line start at or before `position` (the end of the last complete line before it)."""
    position = _clamp(files, position)
    cursor = position
    while cursor > files.start:
        lo = max(files.start, cursor - _BLOCK)
        data = read_range(files, lo, cursor)
        newline = data.rfind(b"\n")
        if newline >= 0:
            return lo + newline + 1
        cursor = lo
    return files.start


def _complete_lines(files: StreamFiles, start: int, stop: int) -> Iterator[tuple[int, int, bytes]]:
    """(position, end, line without its newline) for each complete line in [start, stop).

    A line longer than MAX_LINE_BYTES (a progress bar redrawn with carriage returns for an hour) is
    cut into pieces of that size, counted from where the read starts: always a line start or a cut.
    """
    position, pending, pending_start = start, b"", start
    while position < stop:
        data = read_range(files, position, min(stop, position + _BLOCK))
        if not data:
            return
        position += len(data)
        buffer, offset = pending + data, 0
        while True:
            newline = buffer.find(b"\n", offset, offset + MAX_LINE_BYTES + 1)
            if newline >= 0:
                yield pending_start + offset, pending_start + newline + 1, buffer[offset:newline]
                offset = newline + 1
            elif len(buffer) - offset > MAX_LINE_BYTES:
                cut = offset + MAX_LINE_BYTES
                yield pending_start + offset, pending_start + cut, buffer[offset:cut]
                offset = cut
            else:
                break
        pending, pending_start = buffer[offset:], pending_start + offset
    # A full-size piece that ends at `stop` is a cut (not a line) when no newline follows it.
    if len(pending) == MAX_LINE_BYTES and read_range(files, position, position + 1) not in (b"", b"\n"):
        yield pending_start, position, pending


def _stamps(data: bytes, *, whole_first: bool) -> Iterator[int]:
    pieces = data.split(b"\n")
    for piece in pieces if whole_first else pieces[1:]:
        stamp = parse_timestamp(piece)
        if stamp is not None:
            yield stamp


def _first_stamp_after(files: StreamFiles, position: int) -> int | None:
    data = read_range(files, position, min(files.end, position + WINDOW))
    return next(_stamps(data, whole_first=position == files.start), None)


def _seed(files: StreamFiles, position: int) -> int:
    """The stamp for an unstamped line at `position` when no stamped line came before it in this read."""
    lo = max(files.start, position - WINDOW)
    before = list(_stamps(read_range(files, lo, position), whole_first=lo == files.start))
    if before:
        return before[-1]
    after = _first_stamp_after(files, position)
    if after is not None:
        return after
    holder = next((s for s in files.segments if s.base <= position < s.end), None)
    return holder.mtime_ms if holder is not None else files.mtime_ms


def seek_time(files: StreamFiles, moment: int, *, upper: bool = False) -> int:
    """A line start that splits the stream at `moment`, erring towards reading more, never less.

    Lower bound (default): (nearly) every line before it is stamped earlier than `moment`. Upper
    bound: the first line stamped at or after `moment`, so every line before it is earlier. Bisects
    on the first stamp after each probe; a probe with no stamp nearby counts against the bound.
    """
    lo, hi = files.start, files.end
    while hi - lo > WINDOW:
        middle = (lo + hi) // 2
        stamp = _first_stamp_after(files, middle)
        if (stamp >= moment) if stamp is not None else not upper:
            hi = middle
        else:
            lo = middle
    start = align(files, lo)
    if not upper:
        return start
    for position, _, line in _complete_lines(files, start, files.end):
        stamp = parse_timestamp(line)
        if stamp is not None and stamp >= moment:
            return position
    return files.end


class ForwardScan:
    """Reads one stream forward from a position, one matching event at a time, within a budget.

    `position` is always just after the last line consumed (returned or skipped); `exhausted` says
    that the stream (or the time range) has nothing more now.
    """

    def __init__(
        self,
        files: StreamFiles,
        position: int,
        window: TimeRange,
        pattern: str | None = None,
        stop: int | None = None,
    ) -> None:
        self.files = files
        self.position = _clamp(files, position)  # tokens and seeks give line starts (or cuts)
        self.exhausted = False
        self.window = window
        self._pattern = pattern.encode() if pattern else None
        self._stop = files.end if stop is None else min(stop, files.end)
        self._lines = _complete_lines(files, self.position, self._stop)
        self._clock: int | None = None

    def next_event(self, budget: Budget) -> LogEvent | None:
        """The next event in range and matching the pattern; None when exhausted or out of budget."""
        if self.exhausted:
            return None
        while not budget.exhausted:
            line = next(self._lines, None)
            if line is None:
                self.exhausted = True
                return None
            start, end, raw = line
            budget.spend(end - start)
            self.position = end
            stamp = parse_timestamp(raw)
            if stamp is None:
                if self._clock is None:
                    self._clock = _seed(self.files, start)
                stamp = self._clock
            else:
                self._clock = stamp
                if self.window.end is not None and stamp >= self.window.end + SKEW_MS:
                    self.exhausted = True
                    return None
            if self.window.contains(stamp) and (self._pattern is None or self._pattern in raw):
                if end > start + len(raw):  # a whole line (not a cut piece): drop a CRLF's CR
                    raw = raw.removesuffix(b"\r")
                message = raw.decode("utf-8", "replace")
                return LogEvent(self.files.name, start, end, stamp, message)
        return None


def read_backward(
    files: StreamFiles, before: int, limit: int, window: TimeRange, max_scan: int
) -> tuple[list[LogEvent], int, int]:
    """The last `limit` events in range ending at or before `before`.

    Returns (events in file order, where older events would continue, where the scan ended). Goes
    back in doubling steps, never further than `max_scan` bytes or before the time range starts.
    """
    # A token is an event's start; the end of the stream may be inside a line still being written.
    stop = _line_floor(files, before) if before >= files.end else _clamp(files, before)
    if window.end is not None:
        stop = min(stop, seek_time(files, window.end + SKEW_MS, upper=True))
    floor = files.start if window.start is None else seek_time(files, window.start - SKEW_MS)
    floor = max(floor, stop - max_scan, files.start)
    floor = min(align(files, floor), stop)
    lines, previous = limit, stop + 1
    while True:
        start = max(_lines_back(files, stop, lines, floor), floor)
        scan = ForwardScan(files, start, window, stop=stop)
        budget = Budget(stop - start + 1)
        events: list[LogEvent] = []
        while (event := scan.next_event(budget)) is not None:
            events.append(event)
        if len(events) >= limit or start <= floor or start >= previous:  # the last: files shrank
            kept = events[-limit:]
            older = kept[0].start if len(events) > limit else start
            return kept, older, scan.position
        lines, previous = lines * 2, start


def _lines_back(files: StreamFiles, stop: int, count: int, floor: int) -> int:
    """The start of the `count`-th line before `stop` (a line start), or `floor` if there are fewer."""
    found, hi = 0, stop
    while hi > floor:
        lo = max(floor, hi - _BLOCK)
        data = read_range(files, lo, hi)
        if len(data) != hi - lo:
            return hi
        search_to = len(data) - 1 if hi == stop else len(data)  # skip the newline that ends at `stop`
        while (newline := data.rfind(b"\n", 0, search_to)) >= 0:
            found += 1
            if found == count:
                return lo + newline + 1
            search_to = newline
        hi = lo
    return floor

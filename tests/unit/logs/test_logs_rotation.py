"""Copy-truncate rotation: the cap holds, writers keep appending, and readers lose nor repeat a line."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from moorage.logs import OPERATIONS, LogRotator
from moorage.logs.rotation import ReadWriteLock, rotate_file
from support.logfiles import BASE_MS, GROUP, context, logged, write_stream

STREAM = "AllTraffic/i-1"


def get(rotator: LogRotator, **params: Any) -> dict[str, Any]:
    ctx = context(rotator.logs_dir, rotator.lock)
    return OPERATIONS["GetLogEvents"](ctx, {"logGroupName": GROUP, "logStreamName": STREAM, **params})


def texts(page: dict[str, Any]) -> list[str]:
    return [event["message"].rsplit(": ", 1)[-1] for event in page["events"]]


def test_rotation_keeps_writers_appending_and_tokens_valid(tmp_path: Path) -> None:
    path = write_stream(tmp_path, STREAM, logged(BASE_MS, "one") + logged(BASE_MS + 1, "two"))
    rotator = LogRotator(tmp_path, max_bytes=10)
    caught_up = get(rotator, startFromHead=True)["nextForwardToken"]
    writer = os.open(path, os.O_WRONLY | os.O_APPEND)  # as a worker holds it
    try:
        os.write(writer, logged(BASE_MS + 2, "three").encode())
        first_size = path.stat().st_size
        assert rotator.sweep() == [path]
        os.write(writer, logged(BASE_MS + 3, "four").encode())
    finally:
        os.close(writer)
    rotated = path.with_name("i-1.log.0")
    assert rotated.stat().st_size == first_size
    assert path.read_text() == logged(BASE_MS + 3, "four")  # written at offset 0, no hole
    assert texts(get(rotator, nextToken=caught_up)) == ["three", "four"]
    assert texts(get(rotator, startFromHead=True)) == ["one", "two", "three", "four"]

    assert rotator.sweep() == [path]  # over the cap again: the older generation goes
    assert sorted(p.name for p in path.parent.iterdir()) == ["i-1.log", f"i-1.log.{first_size}"]
    assert texts(get(rotator, startFromHead=True)) == ["four"]
    assert texts(get(rotator, nextToken=caught_up)) == ["four"]  # what it missed is gone, not replayed


def test_only_files_at_the_cap_rotate(tmp_path: Path) -> None:
    small = write_stream(tmp_path, "AllTraffic/i-small", "x\n")
    big = write_stream(tmp_path, "AllTraffic/i-big", "y" * 99 + "\n")
    other = tmp_path / "forkserver.log"
    other.write_text("z" * 200)
    rotator = LogRotator(tmp_path, max_bytes=100)
    assert sorted(rotator.sweep()) == sorted([big, other])
    assert small.read_text() == "x\n" and big.read_text() == "" and other.read_text() == ""
    assert other.with_name("forkserver.log.0").read_text() == "z" * 200 + "\n"  # a cut line is closed
    assert rotator.sweep() == []


def test_an_interrupted_rotation_is_finished_or_cleaned(tmp_path: Path) -> None:
    path = write_stream(tmp_path, STREAM, "live\n")
    path.with_name("i-1.log.0").write_text("old\n")
    path.with_name("i-1.log.4.tmp").write_text("copied\n")  # cut short after the truncation
    path.with_name("i-1.log.0.tmp").write_text("stale\n")
    rotator = LogRotator(tmp_path, max_bytes=1 << 20)
    rotator.sweep()
    assert sorted(p.name for p in path.parent.iterdir()) == ["i-1.log", "i-1.log.4"]
    assert texts(get(rotator, startFromHead=True)) == ["copied", "live"]


def test_rotate_file_of_a_vanished_file(tmp_path: Path) -> None:
    assert rotate_file(tmp_path / "gone.log", ReadWriteLock()) is False


def test_the_sweep_loop_rotates_in_the_background(tmp_path: Path) -> None:
    path = write_stream(tmp_path, STREAM, "x" * 200 + "\n")
    rotator = LogRotator(tmp_path, max_bytes=100)

    async def until_rotated() -> None:
        task = asyncio.get_running_loop().create_task(rotator.run(interval_s=0.01))
        try:
            async with asyncio.timeout(10):
                while path.stat().st_size:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(until_rotated())
    assert path.with_name("i-1.log.0").stat().st_size == 201

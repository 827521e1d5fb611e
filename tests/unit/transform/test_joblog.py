"""A job's own lines land in one of its streams whatever happens to its instances."""

from __future__ import annotations

import os
from pathlib import Path

from moorage.logs.reader import parse_timestamp
from moorage.transform.joblog import JobLog


def _lines(path: Path) -> list[str]:
    mark = " [sagemaker logs]: "
    return [line.split(mark, 1)[1] for line in path.read_text().splitlines() if mark in line]


def test_lines_before_the_first_instance_wait_for_its_stream(tmp_path: Path) -> None:
    job = JobLog("job", tmp_path)
    job.write("preparing model")
    assert list(tmp_path.iterdir()) == []
    stream = tmp_path / "i-1.log"
    stream.write_text("2026-01-01 00:00:00 worker says hello\n")
    job.attach(stream)
    job.write("done")
    job.close()
    assert stream.read_text().splitlines()[0] == "2026-01-01 00:00:00 worker says hello"
    assert _lines(stream)[-2:] == ["preparing model", "done"]
    first = stream.read_text().splitlines()[1].encode()
    assert parse_timestamp(first) is not None  # the logs reader dates the line by its own stamp


def test_without_a_started_instance_they_go_to_the_stream_one_left(tmp_path: Path) -> None:
    older, newer = tmp_path / "i-old.log", tmp_path / "i-new.log"
    older.write_text("")
    newer.write_text("")
    os.utime(older, ns=(1, 1))
    job = JobLog("job", tmp_path)
    job.write("the job failed: the model did not load")
    job.close()
    assert _lines(older) == ["the job failed: the model did not load"]
    assert newer.read_text() == ""


def test_without_any_instance_they_go_to_data_log(tmp_path: Path) -> None:
    job = JobLog("job", tmp_path / "job" / "transform")
    job.write("the job failed: no inputs")
    job.close()
    assert _lines(tmp_path / "job" / "transform" / "data-log.log") == ["the job failed: no inputs"]

"""Transform jobs' streams: one group, /aws/sagemaker/TransformJobs, with a stream `<job>/<instance>`.

Their files live under `logs/_transform-jobs/<job>/transform/`; no endpoint can be named so as to reach
them (an endpoint name has no underscore), and the group never lists an endpoint's streams.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moorage.logs import OPERATIONS
from moorage.logs.errors import ResourceNotFoundException
from moorage.logs.layout import TRANSFORM_DIR, TRANSFORM_GROUP, TRANSFORM_KEY, LogsLayout, endpoint_of_group
from support.logfiles import BASE_MS, context, logged, write_stream


def _job_stream(logs: Path, job: str, instance: str, text: str) -> None:
    path = logs / TRANSFORM_DIR / job / "transform" / f"{instance}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_group_lists_every_jobs_instances(tmp_path: Path) -> None:
    write_stream(tmp_path, "AllTraffic/i-1", logged(BASE_MS, "endpoint line"), endpoint="ep")
    assert OPERATIONS["DescribeLogGroups"](context(tmp_path), {})["logGroups"][0]["logGroupName"] == (
        "/aws/sagemaker/Endpoints/ep"
    )
    assert len(OPERATIONS["DescribeLogGroups"](context(tmp_path), {})["logGroups"]) == 1  # no job yet
    _job_stream(tmp_path, "job-a", "i-1", logged(BASE_MS, "a1"))
    _job_stream(tmp_path, "job-a", "i-2", logged(BASE_MS, "a2"))
    _job_stream(tmp_path, "job-b", "i-3", logged(BASE_MS + 1, "b"))
    layout = LogsLayout(tmp_path)
    assert layout.endpoints() == ["ep"]  # `_transform-jobs` is no endpoint
    assert endpoint_of_group(TRANSFORM_GROUP) == TRANSFORM_KEY
    groups = OPERATIONS["DescribeLogGroups"](context(tmp_path), {})["logGroups"]
    assert [group["logGroupName"] for group in groups] == ["/aws/sagemaker/Endpoints/ep", TRANSFORM_GROUP]
    listed = OPERATIONS["DescribeLogStreams"](
        context(tmp_path), {"logGroupName": TRANSFORM_GROUP, "logStreamNamePrefix": "job-a/"}
    )
    assert [stream["logStreamName"] for stream in listed["logStreams"]] == ["job-a/i-1", "job-a/i-2"]
    events = OPERATIONS["GetLogEvents"](
        context(tmp_path),
        {"logGroupName": TRANSFORM_GROUP, "logStreamName": "job-b/i-3", "startFromHead": True},
    )["events"]
    assert [event["message"] for event in events] == [logged(BASE_MS + 1, "b").rstrip("\n")]


@pytest.mark.parametrize("stream", ["job-a/../ep", "../ep/AllTraffic", "job-a/i-1/x", "transform/i-1"])
def test_names_outside_the_pattern_reach_nothing(tmp_path: Path, stream: str) -> None:
    _job_stream(tmp_path, "job-a", "i-1", logged(BASE_MS, "a1"))
    write_stream(tmp_path, "AllTraffic/i-1", logged(BASE_MS, "endpoint line"), endpoint="ep")
    with pytest.raises(ResourceNotFoundException):
        LogsLayout(tmp_path).snapshot(TRANSFORM_KEY, stream)


def test_a_linked_job_directory_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "transform").mkdir(parents=True)
    (outside / "transform" / "i-1.log").write_text(logged(BASE_MS, "secret"))
    (tmp_path / "logs" / TRANSFORM_DIR).mkdir(parents=True)
    os.symlink(outside, tmp_path / "logs" / TRANSFORM_DIR / "job-x")
    layout = LogsLayout(tmp_path / "logs")
    assert layout.streams(TRANSFORM_KEY) == []
    with pytest.raises(ResourceNotFoundException):
        layout.snapshot(TRANSFORM_KEY, "job-x/i-1")


def test_without_jobs_the_group_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ResourceNotFoundException):
        OPERATIONS["DescribeLogStreams"](context(tmp_path), {"logGroupName": TRANSFORM_GROUP})
    with pytest.raises(ResourceNotFoundException):  # an endpoint cannot be named after the directory
        endpoint_of_group("/aws/sagemaker/Endpoints/" + TRANSFORM_DIR)

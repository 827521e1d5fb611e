"""A transform job survives `kill -9` of the server: after a restart it resumes where it was.

Objects already published are not redone (their output objects are the same versions), the object
that was half done is redone whole, and every input ends with exactly one output.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.servers import start_server, wait_until_gone

from .conftest import Gate, create_model, keys, read, stage, start_job, wait_for_end

pytestmark = pytest.mark.slow


def test_kill_9_mid_job_then_restart_completes_every_object_once(
    tmp_path: Path, score_tar: Path, gate: Gate
) -> None:
    data_dir = tmp_path / "data"
    first = start_server(data_dir)
    try:
        sm, s3 = first.client("sagemaker"), first.client("s3")
        bucket = stage(
            s3, {"in/1-done.csv": "1\n2\n", "in/2-blocked.csv": "3\nblock,4\n5\n", "in/3-after.csv": "6\n"}
        )
        model = create_model(sm, score_tar, {"GATE_URL": gate.url})
        name = start_job(
            sm,
            model,
            f"s3://{bucket}/in/",
            f"s3://{bucket}/out",
            strategy="SingleRecord",
            MaxConcurrentTransforms=1,
        )
        gate.wait_for_arrival()  # object 1 is published, object 2 is half done
        done_before = s3.head_object(Bucket=bucket, Key="out/1-done.csv.out")
        assert keys(s3, bucket, "out/") == ["out/1-done.csv.out"]
    finally:
        first.kill()  # SIGKILL: no shutdown code runs
    assert not wait_until_gone(first.tag), first.log()[-3000:]
    gate.opened.set()

    second = start_server(data_dir)
    try:
        sm, s3 = second.client("sagemaker"), second.client("s3")
        described = wait_for_end(sm, name)

        assert described["TransformJobStatus"] == "Completed"
        assert keys(s3, bucket, "out/") == [
            "out/1-done.csv.out",
            "out/2-blocked.csv.out",
            "out/3-after.csv.out",
        ]
        done_after = s3.head_object(Bucket=bucket, Key="out/1-done.csv.out")
        assert (done_after["ETag"], done_after["LastModified"]) == (
            done_before["ETag"],
            done_before["LastModified"],
        )
        assert read(s3, bucket, "out/1-done.csv.out") == "1,1\n2,1\n"
        assert read(s3, bucket, "out/2-blocked.csv.out") == "3,1\n4,1\n5,1\n"
        assert read(s3, bucket, "out/3-after.csv.out") == "6,1\n"
    finally:
        second.stop()
    assert not wait_until_gone(second.tag), second.log()[-3000:]

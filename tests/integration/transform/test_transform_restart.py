"""A transform job survives `kill -9` of the server: after a restart it resumes where it was.

Objects already published are not redone (their output objects are the same versions), the object
that was half done is redone whole, and every input ends with exactly one output. The resumed job's
instances keep the earlier instances' ids, so the job still has one log stream per instance and the
SageMaker SDK's `wait(logs=True)` prints both runs' lines and ends (with a stream more than the job
has instances, the SDK asks for the next page without its token, forever).
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import boto3
import pytest

from support.servers import REGION, RunningServer, start_server, wait_until_gone

from .conftest import (
    Gate,
    create_model,
    keys,
    read,
    sdk_environment,
    stage,
    start_staged_job,
    wait_for_end,
)

pytestmark = pytest.mark.slow


def test_kill_9_mid_job_then_restart_completes_every_object_once(
    tmp_path: Path,
    score_tar: Path,
    gate: Gate,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_dir = tmp_path / "data"
    first = start_server(data_dir)
    try:
        sm, s3 = first.client("sagemaker"), first.client("s3")
        bucket = stage(
            s3, {"in/1-done.csv": "1\n2\n", "in/2-blocked.csv": "3\nblock,4\n5\n", "in/3-after.csv": "6\n"}
        )
        model = create_model(sm, score_tar, {"GATE_URL": gate.url})
        name = start_staged_job(sm, model, bucket, strategy="SingleRecord", MaxConcurrentTransforms=1)
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

        streams = second.client("logs").describe_log_streams(
            logGroupName="/aws/sagemaker/TransformJobs", logStreamNamePrefix=f"{name}/"
        )["logStreams"]
        assert len(streams) == 1  # InstanceCount 1, before and after the restart
        printed = _sdk_wait_with_logs(second, name, monkeypatch, tmp_path / "home", capsys)
        assert f"s3://{bucket}/in/1-done.csv: 2 records" in printed  # the first run's line
        assert f"s3://{bucket}/in/3-after.csv: 1 records" in printed  # the resumed run's
    finally:
        second.stop()
    assert not wait_until_gone(second.tag), second.log()[-3000:]


def _sdk_wait_with_logs(
    server: RunningServer,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    home: Path,
    capsys: pytest.CaptureFixture[str],
) -> str:
    """What `Transformer.attach(name).wait(logs=True)` prints; fails if it does not end in 60 s."""
    sdk_environment(monkeypatch, server, home)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK's own deprecation and config notices
        from sagemaker.session import Session
        from sagemaker.transformer import Transformer

    session = Session(boto_session=boto3.Session(region_name=REGION))
    transformer = Transformer.attach(name, sagemaker_session=session)  # type: ignore[no-untyped-call]
    capsys.readouterr()
    # A thread, so that a client stuck in its loop fails the test instead of hanging it; it ends with
    # the server, whose address then refuses it.
    waiting = threading.Thread(target=lambda: transformer.wait(logs=True), daemon=True)
    waiting.start()
    waiting.join(60)
    assert not waiting.is_alive(), "the SDK's wait(logs=True) did not end"
    return capsys.readouterr().out

"""Restarts that really recover, and status that tells the truth while they do not (issue 12).

A server on a relative data dir (what `make demo` suggests) is SIGKILLed and restarted on the same
relative path: its endpoints serve again, the first invocation after boto3's `endpoint_in_service`
waiter answers 200 with botocore's retries off (it waits for the instances instead of a 503), and an
endpoint whose model no longer loads stays InService with 0 instances and a FailureReason that says
why, in boto3, the CLI and /metrics, until the cause is gone and the backoff brings it back.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from integration.reliability.rig import deploy, error_of, invoke, one_attempt
from support.cli import Cli, isolated_environment
from support.hosting import deploy as deploy_seed
from support.seed import seed_top3
from support.servers import http_get, start_server, wait_until_gone

pytestmark = pytest.mark.slow

# Short backoff so that the recovery after the cause is removed is quick; the cap is what is tested.
FAST_BACKOFF = {"MOORAGE_RECOVERY_BACKOFF": "0.2", "MOORAGE_RECOVERY_BACKOFF_MAX": "1"}


def wait_described(sm: Any, name: str, done: Any, timeout: float = 60.0) -> dict[str, Any]:
    """DescribeEndpoint until `done(answer)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        described: dict[str, Any] = sm.describe_endpoint(EndpointName=name)
        if done(described):
            return described
        assert time.monotonic() < deadline, described
        time.sleep(0.1)


def instance_counts(described: dict[str, Any]) -> list[tuple[int, int]]:
    return [(v["CurrentInstanceCount"], v["DesiredInstanceCount"]) for v in described["ProductionVariants"]]


def test_a_relative_data_dir_restarts_and_instances_that_cannot_start_say_why(
    tmp_path: Path, artifacts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the server inherits it: `--data-dir demo-data/server` is relative
    data = Path("demo-data/server")
    marker = tmp_path / "marker"
    url = f"file://{artifacts.fault_tar}"
    first = start_server(data, env=FAST_BACKOFF)
    try:
        sm = first.client("sagemaker")
        good = deploy(sm, url, instances=2)
        bad = deploy(sm, url, env={"FAULT_LOAD": "raise_if_marker", "FAULT_MARKER": str(marker)})
    finally:
        first.kill()  # SIGKILL
    assert not wait_until_gone(first.tag), "workers outlived their server"
    marker.touch()  # from now on the second endpoint's model_fn raises

    second = start_server(data, env=FAST_BACKOFF, tag=first.tag)
    try:
        sm, runtime = second.client("sagemaker"), one_attempt(second)
        sm.get_waiter("endpoint_in_service").wait(EndpointName=good, WaiterConfig={"Delay": 1})
        assert invoke(runtime, good, action="echo")["echo"] == {"action": "echo"}  # no retry needed
        assert instance_counts(wait_described(sm, good, lambda d: instance_counts(d) == [(2, 2)])) == [(2, 2)]

        described = wait_described(sm, bad, lambda d: "FailureReason" in d)
        assert described["EndpointStatus"] == "InService"
        assert instance_counts(described) == [(0, 1)]
        assert described["FailureReason"].startswith("The instances of this endpoint cannot start")
        assert "model_fn refused to load: the fault marker exists" in described["FailureReason"]
        with pytest.raises(ClientError) as caught:
            invoke(runtime, bad, action="echo")
        assert error_of(caught.value) == (503, "ServiceUnavailable")
        assert "the fault marker exists" in caught.value.response["Error"]["Message"]

        home = tmp_path / "cli-home"
        home.mkdir()
        cli = Cli(home, isolated_environment(home, {"MOORAGE_URL": second.url}))
        shown = cli.run("describe", bad)
        assert shown.code == 0, shown
        assert "Status      InService (0/1 instances in service)" in shown.stdout
        assert "the fault marker exists" in shown.stdout
        listed = cli.run("endpoints")
        assert listed.code == 0, listed
        row = next(line for line in listed.stdout.splitlines() if line.startswith(bad + " "))
        assert row.split()[:2] == [bad, "InService"] and " 0/1 " in row
        assert f"{bad}: The instances of this endpoint cannot start" in listed.stdout
        status, metrics = http_get(second.url + "/metrics")
        assert status == 200
        labels = f'EndpointName="{bad}",VariantName="AllTraffic"'
        assert f"moorage_variant_instances{{{labels}}} 0\n" in metrics.decode()
        assert f"moorage_variant_desired_instances{{{labels}}} 1\n" in metrics.decode()

        marker.unlink()  # the cause is gone: the next retry (backoff capped at 1 s) brings it back
        recovered = wait_described(sm, bad, lambda d: instance_counts(d) == [(1, 1)])
        assert "FailureReason" not in recovered
        pid = invoke(runtime, bad, action="echo")["pid"]

        # A crash whose replacements cannot load: the same truth, from the instance's supervisor.
        marker.touch()
        os.kill(pid, signal.SIGKILL)
        described = wait_described(sm, bad, lambda d: "FailureReason" in d)
        assert instance_counts(described) == [(0, 1)]
        assert "the fault marker exists" in described["FailureReason"]
        marker.unlink()
        recovered = wait_described(
            sm, bad, lambda d: instance_counts(d) == [(1, 1)] and "FailureReason" not in d
        )
        assert invoke(runtime, bad, action="echo")["pid"] != pid
    finally:
        assert second.stop() == 0
    assert not wait_until_gone(second.tag)


def test_after_kill_9_the_first_invocation_after_the_waiter_answers(
    tmp_path: Path, artifacts: Any, image_server: str
) -> None:
    """The seed's ResNet-50 on 2 instances: InService means invocable, with no retry by botocore."""
    data = tmp_path / "data"
    first = start_server(data)
    try:
        name = deploy_seed(first.client("sagemaker"), artifacts.seed_tar, instances=2)
    finally:
        first.kill()  # SIGKILL
    assert not wait_until_gone(first.tag), "workers outlived their server"

    second = start_server(data, tag=first.tag)
    try:
        sm, runtime = second.client("sagemaker"), one_attempt(second, read_timeout=120)
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1})
        body = json.dumps({"url": f"{image_server}/predict.png"})
        response = runtime.invoke_endpoint(
            EndpointName=name, Body=body, ContentType="application/json", Accept="application/json"
        )
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
        top3 = [entry["prediction"] for entry in json.loads(response["Body"].read())]
        assert top3 == seed_top3(artifacts.seed_dir, body)
    finally:
        assert second.stop() == 0
    assert not wait_until_gone(second.tag)

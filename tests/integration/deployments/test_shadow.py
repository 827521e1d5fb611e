"""Shadow variants through unchanged boto3: one production variant and one shadow (SageMaker's rule),
copies of sampled requests sent to the shadow without the caller ever seeing or waiting for them, the
shadow's own metrics and captured data, DescribeEndpoint's ShadowProductionVariants, and promotion of
the shadow with UpdateEndpoint.

One `moorage serve` for the module, with at most 2 shadow copies outstanding (so a blocked shadow
drops the rest) and captures flushed every 0.1 s.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from support.hosting import FAST
from support.servers import RunningServer, server_with_bucket

from .conftest import config, endpoint_on, guard_model, invoke, metric, variant, wait_for_metric

pytestmark = pytest.mark.slow

BUCKET = "shadow-tests"


class _AnyPid(int):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, int)

    def __hash__(self) -> int:
        return 0


ANY_PID = _AnyPid()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with server_with_bucket(
        tmp_path_factory.mktemp("shadow") / "data",
        BUCKET,
        env={"MOORAGE_SHADOW_MAX_OUTSTANDING": "2", "MOORAGE_CAPTURE_FLUSH": "0.1"},
    ) as running:
        yield running


def test_a_shadow_configuration_is_checked_as_sagemaker_does(
    server: RunningServer, guard_tarball: Path
) -> None:
    sm = server.client("sagemaker")
    model = guard_model(sm, guard_tarball)
    asynchronous: dict[str, Any] = {
        "AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/o"}}
    }
    one, other = [variant("A", model)], [variant("S", model)]
    cases: list[tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any], str]] = [
        ([*one, variant("B", model)], other, {}, "exactly one production variant; it has 2"),
        (one, [*other, variant("T", model)], {}, "at most one shadow"),
        (one, [variant("A", model)], {}, "repeated: A"),
        (one, [{**other[0], "AcceleratorType": "ml.eia2.medium"}], {}, "AcceleratorType"),
        (one, other, asynchronous, "not supported with AsyncInferenceConfig"),
    ]
    for production, shadows, extra, said in cases:
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            config(sm, production, shadows, **extra)
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert said in refused.value.response["Error"]["Message"]


def test_a_failing_shadow_never_changes_production_and_is_measured(
    server: RunningServer, guard_tarball: Path
) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    good = guard_model(sm, guard_tarball, MODEL_VERSION="1")
    broken = guard_model(sm, guard_tarball, MODEL_VERSION="2", GUARD_MODE="fail")
    name = endpoint_on(server, config(sm, [variant("Prod", good)], [variant("Shadow", broken)]))

    described = sm.describe_endpoint(EndpointName=name)
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["Prod"]
    (shadow,) = described["ShadowProductionVariants"]
    assert (shadow["VariantName"], shadow["CurrentInstanceCount"], shadow["CurrentWeight"]) == (
        "Shadow",
        1,
        1.0,
    )
    assert (
        sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])[
            "ShadowProductionVariants"
        ][0]["VariantName"]
        == "Shadow"
    )

    answers = [invoke(runtime, name, n=n) for n in range(12)]
    assert answers == [
        ("Prod", {"version": "1", "pid": answers[0][1]["pid"], "echo": {"n": n}}) for n in range(12)
    ]
    # Every request was sampled (the shadow's weight equals production's): each copy was sent and failed
    # in the model, or was dropped while 2 copies were outstanding (this server's limit).
    deadline = time.monotonic() + 30
    while (sent := metric(server, "sagemaker_Invocations", name, "Shadow")) + metric(
        server, "moorage_shadow_dropped", name, "Shadow"
    ) != 12:
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.05)
    assert sent >= 2
    assert metric(server, "sagemaker_Invocation5XXErrors", name, "Shadow") == sent
    assert metric(server, "sagemaker_Invocation5XXErrors", name, "Prod") == 0
    assert metric(server, "sagemaker_Invocations", name, "Prod") == 12
    # The shadow cannot be invoked directly: only production variants take TargetVariant.
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        runtime.invoke_endpoint(
            EndpointName=name, Body=b"{}", ContentType="application/json", TargetVariant="Shadow"
        )
    assert "The variant Shadow is not found" in refused.value.response["Error"]["Message"]


def test_a_blocked_shadow_drops_copies_while_production_answers(
    server: RunningServer, guard_tarball: Path, tmp_path: Path
) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    release = tmp_path / f"release-{uuid.uuid4().hex}"
    good = guard_model(sm, guard_tarball, MODEL_VERSION="1")
    stuck = guard_model(sm, guard_tarball, MODEL_VERSION="2", GUARD_MODE="block", GUARD_RELEASE=str(release))
    name = endpoint_on(server, config(sm, [variant("Prod", good)], [variant("Shadow", stuck, weight=4.0)]))

    answers = [invoke(runtime, name, n=n) for n in range(10)]
    assert [(v, a["version"], a["echo"]) for v, a in answers] == [("Prod", "1", {"n": n}) for n in range(10)]
    # Two copies wait on the stuck shadow (the limit); the other eight were dropped, and counted.
    assert metric(server, "moorage_shadow_dropped", name, "Shadow") == 8
    assert metric(server, "sagemaker_Invocations", name, "Shadow") == 0
    release.touch()
    wait_for_metric(server, "sagemaker_Invocations", name, "Shadow", 2)
    assert metric(server, "sagemaker_Invocation5XXErrors", name, "Shadow") == 0


def test_the_shadow_is_captured_and_promoted_by_update_endpoint(
    server: RunningServer, guard_tarball: Path
) -> None:
    sm, runtime, s3 = server.client("sagemaker"), server.client("sagemaker-runtime"), server.client("s3")
    old = guard_model(sm, guard_tarball, MODEL_VERSION="1")
    new = guard_model(sm, guard_tarball, MODEL_VERSION="2")
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": f"s3://{BUCKET}/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    }
    name = endpoint_on(
        server, config(sm, [variant("Prod", old)], [variant("Candidate", new)], DataCaptureConfig=capture)
    )
    for n in range(3):
        assert invoke(runtime, name, n=n)[1]["version"] == "1"
    wait_for_metric(server, "sagemaker_Invocations", name, "Candidate", 3)
    shadow_records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"capture/{name}/Candidate/").get("Contents", [])
        shadow_records = [
            json.loads(line)
            for item in listed
            for line in s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read().decode().splitlines()
        ]
        if len(shadow_records) == 3:
            break
        time.sleep(0.05)
    outputs = sorted(
        json.loads(r["captureData"]["endpointOutput"]["data"])["echo"]["n"] for r in shadow_records
    )
    assert outputs == [0, 1, 2]
    assert {json.loads(r["captureData"]["endpointOutput"]["data"])["version"] for r in shadow_records} == {
        "2"
    }

    # The shadow's weight is its sampling: at 0, nothing more is copied.
    sm.update_endpoint_weights_and_capacities(
        EndpointName=name, DesiredWeightsAndCapacities=[{"VariantName": "Candidate", "DesiredWeight": 0}]
    )
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    assert sm.describe_endpoint(EndpointName=name)["ShadowProductionVariants"][0]["CurrentWeight"] == 0.0
    for n in range(5):
        assert invoke(runtime, name, n=n)[1]["version"] == "1"
    assert metric(server, "sagemaker_Invocations", name, "Candidate") == 3

    # Promotion: the candidate's model becomes the production variant of a new config.
    sm.update_endpoint(EndpointName=name, EndpointConfigName=config(sm, [variant("Candidate", new)]))
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    described = sm.describe_endpoint(EndpointName=name)
    assert "ShadowProductionVariants" not in described
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["Candidate"]
    assert invoke(runtime, name, n=9) == ("Candidate", {"version": "2", "pid": ANY_PID, "echo": {"n": 9}})

"""`moorage serve` driven only by unchanged boto3 clients: the seed's journey and the runtime contract.

Must-match items 1 to 11 of shared/spec/sagemaker-contract.md, on a real server subprocess. Items
1–7 (the control plane's wire format, errors, ARNs, names, lifecycle, DescribeEndpoint) are also
covered operation by operation in tests/integration/control/.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from moorage.settings import MAX_PAYLOAD_BYTES
from support.hosting import FAST, act, answer, delete, deploy, new_config
from support.seed import seed_top3
from support.servers import RunningServer, http_get, post, start_server, wait_until_gone

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("hosting") / "data", env={"MOORAGE_DRAIN_GRACE": "20"})
    yield running
    running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


# The seed's journey -------------------------------------------------------------------------------
def test_the_seed_journey_create_invoke_update_delete(
    server: RunningServer, artifacts: Any, image_server: str
) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    name = deploy(sm, artifacts.seed_tar, instances=2)
    described = sm.describe_endpoint(EndpointName=name)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointArn"] == f"arn:aws:sagemaker:us-east-1:000000000000:endpoint/{name}"
    (variant,) = described["ProductionVariants"]
    assert (variant["VariantName"], variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (
        "AllTraffic",
        2,
        2,
    )

    body = json.dumps({"url": f"{image_server}/predict.png"})
    response = runtime.invoke_endpoint(
        EndpointName=name, Body=body, ContentType="application/json", Accept="application/json"
    )
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    top3 = json.loads(response["Body"].read())
    assert [entry["prediction"] for entry in top3] == seed_top3(artifacts.seed_dir, body)

    # Update to a new model: the same handler with other weights.
    other = artifacts.root / "seed-other"
    if not other.exists():
        from moorage.examples.builders import pack, seed_model_dir

        seed_model_dir(
            other / "dir",
            images=[artifacts.image_png],
            first_seed=int((artifacts.seed_dir / "seed.txt").read_text()) + 1,
        )
        pack(other / "dir", other / "model.tar.gz")
    other_config = new_config(sm, other / "model.tar.gz")
    sm.update_endpoint(EndpointName=name, EndpointConfigName=other_config)
    # Updating until the new instances have loaded, unless they already have when DescribeEndpoint asks:
    # the evidence is the status or the switch, not the load being slower than this call.
    now = sm.describe_endpoint(EndpointName=name)
    assert now["EndpointStatus"] == "Updating" or (
        now["EndpointStatus"] == "InService" and now["EndpointConfigName"] == other_config
    ), now
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    updated = json.loads(
        runtime.invoke_endpoint(
            EndpointName=name, Body=body, ContentType="application/json", Accept="application/json"
        )["Body"].read()
    )
    assert [entry["prediction"] for entry in updated] == seed_top3(other / "dir", body)

    delete(sm, name)
    with pytest.raises(ClientError) as gone:
        sm.describe_endpoint(EndpointName=name)
    assert gone.value.response["Error"]["Code"] == "ValidationException"
    assert gone.value.response["Error"]["Message"] == (
        f'Could not find endpoint "arn:aws:sagemaker:us-east-1:000000000000:endpoint/{name}".'
    )


# Runtime errors (must-match 9, 10, 11) -------------------------------------------------------------------
@pytest.fixture(scope="module")
def faulty(server: RunningServer, artifacts: Any) -> Iterator[str]:
    sm = server.client("sagemaker")
    name = deploy(
        sm,
        artifacts.fault_tar,
        env={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "2", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"},
    )
    yield name
    delete(sm, name)


def model_error(server: RunningServer, endpoint: str, **request: Any) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    # The default retry policy, to show that botocore makes exactly one attempt on a ModelError.
    runtime = boto3.client(
        "sagemaker-runtime",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="t",
        aws_secret_access_key="t",
        config=Config(retries={"mode": "standard"}),
    )
    with pytest.raises(runtime.exceptions.ModelError) as caught:
        act(runtime, endpoint, **request)
    response: dict[str, Any] = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["ResponseMetadata"]["RetryAttempts"] == 0
    return response


def see(endpoint: str) -> str:
    return (
        f"See https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logEventViewer:"
        f"group=/aws/sagemaker/Endpoints/{endpoint} in account 000000000000 for more information."
    )


def test_a_handler_exception_is_a_model_error_with_the_containers_answer(
    server: RunningServer, faulty: str
) -> None:
    response = model_error(server, faulty, action="raise", where="predict_fn")
    assert response["OriginalStatusCode"] == 500
    assert response["OriginalMessage"] == "boom in predict_fn"
    assert response["Error"]["Message"] == (
        f'Received server error (500) from primary with message "boom in predict_fn". {see(faulty)}'
    )
    assert response["LogStreamArn"] == (
        f"arn:aws:logs:us-east-1:000000000000:log-group:/aws/sagemaker/Endpoints/{faulty}"
    )
    # ErrorCode is not a modeled member, so botocore does not surface it: read the wire.
    status, headers, raw, _ = post(
        f"{server.url}/endpoints/{faulty}/invocations",
        b'{"action": "raise", "where": "predict_fn"}',
        {"Content-Type": "application/json"},
    )
    assert (status, headers["x-amzn-ErrorType"]) == (424, "ModelError")
    assert json.loads(raw)["ErrorCode"] == "SERVER_ERROR_FROM_MODEL"


def test_a_4xx_from_the_handler_is_a_client_error_from_model(server: RunningServer, faulty: str) -> None:
    response = model_error(server, faulty, action="status", status=415, message="send a JPEG")
    assert response["OriginalStatusCode"] == 415
    assert response["Error"]["Message"].startswith(
        'Received client error (415) from primary with message "send a JPEG'
    )


def test_a_timeout_is_sagemakers_timeout_model_error(server: RunningServer, faulty: str) -> None:
    started = time.monotonic()
    response = model_error(server, faulty, action="sleep", seconds=30)
    assert time.monotonic() - started < 6
    assert response["OriginalStatusCode"] == 0
    assert response["Error"]["Message"] == (
        'Received server error (0) from primary with message "Your invocation timed out while waiting for a '
        "response from container primary. Review the latency metrics for each container in Amazon "
        f'CloudWatch, resolve the issue, and try again.". {see(faulty)}'
    )
    runtime = server.client("sagemaker-runtime")
    assert answer(runtime, faulty, action="echo")["version"] == "1"


@pytest.mark.parametrize("round_", range(3))
def test_a_crashed_worker_is_a_model_error_and_is_replaced(
    server: RunningServer, faulty: str, round_: int
) -> None:
    response = model_error(server, faulty, action="kill")
    assert response["OriginalStatusCode"] == 500
    assert "killed by signal SIGKILL" in response["OriginalMessage"]
    runtime = server.client("sagemaker-runtime")
    assert all(answer(runtime, faulty, action="echo")["version"] == "1" for _ in range(4))


def test_an_unknown_endpoint_is_a_validation_error(server: RunningServer) -> None:
    runtime = server.client("sagemaker-runtime")
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", Body=b"{}")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert (
        caught.value.response["Error"]["Message"]
        == "Endpoint no-such-endpoint of account 000000000000 not found."
    )


def test_a_body_over_6_mib_is_refused(server: RunningServer, faulty: str) -> None:
    runtime = server.client("sagemaker-runtime")
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName=faulty, Body=b"x" * (MAX_PAYLOAD_BYTES + 1))
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert caught.value.response["Error"]["Code"] == "PayloadTooLarge"
    message = caught.value.response["Error"]["Message"]
    assert message == f"HTTP content length exceeded {MAX_PAYLOAD_BYTES} bytes."
    assert answer(runtime, faulty, action="echo")["version"] == "1"


def test_a_response_over_6_mib_is_sagemakers_model_error(server: RunningServer, faulty: str) -> None:
    """docs/compatibility.md ("Where SageMaker is silent"): SageMaker's observed text, word for word."""
    response = model_error(server, faulty, action="big", bytes=MAX_PAYLOAD_BYTES + 10)
    assert response["OriginalStatusCode"] == 500
    assert response["Error"]["Message"] == (
        f"Received server error (500) from primary and could not load the entire response body. {see(faulty)}"
    )
    assert answer(server.client("sagemaker-runtime"), faulty, action="echo")["version"] == "1"


def test_invoking_an_endpoint_that_is_creating_says_so(server: RunningServer, artifacts: Any) -> None:
    """docs/compatibility.md: a ValidationError naming the status, until the endpoint is InService."""
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    name = deploy(sm, artifacts.fault_tar, env={"FAULT_LOAD": "sleep", "FAULT_LOAD_SECONDS": "5"}, wait=False)
    with pytest.raises(ClientError) as caught:
        act(runtime, name, action="echo")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert caught.value.response["Error"]["Message"] == (
        f"Endpoint {name} of account 000000000000 is Creating; it can be invoked once it is InService."
    )
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Creating"
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    assert answer(runtime, name, action="echo")["version"] == "1"
    delete(sm, name)


def test_custom_attributes_reach_the_handler_and_an_invalid_one_is_refused(
    server: RunningServer, faulty: str
) -> None:
    runtime = server.client("sagemaker-runtime")
    ok = runtime.invoke_endpoint(
        EndpointName=faulty,
        Body=json.dumps({"action": "echo"}),
        ContentType="application/json",
        CustomAttributes="trace=abc",
    )
    assert json.loads(ok["Body"].read())["echo"] == {"action": "echo"}
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName=faulty, Body=b"{}", CustomAttributes="x" * 1025)
    assert caught.value.response["Error"]["Code"] == "ValidationError"


# Variants, weights, updates ------------------------------------------------------------------------------
def test_traffic_is_split_by_weight_and_target_variant_overrides_it(
    server: RunningServer, artifacts: Any
) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    name = deploy(sm, artifacts.fault_tar, variants=[("Heavy", 0.7), ("Light", 0.3)])
    try:
        counts = Counter(act(runtime, name, action="echo")["InvokedProductionVariant"] for _ in range(400))
        # Binomial(400, 0.7): mean 280, standard deviation 9.2; ±4.3 sd.
        assert 240 <= counts["Heavy"] <= 320, counts
        assert counts["Heavy"] + counts["Light"] == 400
        targeted = {
            runtime.invoke_endpoint(
                EndpointName=name,
                Body=b'{"action": "echo"}',
                ContentType="application/json",
                TargetVariant="Light",
            )["InvokedProductionVariant"]
            for _ in range(20)
        }
        assert targeted == {"Light"}
        sm.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[
                {"VariantName": "Heavy", "DesiredWeight": 0.0},
                {"VariantName": "Light", "DesiredWeight": 1.0},
            ],
        )
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
        after = {act(runtime, name, action="echo")["InvokedProductionVariant"] for _ in range(30)}
        assert after == {"Light"}
        weights = {
            v["VariantName"]: v["CurrentWeight"]
            for v in sm.describe_endpoint(EndpointName=name)["ProductionVariants"]
        }
        assert weights == {"Heavy": 0.0, "Light": 1.0}
    finally:
        delete(sm, name)


def test_update_endpoint_under_steady_load_loses_nothing(server: RunningServer, artifacts: Any) -> None:
    sm = server.client("sagemaker")
    name = deploy(sm, artifacts.fault_tar, env={"MODEL_VERSION": "1"})
    versions: dict[int, list[str]] = {0: [], 1: []}
    failures: list[str] = []
    stop = threading.Event()

    def load(index: int) -> None:
        runtime = server.client("sagemaker-runtime")
        while not stop.is_set():
            try:
                versions[index].append(answer(runtime, name, action="sleep", seconds=0.01)["version"])
            except Exception as exc:  # every failure is recorded and fails the test
                failures.append(repr(exc))

    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        until(lambda: all(versions.values()), "both clients are answered by the old model")
        sm.update_endpoint(
            EndpointName=name,
            EndpointConfigName=new_config(sm, artifacts.fault_tar, env={"MODEL_VERSION": "2"}),
        )
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
        until(lambda: all(s[-1] == "2" for s in versions.values()), "both clients reach the new model")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    for sequence in versions.values():
        assert sequence[0] == "1" and sequence[-1] == "2"
        switched = sequence.index("2")
        assert set(sequence[switched:]) == {"2"}, "once on the new model, never back on the old one"
    delete(sm, name)


def until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait for evidence (a state the test can see), with a deadline, instead of a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.01)


def test_an_endpoint_whose_model_cannot_load_fails_with_the_reason(
    server: RunningServer, artifacts: Any
) -> None:
    sm = server.client("sagemaker")
    name = deploy(sm, artifacts.fault_tar, env={"FAULT_LOAD": "raise"}, wait=False)
    with pytest.raises(WaiterError):
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    described = sm.describe_endpoint(EndpointName=name)
    assert described["EndpointStatus"] == "Failed"
    assert "model_fn refused to load: FAULT_LOAD=raise" in described["FailureReason"]
    with pytest.raises(ClientError) as caught:
        sm.update_endpoint(EndpointName=name, EndpointConfigName=new_config(sm, artifacts.fault_tar))
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    delete(sm, name)


def test_a_failed_update_keeps_the_old_configuration_serving(server: RunningServer, artifacts: Any) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    name = deploy(sm, artifacts.fault_tar)
    try:
        broken = new_config(sm, artifacts.fault_tar, env={"FAULT_LOAD": "raise"})
        sm.update_endpoint(EndpointName=name, EndpointConfigName=broken)
        served_during = []
        deadline = time.monotonic() + 120
        while sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Updating":
            served_during.append(answer(runtime, name, action="echo")["version"])
            assert time.monotonic() < deadline
        described = sm.describe_endpoint(EndpointName=name)
        assert described["EndpointStatus"] == "InService"
        assert "model_fn refused to load" in described["FailureReason"]
        assert described["EndpointConfigName"] != broken
        assert answer(runtime, name, action="echo")["version"] == "1"
        assert set(served_during) <= {"1"}
    finally:
        delete(sm, name)


def test_delete_endpoint_lets_requests_in_flight_finish(
    server: RunningServer, artifacts: Any, tmp_path: Path
) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    name = deploy(sm, artifacts.fault_tar)
    result: dict[str, Any] = {}
    started, release = tmp_path / "started", tmp_path / "release"

    def slow() -> None:
        result["answer"] = answer(
            runtime, name, action="block", started=str(started), release=str(release), seconds=30
        )

    thread = threading.Thread(target=slow)
    thread.start()
    until(started.exists, "the handler is running the request")
    sm.delete_endpoint(EndpointName=name)
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Deleting"
    release.touch()
    thread.join(30)
    assert result["answer"]["version"] == "1"
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST)


def test_metrics_use_sagemakers_names(server: RunningServer, faulty: str) -> None:
    runtime = server.client("sagemaker-runtime")
    for _ in range(3):
        answer(runtime, faulty, action="echo")
    status, body = http_get(server.url + "/metrics")
    assert status == 200
    text = body.decode()
    line = next(
        line
        for line in text.splitlines()
        if line.startswith(f'sagemaker_Invocations_total{{EndpointName="{faulty}",VariantName="AllTraffic"}}')
    )
    assert int(line.split()[-1]) >= 3
    assert "sagemaker_ModelLatency_microseconds_bucket" in text
    assert "sagemaker_OverheadLatency_microseconds_count" in text


# Restart ------------------------------------------------------------------------------------------------
def test_kill_9_and_restart_loses_nothing(tmp_path: Path, artifacts: Any) -> None:
    data = tmp_path / "data"
    first = start_server(data)
    sm = first.client("sagemaker")
    name = deploy(sm, artifacts.tiny_tar)
    models = {m["ModelName"] for m in sm.list_models()["Models"]}
    configs = {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]}
    first.kill()
    assert not wait_until_gone(first.tag), "workers outlived their server"

    second = start_server(data, tag=first.tag)
    try:
        sm = second.client("sagemaker")
        runtime = second.client("sagemaker-runtime")
        assert {m["ModelName"] for m in sm.list_models()["Models"]} == models
        assert {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]} == configs
        assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
        deadline = time.monotonic() + 60
        while True:  # the instances come back by themselves; until then the answer is a retryable 503
            try:
                response = runtime.invoke_endpoint(
                    EndpointName=name, Body=json.dumps([[0.5] * 16]), ContentType="application/json"
                )
                break
            except ClientError as exc:
                assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 503, exc.response
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert len(json.loads(response["Body"].read())[0]) == 4
    finally:
        second.stop()
    assert not wait_until_gone(first.tag)


def test_response_streaming_relays_the_answer_as_payload_parts(server: RunningServer, faulty: str) -> None:
    """Must-match 25: InvokeEndpointWithResponseStream, event-stream framed, read by unchanged boto3."""
    runtime = server.client("sagemaker-runtime")
    response = runtime.invoke_endpoint_with_response_stream(
        EndpointName=faulty,
        Body=json.dumps({"action": "big", "bytes": 600_000}),
        ContentType="application/json",
        Accept="application/json",
        CustomAttributes="trace=stream",
    )
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    parts = [event["PayloadPart"]["Bytes"] for event in response["Body"]]
    assert len(parts) >= 2  # 600 kB arrives in more than one part
    assert json.loads(b"".join(parts))["big"] == "x" * 600_000
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint_with_response_stream(
            EndpointName=faulty,
            Body=b'{"action": "raise", "where": "predict_fn"}',
            ContentType="application/json",
        )
    assert caught.value.response["Error"]["Code"] == "ModelError"


def test_the_handler_sees_only_the_headers_sagemaker_forwards(server: RunningServer, artifacts: Any) -> None:
    """SageMaker strips what InvokeEndpoint does not define: no Authorization, X-Amz-Date or User-Agent."""
    model = artifacts.root / "headers"
    if not model.exists():
        from moorage.examples.builders import pack

        (model / "dir" / "code").mkdir(parents=True)
        (model / "dir" / "code" / "inference.py").write_text(
            "import json\n\n"
            "def model_fn(model_dir):\n    return None\n\n"
            "def transform_fn(model, body, content_type, accept, context):\n"
            "    headers = context.request_processor[0].get_request_properties()\n"
            "    return json.dumps(sorted(k.lower() for k in headers if k != 'body')), 'application/json'\n"
        )
        pack(model / "dir", model / "model.tar.gz")
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    name = deploy(sm, model / "model.tar.gz")
    try:
        seen = json.loads(
            runtime.invoke_endpoint(
                EndpointName=name,
                Body=b"{}",
                ContentType="application/json",
                Accept="application/json",
                CustomAttributes="a=1",
                InferenceId="req-1",
            )["Body"].read()
        )
        assert seen == [
            "accept",
            "content-type",
            "x-amzn-sagemaker-custom-attributes",
            "x-amzn-sagemaker-inference-id",
        ]
    finally:
        delete(sm, name)

"""CloudWatch's alarm and metric calls on a real server (`--auth sigv4`), through unchanged boto3 and the
aws CLI: alarms put, described, paged and deleted; metric statistics equal to the invocations made; an
alarm on Invocation5XXErrors that goes to ALARM while the handler fails and back to OK once it answers.

The server samples every 0.2 s and accepts 1-second periods (MOORAGE_CLOUDWATCH_SAMPLE / _MIN_PERIOD), so
alarms move in seconds; every wait is a poll bounded by a deadline, and nothing is asserted on time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from moorage.api import cbor
from moorage.credentials import create_key
from support.cli import isolated_environment
from support.hosting import FAST, act, deploy, pack_fault_handler, unique
from support.servers import RunningServer, start_server, wait_until_gone

pytestmark = pytest.mark.slow

AWS_CLI = Path(sys.executable).parent / "aws"
NAMESPACE = "AWS/SageMaker"
METRICS = {
    "Invocations",
    "Invocation4XXErrors",
    "Invocation5XXErrors",
    "InvocationModelErrors",
    "InvocationsPerInstance",
    "ModelLatency",
    "OverheadLatency",
}


@dataclass
class Setup:
    server: RunningServer
    key: tuple[str, str]
    invoker: tuple[str, str]  # a key of role `invoke`: InvokeEndpoint only
    stats_endpoint: str  # invoked only by the statistics test
    alarm_endpoint: str  # invoked only by the alarm test

    def client(self, service: str) -> Any:
        return self.server.client(service, credentials=self.key)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("cloudwatch")
    data = root / "data"
    key = create_key(data)
    invoker = create_key(data, role="invoke")
    env = {"MOORAGE_CLOUDWATCH_SAMPLE": "0.2", "MOORAGE_CLOUDWATCH_MIN_PERIOD": "1"}
    server = start_server(data, args=["--auth", "sigv4"], env=env)
    try:
        credentials = (key.access_key_id, key.secret_access_key)
        sm = server.client("sagemaker", credentials=credentials)
        tarball = pack_fault_handler(root)
        names = [deploy(sm, tarball, wait=False) for _ in range(2)]
        for name in names:
            sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
        yield Setup(server, credentials, (invoker.access_key_id, invoker.secret_access_key), *names)
    finally:
        server.stop()
    assert not wait_until_gone(server.tag), server.log()[-3000:]


def dims(endpoint: str) -> list[dict[str, str]]:
    return [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]


def metric_of(endpoint: str, metric: str) -> dict[str, Any]:
    return {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": dims(endpoint)}


def alarm_args(name: str, endpoint: str, **overrides: Any) -> dict[str, Any]:
    return {
        "AlarmName": name,
        "Namespace": NAMESPACE,
        "MetricName": "Invocation5XXErrors",
        "Dimensions": dims(endpoint),
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        **overrides,
    }


def error_code(call: Callable[[], Any]) -> tuple[str, int]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def poll(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """`check()` until it returns something truthy; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# alarms ---------------------------------------------------------------------------------------------
def test_alarms_are_put_described_paged_and_deleted(setup: Setup) -> None:
    cw = setup.client("cloudwatch")
    prefix = unique("crud")
    names = [f"{prefix}-{i}" for i in range(3)]
    # On an endpoint that takes no traffic; names[1] keeps a state it is set to (TreatMissingData=ignore).
    for name in names:
        treat = "ignore" if name == names[1] else "missing"
        cw.put_metric_alarm(
            **alarm_args(name, "idle", AlarmDescription=f"about {name}", TreatMissingData=treat)
        )
    described = cw.describe_alarms(AlarmNames=names)["MetricAlarms"]
    assert [a["AlarmName"] for a in described] == names
    first = described[0]
    assert first["AlarmArn"] == f"arn:aws:cloudwatch:us-east-1:000000000000:alarm:{names[0]}"
    assert first["Dimensions"] == dims("idle")
    assert (first["Statistic"], first["Period"], first["EvaluationPeriods"], first["DatapointsToAlarm"]) == (
        "Sum",
        60,
        1,
        1,
    )
    assert first["AlarmDescription"] == f"about {names[0]}" and first["TreatMissingData"] == "missing"
    assert first["AlarmActions"] == [] and first["ActionsEnabled"] is True
    # A new alarm has not been evaluated on a complete minute yet, or found no data: never OK or ALARM
    # without datapoints (TreatMissingData=missing).
    assert first["StateValue"] == "INSUFFICIENT_DATA"

    pages, token = [], None
    while True:
        page = cw.describe_alarms(
            AlarmNamePrefix=prefix, MaxRecords=2, **({"NextToken": token} if token else {})
        )
        pages.append([a["AlarmName"] for a in page["MetricAlarms"]])
        token = page.get("NextToken")
        if not token:
            break
    assert pages == [names[:2], names[2:]]
    paginated = cw.get_paginator("describe_alarms").paginate(
        AlarmNamePrefix=prefix, PaginationConfig={"PageSize": 1}
    )
    assert [a["AlarmName"] for p in paginated for a in p["MetricAlarms"]] == names

    # SetAlarmState sets the state (and its reason) until the next evaluation; StateValue filters on it.
    cw.set_alarm_state(AlarmName=names[1], StateValue="ALARM", StateReason="set by the test")
    alarmed = cw.describe_alarms(AlarmNamePrefix=prefix, StateValue="ALARM")["MetricAlarms"]
    assert [(a["AlarmName"], a["StateReason"]) for a in alarmed] == [(names[1], "set by the test")]
    # Updating an alarm replaces its configuration and keeps its state, as CloudWatch does.
    cw.put_metric_alarm(**alarm_args(names[1], "idle", Threshold=7.0, TreatMissingData="ignore"))
    updated = cw.describe_alarms(AlarmNames=[names[1]])["MetricAlarms"][0]
    assert updated["Threshold"] == 7.0 and "AlarmDescription" not in updated

    cw.delete_alarms(AlarmNames=[*names, "never-existed"])
    assert cw.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"] == []
    assert cw.describe_alarms(AlarmTypes=["CompositeAlarm"])["CompositeAlarms"] == []


def test_alarm_inputs_are_checked_and_unsupported_members_refused_by_name(setup: Setup) -> None:
    cw = setup.client("cloudwatch")
    ep = setup.stats_endpoint
    sns = "arn:aws:sns:us-east-1:000000000000:ops"
    cases: list[tuple[dict[str, Any], str, str]] = [
        (alarm_args("x", ep, AlarmActions=[sns]), "InvalidParameterValue", "AlarmActions"),
        (alarm_args("x", ep, Tags=[{"Key": "k", "Value": "v"}]), "InvalidParameterValue", "Tags"),
        (alarm_args("x", ep, DatapointsToAlarm=2), "InvalidParameterValue", "DatapointsToAlarm"),
        (alarm_args("x", ep, ExtendedStatistic="p99"), "InvalidParameterCombination", "ExtendedStatistic"),
        (alarm_args("x", ep, ExtendedStatistic="tm99", Statistic=None), "InvalidParameterValue", "trimmed"),
        (
            alarm_args("x", ep, ComparisonOperator="GreaterThanUpperThreshold"),
            "InvalidParameterValue",
            "anomaly",
        ),
        (alarm_args("x", ep, Period=3600, EvaluationPeriods=169), "InvalidParameterValue", "one week"),
    ]
    for args, code, words in cases:
        args = {k: v for k, v in args.items() if v is not None}
        with pytest.raises(ClientError) as caught:
            cw.put_metric_alarm(**args)
        error = caught.value.response["Error"]
        assert (error["Code"], caught.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (code, 400), (
            args
        )
        assert words in error["Message"], error
    assert cw.describe_alarms(AlarmNames=["x"])["MetricAlarms"] == []

    def missing() -> None:
        cw.set_alarm_state(AlarmName="nope", StateValue="OK", StateReason="r")

    assert error_code(missing) == ("ResourceNotFound", 404)
    assert error_code(lambda: cw.describe_alarms(NextToken="not-ours")) == ("InvalidNextToken", 400)
    # The modeled exception classes are the ones botocore raises.
    with pytest.raises(cw.exceptions.ResourceNotFound):
        missing()


def test_an_alarm_on_5xx_errors_goes_to_alarm_and_back_to_ok(setup: Setup) -> None:
    cw, runtime = setup.client("cloudwatch"), setup.client("sagemaker-runtime")
    name = unique("errors")
    # One-second periods; a second without failures (or without traffic) is not breaching.
    cw.put_metric_alarm(**alarm_args(name, setup.alarm_endpoint, Period=1, TreatMissingData="notBreaching"))

    def state() -> dict[str, Any]:
        alarm: dict[str, Any] = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
        return alarm

    poll(lambda: state()["StateValue"] == "OK", "the alarm to start OK (no errors)")

    def failing() -> dict[str, Any] | None:
        with pytest.raises(ClientError) as caught:
            act(runtime, setup.alarm_endpoint, action="status", status=503, message="down")
        assert caught.value.response["Error"]["Code"] == "ModelError"
        current = state()
        return current if current["StateValue"] == "ALARM" else None

    alarmed = poll(failing, "the alarm to fire while the handler answers 503")
    assert alarmed["StateReason"].startswith("Threshold Crossed: 1 datapoint [")
    assert "was greater than or equal to the threshold (1.0)" in alarmed["StateReason"]
    data = json.loads(alarmed["StateReasonData"])
    assert data["statistic"] == "Sum" and data["period"] == 1 and data["threshold"] == 1.0
    assert data["recentDatapoints"][0] >= 1.0
    assert alarmed["StateTransitionedTimestamp"] == alarmed["StateUpdatedTimestamp"]

    def healthy() -> dict[str, Any] | None:
        assert act(runtime, setup.alarm_endpoint, action="echo")["ResponseMetadata"]["HTTPStatusCode"] == 200
        current = state()
        return current if current["StateValue"] == "OK" else None

    recovered = poll(healthy, "the alarm to return to OK once the handler answers")
    assert "was not greater than or equal to the threshold" in recovered["StateReason"]
    assert recovered["StateTransitionedTimestamp"] > alarmed["StateTransitionedTimestamp"]
    cw.delete_alarms(AlarmNames=[name])


# metrics --------------------------------------------------------------------------------------------
def test_statistics_equal_the_invocations_made(setup: Setup) -> None:
    cw, runtime = setup.client("cloudwatch"), setup.client("sagemaker-runtime")
    ep = setup.stats_endpoint
    start = datetime.now(UTC) - timedelta(minutes=2)
    for _ in range(5):
        act(runtime, ep, action="echo")
    for status in (500, 502, 400):
        with pytest.raises(ClientError):
            act(runtime, ep, action="status", status=status)
    end = datetime.now(UTC) + timedelta(minutes=2)

    def statistics(metric: str, **extra: Any) -> list[dict[str, Any]]:
        points: list[dict[str, Any]] = cw.get_metric_statistics(
            Namespace=NAMESPACE,
            MetricName=metric,
            Dimensions=dims(ep),
            StartTime=start,
            EndTime=end,
            Period=60,
            Statistics=["Sum", "SampleCount", "Minimum", "Maximum", "Average"],
            **extra,
        )["Datapoints"]
        return points

    def total(metric: str, field: str = "Sum") -> float:
        return float(sum(point[field] for point in statistics(metric)))

    poll(lambda: total("Invocations") == 8, "the 8 invocations to be sampled")
    assert total("Invocation5XXErrors") == 2 and total("Invocation4XXErrors") == 1
    assert total("Invocation5XXErrors", "SampleCount") == 8  # one value per request, 1 or 0
    assert total("InvocationModelErrors") == 3
    assert total("ModelLatency", "SampleCount") == 8
    for point in statistics("ModelLatency", ExtendedStatistics=["p50", "p99"]):
        assert point["Unit"] == "Microseconds"
        assert 0 <= point["Minimum"] <= point["Average"] <= point["Maximum"]
        assert point["Minimum"] <= point["ExtendedStatistics"]["p50"] <= point["ExtendedStatistics"]["p99"]

    queries = [
        {"Id": f"m{i}", "MetricStat": {"Metric": metric_of(ep, metric), "Period": 60, "Stat": "Sum"}}
        for i, metric in enumerate(["Invocations", "Invocation5XXErrors", "Invocation4XXErrors"])
    ]
    results = cw.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)["MetricDataResults"]
    assert [(r["Id"], r["Label"], r["StatusCode"], sum(r["Values"])) for r in results] == [
        ("m0", "Invocations", "Complete", 8.0),
        ("m1", "Invocation5XXErrors", "Complete", 2.0),
        ("m2", "Invocation4XXErrors", "Complete", 1.0),
    ]
    assert all(len(r["Timestamps"]) == len(r["Values"]) for r in results)
    # Another statistic, another set of dimensions: CloudWatch matches all dimensions, so none is found.
    partial = {"Namespace": NAMESPACE, "MetricName": "Invocations", "Dimensions": dims(ep)[:1]}
    found = cw.get_metric_data(
        MetricDataQueries=[{"Id": "e", "MetricStat": {"Metric": partial, "Period": 60, "Stat": "Sum"}}],
        StartTime=start,
        EndTime=end,
    )["MetricDataResults"]
    assert found[0]["Values"] == []

    listed = cw.list_metrics(Namespace=NAMESPACE, Dimensions=[{"Name": "EndpointName", "Value": ep}])[
        "Metrics"
    ]
    assert {m["MetricName"] for m in listed} == METRICS
    assert all(m["Dimensions"] == dims(ep) for m in listed)
    code = error_code(lambda: cw.get_metric_statistics(Namespace=NAMESPACE, MetricName="Invocations",
                                                       StartTime=start, EndTime=end, Period=60))  # fmt: skip
    assert code == ("InvalidParameterCombination", 400)
    expression = [{"Id": "x", "Expression": "m0 * 2"}]
    assert error_code(
        lambda: cw.get_metric_data(MetricDataQueries=expression, StartTime=start, EndTime=end)
    ) == (
        "InvalidParameterValue",
        400,
    )


# the wire -------------------------------------------------------------------------------------------
def test_aws_cli_manages_alarms(setup: Setup, tmp_path: Path) -> None:
    env = isolated_environment(
        tmp_path,
        {
            "AWS_ACCESS_KEY_ID": setup.key[0],
            "AWS_SECRET_ACCESS_KEY": setup.key[1],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_CLOUDWATCH": setup.server.url,
        },
    )
    name = unique("cli")

    def aws(*args: str) -> Any:
        done = subprocess.run(
            [str(AWS_CLI), "cloudwatch", "--output", "json", *args], capture_output=True, env=env, timeout=60
        )
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout) if done.stdout.strip() else None

    # On an endpoint without traffic, keeping the state it is set to (TreatMissingData=ignore).
    aws(
        "put-metric-alarm", "--alarm-name", name, "--namespace", NAMESPACE,
        "--metric-name", "Invocation5XXErrors", "--dimensions",
        "Name=EndpointName,Value=idle", "Name=VariantName,Value=AllTraffic",
        "--statistic", "Sum", "--period", "60", "--evaluation-periods", "1", "--threshold", "1",
        "--comparison-operator", "GreaterThanOrEqualToThreshold", "--treat-missing-data", "ignore",
    )  # fmt: skip
    cw = setup.client("cloudwatch")
    cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="set by the test")
    described = aws("describe-alarms", "--alarm-names", name)["MetricAlarms"]
    assert [
        (a["AlarmName"], a["StateValue"], a["StateReason"], a["TreatMissingData"]) for a in described
    ] == [(name, "ALARM", "set by the test", "ignore")]
    aws("delete-alarms", "--alarm-names", name)
    assert cw.describe_alarms(AlarmNames=[name])["MetricAlarms"] == []


def test_smithy_cbor_requests_are_served_and_refusals_keep_their_shape(setup: Setup) -> None:
    """The Smithy RPC v2 CBOR form of the same API (what SDKs preferring CBOR send), and auth refusals."""
    cw = setup.client("cloudwatch")
    name = unique("cbor")
    cw.put_metric_alarm(**alarm_args(name, setup.stats_endpoint))
    url = f"{setup.server.url}/service/GraniteServiceVersion20100801/operation/DescribeAlarms"
    headers = {
        "Content-Type": "application/cbor",
        "Accept": "application/cbor",
        "smithy-protocol": "rpc-v2-cbor",
    }
    body = cbor.encode({"AlarmNames": [name]})
    signed = AWSRequest("POST", url, data=body, headers=headers)
    SigV4Auth(Credentials(*setup.key), "monitoring", "us-east-1").add_auth(signed)
    answered = requests.post(url, data=body, headers=dict(signed.headers), timeout=30)
    assert answered.status_code == 200 and answered.headers["Content-Type"] == "application/cbor"
    (alarm,) = cbor.decode(answered.content)["MetricAlarms"]
    assert alarm["AlarmName"] == name and alarm["Threshold"] == 1.0
    assert isinstance(alarm["StateUpdatedTimestamp"], cbor.Tagged) and alarm["StateUpdatedTimestamp"].tag == 1
    # Unsigned: refused before the operation runs, in CloudWatch's CBOR error shape.
    refused = requests.post(url, data=body, headers=headers, timeout=30)
    assert refused.status_code == 403 and refused.headers["Content-Type"] == "application/cbor"
    assert cbor.decode(refused.content)["__type"].endswith("#MissingAuthenticationToken")
    assert refused.headers["x-amzn-query-error"] == "MissingAuthenticationToken;Sender"
    # A wrong secret: boto3 gets the signature error as a ClientError.
    wrong = setup.server.client("cloudwatch", credentials=(setup.key[0], "not-the-secret"))
    assert error_code(lambda: wrong.describe_alarms()) == ("InvalidSignatureException", 403)
    invoker = setup.server.client("cloudwatch", credentials=setup.invoker)
    assert error_code(lambda: invoker.describe_alarms()) == ("AccessDeniedException", 403)
    cw.delete_alarms(AlarmNames=[name])

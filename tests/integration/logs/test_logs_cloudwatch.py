"""Endpoint logs read back through the CloudWatch Logs API: unchanged boto3, the aws CLI, `moorage logs`.

A real `moorage serve` runs an endpoint of two instances whose handler logs (and prints) a marker per
request; every marker must show up in the stream of the instance that served it, and nowhere else.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.hosting import FAST, deploy, pack_handler, unique
from support.servers import REGION, RunningServer, base_environment, start_server, wait_until_gone

pytestmark = pytest.mark.slow

AWS_CLI = Path(sys.executable).parent / "aws"

LOGGING_HANDLER = textwrap.dedent("""
    import json
    import logging
    import os

    logger = logging.getLogger(__name__)


    def model_fn(model_dir):
        logger.info("loaded-by pid=%d", os.getpid())
        return {}


    def input_fn(body, content_type):
        return json.loads(body)


    def predict_fn(request, model):
        logger.info("log-marker %s pid=%d", request["marker"], os.getpid())
        print(f"print-marker {request['marker']} pid={os.getpid()}")
        return {"pid": os.getpid()}


    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
""")


@dataclass(frozen=True)
class Deployed:
    server: RunningServer
    endpoint: str
    markers: dict[str, int]  # marker -> pid of the worker that served it, in invocation order

    @property
    def group(self) -> str:
        return f"/aws/sagemaker/Endpoints/{self.endpoint}"


def _deploy(sm: Any, tarball: Path, instances: int) -> str:
    return deploy(sm, tarball, name=unique("logs"), instances=instances)


def _invoke(server: RunningServer, endpoint: str, marker: str) -> int:
    answer = server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint, Body=json.dumps({"marker": marker}), ContentType="application/json"
    )
    pid: int = json.loads(answer["Body"].read())["pid"]
    return pid


@pytest.fixture(scope="module")
def handler_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_handler(tmp_path_factory.mktemp("logging-handler"), LOGGING_HANDLER)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("logs") / "data")
    yield running
    running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


@pytest.fixture(scope="module")
def deployed(server: RunningServer, handler_tar: Path) -> Deployed:
    endpoint = _deploy(server.client("sagemaker"), handler_tar, instances=2)
    markers = {}
    for _ in range(8):
        marker = unique("m")
        markers[marker] = _invoke(server, endpoint, marker)
    return Deployed(server, endpoint, markers)


@pytest.fixture
def cli_env(tmp_path: Path, server: RunningServer) -> dict[str, str]:
    """A clean environment for client subprocesses: dummy credentials, no developer AWS config."""
    return base_environment(
        uuid.uuid4().hex,
        {
            "HOME": str(tmp_path),
            "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
            "MOORAGE_URL": server.url,
        },
    )


def _pid_in(message: str) -> int:
    match = re.search(r"pid=(\d+)", message)
    assert match is not None, message
    return int(match[1])


def _all_events(logs: Any, group: str, stream: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    token = None
    while True:
        page = logs.get_log_events(
            logGroupName=group,
            logStreamName=stream,
            startFromHead=True,
            **({"nextToken": token} if token else {}),
        )
        events += page["events"]
        if page["nextForwardToken"] == token:
            return events
        token = page["nextForwardToken"]


def _stream_pids(logs: Any, deployed: Deployed) -> dict[str, int]:
    """Each instance stream, with the pid that loaded the model in it (one worker per instance)."""
    pages = logs.get_paginator("describe_log_streams").paginate(logGroupName=deployed.group)
    names = [s["logStreamName"] for page in pages for s in page["logStreams"]]
    result = {}
    for name in names:
        if name.startswith("AllTraffic/i-"):
            loaded = [e for e in _all_events(logs, deployed.group, name) if "loaded-by" in e["message"]]
            assert len(loaded) == 1, loaded
            result[name] = _pid_in(loaded[0]["message"])
    return result


# boto3 ------------------------------------------------------------------------------------------------
def test_groups_and_streams_are_described(deployed: Deployed) -> None:
    logs = deployed.server.client("logs")
    groups = logs.describe_log_groups(logGroupNamePrefix="/aws/sagemaker/Endpoints/logs-")["logGroups"]
    (group,) = [g for g in groups if g["logGroupName"] == deployed.group]
    assert group["arn"] == f"arn:aws:logs:{REGION}:000000000000:log-group:{deployed.group}:*"
    assert group["storedBytes"] > 0
    streams = logs.describe_log_streams(logGroupName=deployed.group)["logStreams"]
    names = [s["logStreamName"] for s in streams]
    assert names == sorted(names)
    assert "AllTraffic/deployment" in names
    instances = [n for n in names if re.fullmatch(r"AllTraffic/i-[0-9a-f]{17}", n)]
    assert len(instances) == 2
    now = time.time() * 1000
    for stream in streams:
        assert stream["firstEventTimestamp"] <= stream["lastEventTimestamp"] <= now + 1000
        assert stream["arn"].endswith(f":log-stream:{stream['logStreamName']}")


def test_each_marker_is_in_the_stream_of_the_instance_that_served_it(deployed: Deployed) -> None:
    logs = deployed.server.client("logs")
    stream_pids = _stream_pids(logs, deployed)
    assert len(set(stream_pids.values())) == 2
    assert set(deployed.markers.values()) <= set(stream_pids.values())
    for stream, pid in stream_pids.items():
        events = _all_events(logs, deployed.group, stream)
        messages = [e["message"] for e in events]
        logged = {m for m in deployed.markers if any(f"log-marker {m} pid={pid}" in x for x in messages)}
        printed = {m for m in deployed.markers if f"print-marker {m} pid={pid}" in messages}
        served = {m for m, served_by in deployed.markers.items() if served_by == pid}
        assert logged == printed == served
        # A printed line has no time stamp of its own: it takes the logged line's just before it.
        for before, after in itertools.pairwise(events):
            if after["message"].startswith("print-marker"):
                assert after["timestamp"] == before["timestamp"]
                assert after["ingestionTime"] == after["timestamp"]


def test_filter_log_events_finds_a_marker_in_its_stream_only(deployed: Deployed) -> None:
    logs = deployed.server.client("logs")
    stream_pids = _stream_pids(logs, deployed)
    marker, pid = next(iter(deployed.markers.items()))
    (home,) = [stream for stream, p in stream_pids.items() if p == pid]
    (other,) = [stream for stream in stream_pids if stream != home]
    found = logs.filter_log_events(logGroupName=deployed.group, filterPattern=f'"{marker}"')
    assert [event["logStreamName"] for event in found["events"]] == [home, home]
    logged, printed = (event["message"] for event in found["events"])
    assert re.search(rf"\] INFO \S+: log-marker {marker} pid={pid}$", logged), logged
    assert printed == f"print-marker {marker} pid={pid}"
    assert "nextToken" not in found
    assert (
        logs.filter_log_events(logGroupName=deployed.group, logStreamNames=[other], filterPattern=marker)[
            "events"
        ]
        == []
    )


def test_filter_log_events_pages_interleaved_by_time(deployed: Deployed) -> None:
    logs = deployed.server.client("logs")
    pages = logs.get_paginator("filter_log_events").paginate(
        logGroupName=deployed.group, filterPattern="marker", PaginationConfig={"PageSize": 3}
    )
    events = [event for page in pages for event in page["events"]]
    assert len(events) == 2 * len(deployed.markers)
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    assert len({e["eventId"] for e in events}) == len(events)
    logged = [e["message"].split("log-marker ")[1].split()[0] for e in events if "log-marker" in e["message"]]
    assert logged == list(deployed.markers)  # invoked one after the other, so in this order


def test_time_window_and_errors(deployed: Deployed) -> None:
    logs = deployed.server.client("logs")
    stream = next(iter(_stream_pids(logs, deployed)))
    events = _all_events(logs, deployed.group, stream)
    last = events[-1]["timestamp"]
    later = logs.get_log_events(
        logGroupName=deployed.group, logStreamName=stream, startFromHead=True, startTime=last + 1
    )
    assert later["events"] == []
    window = logs.get_log_events(
        logGroupName=deployed.group, logStreamName=stream, startTime=last, endTime=last + 1
    )["events"]
    assert window and all(e["timestamp"] == last for e in window)
    for group, name in [
        ("/aws/sagemaker/Endpoints/nope", stream),
        ("/aws/sagemaker/Endpoints/../../etc", stream),
        (deployed.group, "AllTraffic/i-00000000000000000"),
        (deployed.group, "AllTraffic/../../../etc/passwd"),
    ]:
        with pytest.raises(ClientError) as caught:
            logs.get_log_events(logGroupName=group, logStreamName=name)
        assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as caught:
        logs.get_log_events(logGroupName=deployed.group, logStreamName=stream, nextToken="garbage")
    assert caught.value.response["Error"]["Code"] == "InvalidParameterException"


# the aws CLI ------------------------------------------------------------------------------------------
def test_aws_cli_reads_the_logs(deployed: Deployed, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": deployed.server.url}
    stream_pids = _stream_pids(deployed.server.client("logs"), deployed)
    marker, pid = next(iter(deployed.markers.items()))
    (home,) = [stream for stream, p in stream_pids.items() if p == pid]
    base = [str(AWS_CLI), "logs", "--output", "json"]
    got = subprocess.run(
        [*base, "get-log-events", "--log-group-name", deployed.group, "--log-stream-name", home],
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert got.returncode == 0, got.stderr.decode()
    messages = [e["message"] for e in json.loads(got.stdout)["events"]]
    assert f"print-marker {marker} pid={pid}" in messages
    filtered = subprocess.run(
        [*base, "filter-log-events", "--log-group-name", deployed.group, "--filter-pattern", marker],
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert filtered.returncode == 0, filtered.stderr.decode()
    events = json.loads(filtered.stdout)["events"]
    assert {e["logStreamName"] for e in events} == {home}
    assert len(events) == 2


# moorage logs -----------------------------------------------------------------------------------------
def _moorage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moorage", "logs", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_moorage_logs_prints_every_marker_in_time_order(deployed: Deployed, cli_env: dict[str, str]) -> None:
    stream_pids = _stream_pids(deployed.server.client("logs"), deployed)
    result = _moorage(deployed.endpoint, env=cli_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    marker_lines = [line for line in lines if "print-marker" in line]
    assert [line.split("print-marker ")[1].split()[0] for line in marker_lines] == list(deployed.markers)
    for line in marker_lines:
        stream, _, message = line.partition(" ")
        assert stream_pids[stream] == _pid_in(message)
    assert any(line.startswith("AllTraffic/deployment ") for line in lines)
    only_other = _moorage(deployed.endpoint, "--variant", "Other", env=cli_env)
    assert (only_other.returncode, only_other.stdout) == (0, "")


def test_moorage_logs_unknown_endpoint_or_server_fails_clearly(
    deployed: Deployed, cli_env: dict[str, str]
) -> None:
    unknown = _moorage("nope", env=cli_env)
    assert unknown.returncode == 1
    assert "'nope' has no logs" in unknown.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    unreachable = _moorage(deployed.endpoint, "--url", closed, env=cli_env)
    assert unreachable.returncode == 1
    assert f"Cannot reach a moorage server at {closed}" in unreachable.stderr


def test_moorage_logs_follow_picks_up_new_lines(
    deployed: Deployed, cli_env: dict[str, str], tmp_path: Path
) -> None:
    first = next(iter(deployed.markers))
    with (tmp_path / "follow.err").open("w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "moorage", "logs", deployed.endpoint, "--follow", "--since", "1h"],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=cli_env,
        )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for text in stdout:
            lines.put(text)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()

    def wait_for(text: str) -> str:
        deadline = time.monotonic() + 60
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if text in line:
                return line
        raise AssertionError(f"{text!r} not printed in time; stderr: {(tmp_path / 'follow.err').read_text()}")

    try:
        wait_for(f"print-marker {first}")
        fresh = unique("late")
        pid = _invoke(deployed.server, deployed.endpoint, fresh)
        line = wait_for(f"print-marker {fresh}")
        assert line.rstrip("\n").endswith(f"print-marker {fresh} pid={pid}")
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(15)
        reader.join(15)
        stdout.close()


# deleted endpoints ----------------------------------------------------------------------------------
def test_logs_outlive_the_endpoint(server: RunningServer, handler_tar: Path, cli_env: dict[str, str]) -> None:
    sm = server.client("sagemaker")
    endpoint = _deploy(sm, handler_tar, instances=1)
    marker = unique("gone")
    _invoke(server, endpoint, marker)
    sm.delete_endpoint(EndpointName=endpoint)
    sm.get_waiter("endpoint_deleted").wait(EndpointName=endpoint, WaiterConfig=FAST)
    logs = server.client("logs")
    found = logs.filter_log_events(logGroupName=f"/aws/sagemaker/Endpoints/{endpoint}", filterPattern=marker)
    assert len(found["events"]) == 2
    result = _moorage(endpoint, env=cli_env)
    assert result.returncode == 0, result.stderr
    assert f"print-marker {marker}" in result.stdout
    assert os.path.isdir(server.data_dir / "logs" / endpoint)

"""Data capture to an S3 that is down: every request is still answered, and the captures are
dropped, counted in /metrics by reason, and logged with the endpoint.

The server's S3 (AWS_ENDPOINT_URL_S3) is a loopback port nothing listens on, its capture buffer is
small (4 KiB) and it flushes every 0.1 s: while the first file's upload is failing (botocore retries a
refused connection a few times), the buffer fills and later captures are dropped at once.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.hosting import deploy
from support.servers import RunningServer, http_get, start_server, wait_until_gone

from .conftest import settled_counts

pytestmark = pytest.mark.slow


def _closed_port() -> int:
    """A loopback port that refuses connections (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("capture-down") / "data",
        env={
            "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{_closed_port()}",
            "MOORAGE_CAPTURE_FLUSH": "0.1",
            "MOORAGE_CAPTURE_BUFFER_BYTES": "4096",
        },
    )
    try:
        yield running
    finally:
        running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


def test_a_store_that_is_down_drops_captures_never_requests(
    server: RunningServer, echo_tarball: Path
) -> None:
    sm = server.client("sagemaker")
    name = deploy(sm, echo_tarball)
    config = sm.describe_endpoint(EndpointName=name)["EndpointConfigName"]
    variants = sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    capturing = f"{config}-capture"
    sm.create_endpoint_config(
        EndpointConfigName=capturing,
        ProductionVariants=variants,
        DataCaptureConfig={
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": "s3://nowhere/capture",
            "CaptureOptions": [{"CaptureMode": "InputAndOutput"}],
        },
    )
    sm.update_endpoint(EndpointName=name, EndpointConfigName=capturing)
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 0.25, "MaxAttempts": 400}
    )
    runtime = server.client("sagemaker-runtime")
    requests = 60
    for index in range(requests):
        body = f"{index},{index}".encode()
        answer = runtime.invoke_endpoint(
            EndpointName=name, Body=body, ContentType="text/csv", Accept="text/csv"
        )
        assert answer["Body"].read() == body
    counts = settled_counts(server, name, at_least=requests)
    assert counts == {"sampled": requests, "records": 0, "dropped": requests}
    status, body = http_get(server.url + "/metrics")
    assert status == 200
    reasons = {
        line.split('reason="', 1)[1].split('"', 1)[0]
        for line in body.decode().splitlines()
        if line.startswith("moorage_capture_dropped_total{") and f'EndpointName="{name}"' in line
    }
    assert reasons == {"buffer_full", "store_error"}  # a 4 KiB buffer holds a few records only
    log = server.log()
    assert f"data capture of endpoint {name} variant AllTraffic dropped" in log
    assert "cannot write s3://nowhere/capture/" in log

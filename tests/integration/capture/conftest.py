"""Shared pieces of the data capture tests: an echo handler (the answer is the request, with the
content type asked for; with Accept application/x-pid, the worker's pid), its model archive, reading
/metrics' capture counters, and waiting for captured records in S3 with a deadline (never a sleep:
the tests make the flush interval short).
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from support.hosting import pack_handler
from support.servers import RunningServer, http_get

ECHO_HANDLER = textwrap.dedent("""
    import os


    def model_fn(model_dir):
        return {}


    def input_fn(body, content_type):
        return body, content_type


    def predict_fn(request, model):
        return request


    def output_fn(prediction, accept):
        body, content_type = prediction
        if accept == "application/x-pid":  # which worker answers: tells an update in place from blue/green
            return str(os.getpid()), "text/plain"
        return body, accept if accept and accept != "*/*" else content_type
""")

CAPTURE_FAMILIES = ("sampled", "records", "dropped")


@pytest.fixture(scope="session")
def echo_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_handler(tmp_path_factory.mktemp("echo-model"), ECHO_HANDLER, archive="echo.tar.gz")


def capture_counts(server: RunningServer, endpoint: str) -> dict[str, int]:
    """{"sampled", "records", "dropped"} of one endpoint (all variants and reasons summed)."""
    status, body = http_get(server.url + "/metrics")
    assert status == 200
    counts = dict.fromkeys(CAPTURE_FAMILIES, 0)
    for line in body.decode().splitlines():
        if line.startswith("moorage_capture_") and f'EndpointName="{endpoint}"' in line:
            family = line.removeprefix("moorage_capture_").split("_total", 1)[0]
            if family in counts:
                counts[family] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def settled_counts(
    server: RunningServer, endpoint: str, at_least: int = 0, timeout: float = 60.0
) -> dict[str, int]:
    """The counters once `at_least` invocations were sampled and every sampled record is written or
    dropped (polled up to `timeout`). The first invocation after a deployment change is sampled just
    after it is answered (the endpoint's capture config is read from the store then), hence `at_least`."""
    deadline = time.monotonic() + timeout
    while True:
        counts = capture_counts(server, endpoint)
        if counts["sampled"] >= at_least and counts["sampled"] == counts["records"] + counts["dropped"]:
            return counts
        assert time.monotonic() < deadline, f"capture never settled: {counts}\n{server.log()[-3000:]}"
        time.sleep(0.05)


def captured_records(s3: Any, bucket: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every captured file under `prefix`: key → its records."""
    found: dict[str, list[dict[str, Any]]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
            found[item["Key"]] = [json.loads(line) for line in body.splitlines()]
    return found

"""Shared pieces of the async inference tests: a handler that waits on a loopback gate the test
opens (support/gates.py), its model archive, reading result objects with unchanged boto3
(support/hosting.py's `deploy` makes the endpoints, with `async_config=`), and SNS: a moto server per
module for the server's `AWS_ENDPOINT_URL_SNS` and an HTTP subscriber that receives what it delivers.

The handler reports only through its answers and its calls to the gate (workers may soon write nothing
but their scratch dir), and it never sleeps: a gated request waits until the test opens its gate.
"""

from __future__ import annotations

import http.server
import json
import queue
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.gates import Gate
from support.hosting import FAST, pack_handler
from support.moto import moto_server

ASYNC_HANDLER = textwrap.dedent("""
    import json
    import urllib.request


    def model_fn(model_dir):
        return {}


    def input_fn(body, content_type):
        if content_type == "application/json":
            return json.loads(body)
        return {"bytes": len(body), "content_type": content_type}


    def predict_fn(request, model):
        if request.get("gate"):  # wait until the test opens this gate
            urllib.request.urlopen(request["gate"], timeout=600).read()
        if request.get("fail"):
            raise ValueError(request["fail"])
        return request


    def output_fn(prediction, accept):
        if accept == "text/csv":
            return "echo,csv\\n", "text/csv"
        return json.dumps(prediction), "application/json"
""")


@pytest.fixture(scope="module")
def gate() -> Iterator[Gate]:
    with Gate() as opened:
        yield opened


@pytest.fixture(scope="session")
def async_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_handler(tmp_path_factory.mktemp("async-model"), ASYNC_HANDLER, archive="async.tar.gz")


def one_at_a_time(output: str, **more_output: Any) -> dict[str, Any]:
    """An AsyncInferenceConfig with one invocation at a time per instance (so a gated request holds the
    queue), answers under `output`; `more_output`: other OutputConfig members (S3FailurePath, ...)."""
    return {
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
        "OutputConfig": {"S3OutputPath": output, **more_output},
    }


def wait_for_object(s3: Any, location: str) -> dict[str, Any]:
    bucket, key = location.removeprefix("s3://").split("/", 1)
    s3.get_waiter("object_exists").wait(Bucket=bucket, Key=key, WaiterConfig=FAST)
    answer: dict[str, Any] = s3.get_object(Bucket=bucket, Key=key)
    return answer


def exists(s3: Any, location: str) -> bool:
    bucket, key = location.removeprefix("s3://").split("/", 1)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


@pytest.fixture(scope="module")
def sns_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


class Subscriber:
    """An HTTP endpoint on loopback that SNS (moto) delivers to; keeps each notification's Message."""

    def __init__(self) -> None:
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        subscriber = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                envelope = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if envelope.get("Type") == "Notification":
                    subscriber.messages.put(json.loads(envelope["Message"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sns"
